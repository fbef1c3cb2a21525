import AsyncHTTPClient
import BuildGateCore
import BuildGateTesting
import EngineAPIDriver
import Foundation
import Logging
import Testing

/// A build whose parameters make a huge Engine API request head once stopped the whole gateway inside
/// AsyncHTTPClient (a `preconditionFailure` when the head outgrew the channel's write watermark), and again after
/// every restart. The driver must refuse such a request itself and fail only that build.
@Suite(.enabled(if: RealEngines.shouldRun, RealEngines.skipReason))
struct EngineRequestHeadTests {
    @Test func aBuildWithThousandsOfBuildArgumentsFailsAloneInsteadOfStoppingTheProcess() async throws {
        let socket = try #require(RealEngines.podmanSocket, "BUILDGATE_TEST_PODMAN_SOCKET is not set: run scripts/test")
        let directory = try TemporaryDirectory("head")
        defer { directory.remove() }
        // 2,800 arguments: the 41 KB query of the report, about 120 KB once JSON- and percent-encoded.
        let arguments = Dictionary(uniqueKeysWithValues: (0..<2800).map { ("ARG_\($0)", "value-\($0)") })
        let job = try podmanJob(dockerfile: "FROM scratch\n", in: directory) { $0.buildArgs = arguments }
        let driver = EngineAPIDriver(httpClient: .shared, logger: Logger(label: "test"))
        let endpoint = BuilderEndpoint(name: "podman", engine: .podman, address: .unix(path: socket))

        let outcome = await driver.run(job, on: endpoint) { _ in }

        guard case .failed(.buildFailed, let message) = outcome else {
            Issue.record("expected the build to fail on its own, got \(outcome)")
            return
        }
        #expect(message.contains("request head"), "\(message)")
    }
}
