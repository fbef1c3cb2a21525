import BuildGateTesting
import Foundation
import Testing

/// One real engine as the end-to-end tests reach it.
enum TestEngine: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case podman, dockerd, dockerdBuildKit, buildkitd

    /// The engines `scripts/test-services` started: Podman and dockerd always (CI fails without them), buildkitd
    /// where its binaries are (`BuildKitEndToEndTests` says when it is not).
    static var available: [TestEngine] {
        allCases.filter { $0 != .buildkitd || RealEngines.buildKitAddress != nil }
    }

    var testDescription: String { rawValue }

    /// The name in image repositories (lowercase only).
    var slug: String { rawValue.lowercased() }

    /// The `--builder` value for a gateway that builds only here.
    func builder(_ services: RealServices) throws -> String {
        switch self {
        case .podman:
            return "podman=unix://\(services.podmanSocket),name=test-podman"
        case .dockerd, .dockerdBuildKit:
            let socket = try #require(
                RealEngines.dockerSocket, "BUILDGATE_TEST_DOCKER_SOCKET is not set: run scripts/test")
            return "docker=unix://\(socket),name=test-dockerd,network=host,buildkit=\(self == .dockerdBuildKit)"
        case .buildkitd:
            let address = try #require(RealEngines.buildKitAddress)
            return address.hasPrefix("buildkit=") ? address : "buildkit=\(address),name=test-buildkitd,network=host"
        }
    }

    /// Whether the engine's builder runs BuildKit (its step names and messages differ from the classic builders').
    var isBuildKit: Bool { self == .dockerdBuildKit || self == .buildkitd }
}

/// Every build parameter and every way a build ends, on every real engine: what the gateway asks for is what the
/// engine does (`EngineBuildRequestTests` and `BuildKitDriverTests` check the requests themselves).
@Suite(.enabled(if: RealEngines.shouldRun, RealEngines.skipReason), .serialized, .timeLimit(.minutes(5)))
struct EngineParametersEndToEndTests {
    /// A context of its own Dockerfile and files (no layer of it is in any engine's cache before).
    private func context(_ dockerfile: String, files: [(String, String)] = []) -> [UInt8] {
        var tar = TarWriter()
        tar.file("Dockerfile", dockerfile)
        for (name, contents) in files { tar.file(name, contents) }
        tar.end()
        return tar.bytes
    }

    @Test(arguments: TestEngine.available)
    func targetBuildArgumentsAndLabelsReachTheEngine(engine: TestEngine) async throws {
        let services = try RealServices()
        let unique = UUID().uuidString.prefix(8).lowercased()
        // The stage after the target fails: built only if `target` were dropped.
        let dockerfile = """
            FROM \(services.registry)/busybox:latest AS base
            ARG GREETING=unset
            RUN echo "greeting=$GREETING-\(unique)"
            FROM base AS chosen
            RUN echo in-chosen-stage-\(unique) > /stage
            FROM chosen AS beyond
            RUN echo beyond-the-target && exit 9

            """
        let image = services.uniqueImage("params-\(engine.slug)")
        try await services.withGateway(builder: try engine.builder(services)) { gateway, _ in
            let queued = try await gateway.submit(
                context(dockerfile),
                query: "image=\(image)&target=chosen&buildArg=GREETING=hello&label=org.example.engine=\(engine)")
            let build = try await gateway.waitUntilFinished(queued.id)
            let log = try await gateway.log(queued.id)
            #expect(build.status == "succeeded", "\(log)")
            #expect(log.contains("greeting=hello-\(unique)"), "\(log)")
            #expect(!log.contains("greeting=unset"))
            #expect(!log.contains("beyond-the-target\n"))
            let registry = try await services.manifest(of: image)
            #expect(registry.digest == build.images.first?.digest)
            #expect(registry.labels["org.example.engine"] == engine.rawValue)
        }
    }

    @Test(arguments: TestEngine.available)
    func noCacheRunsEveryStepAgain(engine: TestEngine) async throws {
        let services = try RealServices()
        let step = "RUN echo cache-me-\(UUID().uuidString) > /x"
        let source = context("FROM \(services.registry)/busybox:latest\n\(step)\n")
        @Sendable func runStep(_ build: BuildJSON) -> BuildJSON.Step? {
            build.steps.first { $0.name.contains("cache-me-") }
        }
        try await services.withGateway(builder: try engine.builder(services)) { gateway, _ in
            let first = try await gateway.waitUntilFinished(
                try await gateway.submit(source, query: "image=\(services.uniqueImage("nocache1"))").id)
            let firstLog = try await gateway.log(first.id)
            #expect(first.status == "succeeded", "\(firstLog)")
            let again = try await gateway.waitUntilFinished(
                try await gateway.submit(source, query: "image=\(services.uniqueImage("nocache2"))").id)
            let againLog = try await gateway.log(again.id)
            #expect(try #require(runStep(again), "\(again.steps)").cached, "\(againLog)")

            let uncached = try await gateway.waitUntilFinished(
                try await gateway.submit(source, query: "image=\(services.uniqueImage("nocache3"))&noCache=true").id)
            #expect(uncached.status == "succeeded")
            let uncachedLog = try await gateway.log(uncached.id)
            #expect(try #require(runStep(uncached), "\(uncached.steps)").cached == false, "\(uncachedLog)")
        }
    }

    @Test(arguments: TestEngine.available)
    func aFailingRunACancelAndATimeout(engine: TestEngine) async throws {
        let services = try RealServices()
        try await services.withGateway(builder: try engine.builder(services)) { gateway, _ in
            let failing = try await gateway.waitUntilFinished(
                try await gateway.submit(
                    services.context("RUN echo about-to-fail && exit 3\n"),
                    query: "image=\(services.uniqueImage("fail-\(engine.slug)"))"
                ).id)
            #expect(failing.status == "failed")
            #expect(failing.reason == "buildFailed")
            #expect(failing.message?.isEmpty == false)
            #expect(failing.images.first?.digest == nil)
            let failedLog = try await gateway.log(failing.id)
            #expect(failedLog.contains("about-to-fail"))
            #expect(failedLog.contains("[buildgate] result: failed (buildFailed)"))

            let slow = try await gateway.submit(
                services.context("RUN echo step-started && sleep 30\n"),
                query: "image=\(services.uniqueImage("cancel-\(engine.slug)"))")
            try await gateway.waitForLog(slow.id, containing: "step-started\n")
            let (cancel, _) = try await gateway.post("/v1/builds/\(slow.id)/cancel")
            #expect(cancel.status.code == 202)
            let cancelled = try await gateway.waitUntilFinished(slow.id)
            #expect(cancelled.status == "cancelled")
            #expect(try await gateway.log(slow.id).contains("[buildgate] result: cancelled"))

            let timed = try await gateway.submit(
                services.context("RUN echo timed-started && sleep 30\n"),
                query: "image=\(services.uniqueImage("timeout-\(engine.slug)"))&timeout=2")
            let timedOut = try await gateway.waitUntilFinished(timed.id)
            #expect(timedOut.status == "timedOut")
            #expect(try await gateway.log(timed.id).contains("timeout of 2s reached"))
        }
    }

    @Test(arguments: TestEngine.available)
    func aRegistryThatRefusesThePushEndsPushFailedWithoutShowingTheCredentials(engine: TestEngine) async throws {
        let services = try RealServices()
        let registry = try await AuthenticatedRegistry(
            username: "robot", password: "s3cret-\(UUID().uuidString.prefix(8))")
        defer { registry.stop() }
        try await services.withGateway(insecureRegistries: [registry.address], builder: try engine.builder(services)) {
            gateway, _ in
            let (put, _) = try await gateway.put(
                "/v1/registries/\(registry.address)",
                json: #"{"username":"\#(registry.username)","password":"wrong-password"}"#)
            #expect(put.status.code == 204)
            let denied = try await gateway.waitUntilFinished(
                try await gateway.submit(services.context(""), query: "image=\(registry.address)/private/app:1").id)
            #expect(denied.status == "failed")
            #expect(denied.reason == "pushFailed", "\(denied.message ?? "")")
            #expect(try await !gateway.log(denied.id).contains("wrong-password"))
        }
    }

    @Test(arguments: TestEngine.available)
    func theDockerignoreIsHonoured(engine: TestEngine) async throws {
        let services = try RealServices()
        let image = services.uniqueImage("ignore-\(engine.slug)")
        let source = context(
            """
            FROM \(services.registry)/busybox:latest
            COPY . /ctx
            RUN echo check-\(UUID().uuidString) && test -e /ctx/kept.txt && test ! -e /ctx/local.env \
                && test ! -e /ctx/build/out.o && test -e /ctx/build/keep.o && echo dockerignore-honoured

            """,
            files: [
                (".dockerignore", "# not for the image\nlocal.env\nbuild/*.o\n!build/keep.o\n"),
                ("kept.txt", "kept\n"), ("local.env", "TOKEN=never-in-the-image\n"),
                ("build/out.o", "object\n"), ("build/keep.o", "kept object\n"),
            ])
        try await services.withGateway(builder: try engine.builder(services)) { gateway, _ in
            let build = try await gateway.waitUntilFinished(
                try await gateway.submit(source, query: "image=\(image)").id)
            let log = try await gateway.log(build.id)
            // Found by this test, not mended yet: dockerd (classic and BuildKit mode) keeps what an uploaded
            // context's .dockerignore excludes (the docker CLI filters on its side; the gateway does not yet).
            withKnownIssue("dockerd: .dockerignore not applied to an uploaded context") {
                #expect(build.status == "succeeded", "\(log)")
                #expect(log.contains("dockerignore-honoured"))
            } when: {
                engine == .dockerd || engine == .dockerdBuildKit
            }
        }
    }

    /// The gateway takes secrets only for Podman and buildkitd builders (dockerd gets no secret files: 422).
    @Test(arguments: TestEngine.available.filter { $0 == .podman || $0 == .buildkitd })
    func aSecretIsMountedForRunAndMaskedInTheLog(engine: TestEngine) async throws {
        let services = try RealServices()
        let value = "s3cret-\(UUID().uuidString.prefix(8))"
        let image = services.uniqueImage("secret-\(engine.slug)")
        let source = context(
            """
            FROM \(services.registry)/busybox:latest
            RUN --mount=type=secret,id=npmrc echo check-\(UUID().uuidString) \
                && test "$(cat /run/secrets/npmrc | wc -c)" -eq \(value.utf8.count) && echo secret-matched
            RUN --mount=type=secret,id=npmrc cat /run/secrets/npmrc
            RUN test ! -e /run/secrets/npmrc && echo no-secret-left

            """)
        try await services.withGateway(builder: try engine.builder(services)) { gateway, _ in
            let (put, _) = try await gateway.put("/v1/secrets/npmrc", body: Array(value.utf8))
            #expect(put.status.code == 204)
            let build = try await gateway.waitUntilFinished(
                try await gateway.submit(source, query: "image=\(image)&secret=npmrc").id)
            let log = try await gateway.log(build.id)
            #expect(build.status == "succeeded", "\(log)")
            #expect(log.contains("secret-matched"))
            #expect(log.contains("no-secret-left"))
            #expect(!log.contains(value))
            #expect(log.contains("****"))
            #expect(!(try await services.manifest(of: image).configJSON.contains(value)))
        }
    }
}
