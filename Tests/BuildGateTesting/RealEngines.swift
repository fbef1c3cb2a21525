import Foundation
import Testing

/// The real services `scripts/test-services` started for the end-to-end tests, from the environment.
///
/// Outside CI, end-to-end tests are skipped (and say so) when the services are missing. Under `CI=true` they run
/// regardless, and fail on the missing service: CI never passes without the real engines.
package enum RealEngines {
    package static let environment = ProcessInfo.processInfo.environment

    package static var isCI: Bool { environment["CI"] == "true" }
    package static var registry: String? { environment["BUILDGATE_TEST_REGISTRY"] }
    package static var podmanSocket: String? { environment["BUILDGATE_TEST_PODMAN_SOCKET"] }
    package static var dockerSocket: String? { environment["BUILDGATE_TEST_DOCKER_SOCKET"] }
    /// dockerd's mutual-TLS listener as a builder address with its options: `tcp://…,tlscacert=…,tlscert=…,tlskey=…`.
    package static var dockerTLS: String? { environment["BUILDGATE_TEST_DOCKER_TLS"] }
    package static var gatewayBinary: String? { environment["BUILDGATE_TEST_BINARY"] }
    /// A real buildkitd (`unix://…`, `tcp://…` or a whole `buildkit=…` builder): `scripts/test-services` starts one
    /// from `../shared/tools/buildkit` (or `BUILDGATE_TEST_BUILDKITD`) when the binaries are there.
    package static var buildKitAddress: String? { environment["BUILDGATE_TEST_BUILDKIT_ADDR"] }
    /// The `buildctl` beside that buildkitd (Debian packages neither).
    package static var buildctl: String? { environment["BUILDGATE_TEST_BUILDCTL"] }

    /// Whether the end-to-end tests should run: the services are there, or CI demands they be.
    package static var shouldRun: Bool { isCI || (registry != nil && podmanSocket != nil) }

    package static let skipReason: Comment =
        "needs a real registry and Podman service: run scripts/test (sets BUILDGATE_TEST_REGISTRY and BUILDGATE_TEST_PODMAN_SOCKET)"
}
