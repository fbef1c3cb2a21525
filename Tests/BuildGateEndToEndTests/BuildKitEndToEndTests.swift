import BuildGateTesting
import Foundation
import Testing

/// The gateway against a real buildkitd through a real `buildctl`. buildkitd is not packaged for these machines,
/// so this suite runs only where `BUILDGATE_TEST_BUILDKIT_ADDR` names one (e.g. `tcp://127.0.0.1:1234`, or a
/// `buildkit=` builder string with TLS options) and `buildctl` is on `PATH`; elsewhere it reports itself skipped.
/// The registry must be reachable from buildkitd at the same address as from the tests.
@Suite(
    .enabled(
        if: RealEngines.buildKitAddress != nil,
        "needs a real buildkitd: set BUILDGATE_TEST_BUILDKIT_ADDR=tcp://… (buildkitd is not packaged for Debian; see README)"),
    .serialized)
struct BuildKitEndToEndTests {
    private var builder: String {
        get throws {
            let address = try #require(RealEngines.buildKitAddress)
            return address.hasPrefix("buildkit=") ? address : "buildkit=\(address),name=test-buildkitd,network=host"
        }
    }

    @Test func aBuildOnBuildKitIsPushedAndItsProgressReadsLikeBuildctlPlain() async throws {
        let services = try RealServices()
        let image = services.uniqueImage("buildkitd")
        try await services.withGateway(builder: try builder) { gateway, _ in
            let queued = try await gateway.submit(
                services.context("RUN echo from-buildkitd\nCOPY hello.txt /hello.txt\n", extraFile: ("hello.txt", "hi\n")),
                query: "image=\(image)&label=org.example.engine=buildkitd")
            let build = try await gateway.waitUntilFinished(queued.id)
            let log = try await gateway.log(queued.id)
            #expect(build.status == "succeeded", "\(log)")
            let registry = try await services.manifest(of: image)
            #expect(registry.digest == build.images.first?.digest)
            #expect(registry.labels["org.example.engine"] == "buildkitd")
            #expect(log.contains("[buildgate] engine: BuildKit v"))
            #expect(log.range(of: #"#\d+ \d+\.\d{3} from-buildkitd"#, options: .regularExpression) != nil)
        }
    }

    @Test func aFailingRunAndACancelOnBuildKit() async throws {
        let services = try RealServices()
        try await services.withGateway(builder: try builder) { gateway, _ in
            let failing = try await gateway.waitUntilFinished(try await gateway.submit(
                services.context("RUN echo about-to-fail && exit 3\n"), query: "image=\(services.uniqueImage("bkdfail"))").id)
            #expect(failing.status == "failed")
            #expect(failing.reason == "buildFailed")
            #expect(failing.message?.contains("exit code: 3") == true)

            let slow = try await gateway.submit(
                services.context("RUN echo bk-step-started && sleep 30\n"), query: "image=\(services.uniqueImage("bkdcancel"))")
            try await gateway.waitForLog(slow.id, containing: "bk-step-started\n")
            _ = try await gateway.post("/v1/builds/\(slow.id)/cancel")
            #expect(try await gateway.waitUntilFinished(slow.id).status == "cancelled")
        }
    }
}
