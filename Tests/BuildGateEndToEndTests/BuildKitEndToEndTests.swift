import BuildGateTesting
import Foundation
import Testing

/// The gateway against a real buildkitd through a real `buildctl`: what is particular to BuildKit (the cases every
/// engine shares are in `EngineParametersEndToEndTests`). Debian packages neither binary: `scripts/test-services`
/// starts buildkitd v0.24.0 from `../shared/tools/buildkit` (or `BUILDGATE_TEST_BUILDKITD`) and sets
/// `BUILDGATE_TEST_BUILDKIT_ADDR` and `BUILDGATE_TEST_BUILDCTL`; where the binaries are missing this suite reports
/// itself skipped, and where they are present but buildkitd does not start, the test run fails before any test.
@Suite(
    .enabled(
        if: RealEngines.buildKitAddress != nil,
        "needs a real buildkitd: scripts/test-services starts one from ../shared/tools/buildkit (or BUILDGATE_TEST_BUILDKITD); neither is here"
    ),
    .serialized, .timeLimit(.minutes(5)))
struct BuildKitEndToEndTests {
    private var builder: String {
        get throws { try TestEngine.buildkitd.builder(try RealServices()) }
    }

    @Test func aBuildOnBuildKitIsPushedAndItsProgressReadsLikeBuildctlPlain() async throws {
        let services = try RealServices()
        let image = services.uniqueImage("buildkitd")
        try await services.withGateway(builder: try builder) { gateway, _ in
            let queued = try await gateway.submit(
                services.context(
                    "RUN echo from-buildkitd\nCOPY hello.txt /hello.txt\n", extraFile: ("hello.txt", "hi\n")),
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

    @Test func aCacheExportedToTheRegistryIsImportedAfterBuildkitdForgotItsOwn() async throws {
        let services = try RealServices()
        let buildctl = try #require(RealEngines.buildctl, "BUILDGATE_TEST_BUILDCTL is not set: run scripts/test")
        let address = try #require(RealEngines.buildKitAddress)
        let cache = services.uniqueImage("bkcache")
        let context = services.context("RUN echo cached-step-\(UUID().uuidString) > /x\n")
        try await services.withGateway(builder: try builder) { gateway, _ in
            let first = try await gateway.waitUntilFinished(
                try await gateway.submit(context, query: "image=\(services.uniqueImage("bkc1"))&cacheTo=\(cache)").id)
            let firstLog = try await gateway.log(first.id)
            #expect(first.status == "succeeded", "\(firstLog)")
            // Only the registry's cache can answer the next build.
            let prune = try await ChildProcess.run([buildctl, "--addr", address, "prune", "--all"])
            #expect(prune.status == 0, "\(prune.output)")
            let second = try await gateway.waitUntilFinished(
                try await gateway.submit(context, query: "image=\(services.uniqueImage("bkc2"))&cacheFrom=\(cache)").id)
            let log = try await gateway.log(second.id)
            #expect(second.status == "succeeded", "\(log)")
            #expect(log.contains("importing cache manifest from \(cache)"), "\(log)")
            let step = try #require(second.steps.first { $0.name.contains("cached-step-") }, "\(second.steps)")
            #expect(step.cached, "\(log)")
        }
    }
}
