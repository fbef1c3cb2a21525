import AsyncHTTPClient
import BuildGateApp
import BuildGateCore
import BuildGateTesting
import Crypto
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Synchronization
import Testing

/// The gateway against a real Podman service and a real registry (`scripts/test-services`), as a user sees it.
/// Skipped outside CI when those services are not running; under CI=true they must run.
@Suite(.enabled(if: RealEngines.shouldRun, RealEngines.skipReason), .serialized, .timeLimit(.minutes(5)))
struct EndToEndTests {
    @Test func aContextWithRunAndCopyIsBuiltPushedWithItsLabelAndFollowedByTwoReaders() async throws {
        let services = try RealServices()
        let image = services.uniqueImage("app")
        let context = services.context(
            "RUN echo output-from-run-step && sleep 1 && echo second-line\nCOPY hello.txt /hello.txt\n",
            extraFile: ("hello.txt", "hi\n"))
        try await services.withGateway { gateway, _ in
            let queued = try await gateway.submit(context, query: "image=\(image)&label=org.example.team=builders")
            #expect(queued.status == "queued")

            let follow = gateway.request("/v1/builds/\(queued.id)/logs?follow=true")
            let followers = (0..<2).map { _ in
                Task {
                    let response = try await HTTPClient.shared.execute(follow, timeout: .seconds(120))
                    var bytes: [UInt8] = []
                    for try await chunk in response.body { bytes += chunk.readableBytesView }
                    return bytes
                }
            }
            let build = try await gateway.waitUntilFinished(queued.id)
            #expect(build.status == "succeeded", "\(build.message ?? "")")
            let digest = try #require(build.images.first?.digest)

            let registry = try await services.manifest(of: image)
            #expect(registry.digest == digest)
            #expect(registry.labels["org.example.team"] == "builders")

            let log = try await gateway.log(queued.id)
            #expect(log.contains("output-from-run-step\nsecond-line\n"))
            // The build's header and the probe name the engine alike (the build from `/_ping`'s headers, the probe
            // from those and `/version` for the platform).
            struct Builders: Decodable {
                struct Builder: Decodable { var version: String?; var platforms: [String] }
                var builders: [Builder]
            }
            let (_, body) = try await gateway.get("/v1/builders")
            let builder = try #require(try JSONDecoder().decode(Builders.self, from: Data(body)).builders.first)
            let engine = try #require(builder.version)
            #expect(engine.hasPrefix("Podman Engine 4."))
            #expect(log.contains("[buildgate] engine: \(engine)\n"))
            #expect(builder.platforms.first?.hasPrefix("linux/") == true, "\(builder.platforms)")
            #expect(log.contains("[buildgate] pushed \(image)@\(digest)"))
            #expect(log.hasSuffix("[buildgate] result: succeeded\n"))
            for follower in followers {
                #expect(String(decoding: try await follower.value, as: UTF8.self) == log)
            }
        }
    }

    @Test func aTenantsRegistryCredentialsAreUsedForItsPushesOnly() async throws {
        let services = try RealServices()
        let registry = try await AuthenticatedRegistry(
            username: "robot", password: "s3cret-\(UUID().uuidString.prefix(8))")
        defer { registry.stop() }
        try await services.withGateway(insecureRegistries: [registry.address]) { gateway, directory in
            let image = "\(registry.address)/private/app:1"
            // Without credentials the registry refuses the push.
            let denied = try await gateway.waitUntilFinished(
                try await gateway.submit(services.context(""), query: "image=\(image)").id)
            #expect(denied.status == "failed")
            #expect(denied.reason == "pushFailed")

            let (put, _) = try await gateway.put(
                "/v1/registries/\(registry.address)",
                json: #"{"username":"\#(registry.username)","password":"\#(registry.password)"}"#)
            #expect(put.status.code == 204)
            let pushed = try await gateway.waitUntilFinished(
                try await gateway.submit(services.context(""), query: "image=\(image)").id)
            #expect(pushed.status == "succeeded", "\(pushed.message ?? "")")
            #expect(pushed.images.first?.digest != nil)
            let log = try await gateway.log(pushed.id)
            #expect(!log.contains(registry.password))

            // Another tenant does not get them.
            var configuration = try BuildGateConfiguration.resolve([], environment: [:])
            configuration.dataDirectory = directory.path
            configuration.migrationsDirectory = migrationsDirectory
            let other = GatewayClient(
                baseURL: gateway.baseURL,
                token: try await openAccessTokens(configuration, logger: Logger(label: "test")).createToken(
                    tenant: TenantID("other")!, name: "e2e", scopes: [.admin], buildID: nil, expiresAt: nil, at: Date()
                ).token)
            let theirs = try await other.waitUntilFinished(
                try await other.submit(services.context(""), query: "image=\(image)").id)
            #expect(theirs.reason == "pushFailed")
        }
    }

    @Test(arguments: [false, true])
    func aSecretIsMountedForRunButNeverInTheImageOrTheLog(gzip: Bool) async throws {
        let services = try RealServices()
        let value = "s3cret-\(UUID().uuidString.prefix(8))"
        var tar = TarWriter()
        tar.file(
            "Dockerfile",
            """
            \(services.dockerfileHeader)RUN echo run-\(UUID().uuidString)
            RUN --mount=type=secret,id=npmrc test "$(cat /run/secrets/npmrc | wc -c)" -eq \(value.utf8.count) && echo secret-matched
            RUN --mount=type=secret,id=npmrc cat /run/secrets/npmrc
            COPY . /ctx
            RUN ls -a /ctx && test ! -e /run/secrets/npmrc && echo no-secret-left

            """)
        tar.file("keep.txt", "kept\n")
        tar.end()
        let context = gzip ? try tar.gzipped() : tar.bytes
        try await services.withGateway { gateway, _ in
            let (put, _) = try await gateway.put("/v1/secrets/npmrc", body: Array(value.utf8))
            #expect(put.status.code == 204)
            let image = services.uniqueImage("secret")
            let build = try await gateway.waitUntilFinished(
                try await gateway.submit(context, query: "image=\(image)&secret=npmrc").id)
            let log = try await gateway.log(build.id)
            #expect(build.status == "succeeded", "\(log)")
            #expect(log.contains("secret-matched"))
            #expect(log.contains("no-secret-left"))
            // The context as the build saw it: the user's files only.
            #expect(log.contains(".\n..\nDockerfile\nkeep.txt\n"))
            // A step that prints the secret is masked in the log.
            #expect(!log.contains(value))
            #expect(log.contains("****"))
            // Not in the image's config or history either.
            let manifest = try await services.manifest(of: image)
            #expect(!manifest.configJSON.contains(value))
            // The steps, timed, in the build's JSON.
            #expect(build.steps.map(\.name).contains("[5/6] COPY . /ctx"))
            #expect(build.steps.allSatisfy { $0.startedAt != nil && $0.completedAt != nil && $0.error == nil })
        }
    }

    @Test func aCacheExportedByOneBuildIsImportedByTheNext() async throws {
        let services = try RealServices()
        let podman = try #require(
            RealEngines.environment["BUILDGATE_TEST_PODMAN"], "BUILDGATE_TEST_PODMAN is not set: run scripts/test")
        let cache = services.uniqueImage("cache")
        let firstImage = services.uniqueImage("c1")
        let cacheName = try #require(cache.split(separator: "/").last?.split(separator: ":").first)
        let steps = "RUN echo cached-step-\(UUID().uuidString) > /x\n"
        let context = services.context(steps)
        try await services.withGateway { gateway, _ in
            let first = try await gateway.waitUntilFinished(
                try await gateway.submit(context, query: "image=\(firstImage)&cacheTo=\(cache)").id)
            #expect(first.status == "succeeded", "\(first.message ?? "")")
            // Forget this build's local images (its tag and the cache tags; removing them removes the untagged
            // layers under them), so only the registry's cache can answer the next build. Other suites' images stay.
            let prune = try await ChildProcess.run([
                "sh", "-c",
                """
                \(podman) images --format '{{.Repository}}:{{.Tag}}' | grep -F '\(cacheName)' \\
                  | xargs -r \(podman) rmi -f && \(podman) rmi -f '\(firstImage)'
                """,
            ])
            #expect(prune.status == 0, "\(prune.output)")
            let second = try await gateway.waitUntilFinished(
                try await gateway.submit(context, query: "image=\(services.uniqueImage("c2"))&cacheFrom=\(cache)").id)
            let log = try await gateway.log(second.id)
            #expect(second.status == "succeeded", "\(log)")
            #expect(log.contains("Cache pulled from remote"))
            #expect(second.steps.last?.cached == true)
        }
    }

    @Test func aFailingRunEndsFailedWithTheEnginesErrorInTheLog() async throws {
        let services = try RealServices()
        try await services.withGateway { gateway, _ in
            let queued = try await gateway.submit(
                services.context("RUN echo about-to-fail && exit 3\n"), query: "image=\(services.uniqueImage("fail"))")
            let build = try await gateway.waitUntilFinished(queued.id)
            #expect(build.status == "failed")
            #expect(build.reason == "buildFailed")
            #expect(build.message?.contains("exit status 3") == true)
            #expect(build.images.first?.digest == nil)
            let log = try await gateway.log(queued.id)
            #expect(log.contains("about-to-fail\n"))
            #expect(log.contains("ERROR: building at STEP"))
            #expect(log.contains("[buildgate] result: failed (buildFailed)"))
        }
    }

    @Test func cancellingQueuedAndRunningBuildsAndTimingOneOut() async throws {
        let services = try RealServices()
        try await services.withGateway { gateway, _ in
            let running = try await gateway.submit(
                services.context("RUN echo slow-start && sleep 4 && echo slow-end\n"),
                query: "image=\(services.uniqueImage("slow"))")
            let queued = try await gateway.submit(
                services.context(""), query: "image=\(services.uniqueImage("queued"))")
            _ = try await gateway.waitFor(running.id) { $0.status == "running" }

            let (cancelQueued, cancelQueuedBody) = try await gateway.post("/v1/builds/\(queued.id)/cancel")
            #expect(cancelQueued.status.code == 200)
            #expect(try JSONDecoder().decode(BuildJSON.self, from: Data(cancelQueuedBody)).status == "cancelled")

            let (cancelRunning, _) = try await gateway.post("/v1/builds/\(running.id)/cancel")
            #expect(cancelRunning.status.code == 202)
            let cancelled = try await gateway.waitUntilFinished(running.id)
            #expect(cancelled.status == "cancelled")
            let log = try await gateway.log(running.id)
            #expect(log.contains("cancellation requested"))
            #expect(log.contains("waiting for Podman to stop the build"))

            let timed = try await gateway.submit(
                services.context("RUN sleep 5\n"), query: "image=\(services.uniqueImage("timeout"))&timeout=1")
            let timedOut = try await gateway.waitUntilFinished(timed.id)
            #expect(timedOut.status == "timedOut")
            #expect(timedOut.reason == "timedOut")
            #expect(try await gateway.log(timed.id).contains("timeout of 1s reached"))

            let (late, _) = try await gateway.post("/v1/builds/\(timed.id)/cancel")
            #expect(late.status.code == 409)
        }
    }

    @Test func sigtermGivesRunningBuildsTheirGraceThenSettlesThemAndARestartRunsTheRest() async throws {
        let services = try RealServices()
        let binary = try #require(RealEngines.gatewayBinary, "BUILDGATE_TEST_BINARY is not set: run scripts/test")
        let directory = try TemporaryDirectory("sigterm")
        defer { directory.remove() }

        let first = try GatewayProcess(
            binary: binary, dataDirectory: directory.path, services: services,
            extraArguments: ["--shutdown-grace", "2"])
        let gateway = try GatewayClient(
            baseURL: "http://127.0.0.1:\(try await first.port())", dataDirectory: directory.path)
        let slow = try await gateway.submit(
            services.context("RUN echo slow-started && sleep 20\n"), query: "image=\(services.uniqueImage("sigterm"))")
        let queued = try await gateway.submit(
            services.context(""), query: "image=\(services.uniqueImage("aftersigterm"))")
        _ = try await gateway.waitFor(slow.id) { $0.status == "running" }
        let signalled = ContinuousClock.now
        // The grace is 2 s; the Podman build would take 20: the gateway settles it and exits well before that.
        let exited = try await first.sigterm(waitingUpTo: .seconds(60))
        #expect(exited)
        let shutdown = ContinuousClock.now - signalled
        #expect(shutdown >= .seconds(2) && shutdown < .seconds(15), "shut down in \(shutdown)")

        let second = try GatewayProcess(binary: binary, dataDirectory: directory.path, services: services)
        defer { second.terminate() }
        let restarted = GatewayClient(baseURL: "http://127.0.0.1:\(try await second.port())", token: gateway.token)
        let settled = try await restarted.build(slow.id)
        #expect(settled.status == "failed")
        #expect(settled.reason == "interrupted")
        #expect(
            try await restarted.log(slow.id).contains(
                "the gateway shut down before the build finished; result: failed (interrupted)"))
        // The build that was still queued at SIGTERM runs after the restart, once.
        let after = try await restarted.waitUntilFinished(queued.id)
        #expect(after.status == "succeeded", "\(after.message ?? "")")
        #expect(try await restarted.log(queued.id).components(separatedBy: "dispatched to builder").count == 2)
    }

    @Test func aGatewayKilledMidBuildRetriesTheRunningBuildAndRunsTheQueuedOnesOnceAfterRestart() async throws {
        let services = try RealServices()
        let binary = try #require(RealEngines.gatewayBinary, "BUILDGATE_TEST_BINARY is not set: run scripts/test")
        let directory = try TemporaryDirectory("kill9")
        defer { directory.remove() }

        let first = try GatewayProcess(binary: binary, dataDirectory: directory.path, services: services)
        let gateway = try GatewayClient(
            baseURL: "http://127.0.0.1:\(try await first.port())", dataDirectory: directory.path)
        let slow = try await gateway.submit(
            services.context("RUN echo slow-started && sleep 6\n"), query: "image=\(services.uniqueImage("killed"))")
        let queued = [
            try await gateway.submit(services.context(""), query: "image=\(services.uniqueImage("after1"))"),
            try await gateway.submit(services.context(""), query: "image=\(services.uniqueImage("after2"))"),
        ]
        _ = try await gateway.waitFor(slow.id) { $0.status == "running" }
        first.kill9()

        let second = try GatewayProcess(binary: binary, dataDirectory: directory.path, services: services)
        defer { second.terminate() }
        let restarted = GatewayClient(baseURL: "http://127.0.0.1:\(try await second.port())", token: gateway.token)
        // The gateway's death is an infrastructure failure: the build runs again, as its second attempt.
        let settled = try await restarted.waitUntilFinished(slow.id)
        #expect(settled.status == "succeeded", "\(settled.message ?? "")")
        let slowLog = try await restarted.log(slow.id)
        #expect(slowLog.contains("attempt 1 of 3 ended without a result: the gateway running it stopped"))
        #expect(slowLog.components(separatedBy: "dispatched to builder").count == 3)

        for build in queued {
            let finished = try await restarted.waitUntilFinished(build.id)
            #expect(finished.status == "succeeded", "\(finished.message ?? "")")
            #expect(finished.images.first?.digest != nil)
            let log = try await restarted.log(build.id)
            #expect(log.components(separatedBy: "dispatched to builder").count == 2, "dispatched exactly once")
        }
    }
}

/// A trigger build whose gateway is killed while it runs: its callback used to never come, since the crash
/// settlement did not reach the observer.
@Suite(.enabled(if: RealEngines.shouldRun, RealEngines.skipReason), .timeLimit(.minutes(5)))
struct KilledTriggerBuildTests {
    final class Callbacks: Sendable {
        let bodies = Mutex<[[UInt8]]>([])
        /// Commit status requests (GitHub's API), by path.
        let statuses = Mutex<[(path: String, body: [UInt8])]>([])
    }

    /// (One attempt allowed, so the gateway's death ends the build: the forge must hear of that end.)
    @Test func aTriggerBuildRunningWhenTheGatewayIsKilledGetsItsCallbackOnceTheGatewayIsBack() async throws {
        let services = try RealServices()
        let binary = try #require(RealEngines.gatewayBinary, "BUILDGATE_TEST_BINARY is not set: run scripts/test")
        let git = try GitServer()
        defer { git.stop() }
        let work = try git.makeRepository("slow")
        let commit = try git.commit(
            work, files: ["Dockerfile": services.dockerfileHeader + "RUN echo slow-\(UUID().uuidString) && sleep 60\n"],
            message: "slow")
        try await git.waitUntilServing("slow")
        let callbacks = Callbacks()
        let listener = Router()
        listener.post("callback") { request, _ -> Response in
            let body = try await request.body.collect(upTo: 1 << 20)
            callbacks.bodies.withLock { $0.append(Array(body.readableBytesView)) }
            return Response(status: .noContent)
        }
        listener.post("repos/**") { request, _ -> Response in
            let body = try await request.body.collect(upTo: 1 << 20)
            callbacks.statuses.withLock { $0.append((request.uri.path, Array(body.readableBytesView))) }
            return Response(status: .created)
        }
        try await Application(router: listener, configuration: .init(address: .hostname("127.0.0.1", port: 0))).test(
            .live
        ) { client in
            let directory = try TemporaryDirectory("killed-trigger")
            defer { directory.remove() }
            let first = try GatewayProcess(
                binary: binary, dataDirectory: directory.path, services: services,
                extraArguments: ["--build-attempts", "1"])
            let gateway = try GatewayClient(
                baseURL: "http://127.0.0.1:\(try await first.port())", dataDirectory: directory.path)
            let secret = "killed-\(UUID().uuidString)"
            let repository = "e2e/killed-\(UUID().uuidString.prefix(6).lowercased())"
            let (trigger, triggerBody) = try await gateway.postJSON(
                "/v1/triggers",
                """
                {"forge":"github","repository":"\(repository)","secret":"\(secret)","cloneURL":"\(git.url("slow"))",
                 "images":["\(services.registry)/e2e-killed:{{shortSha}}"],
                 "callbackURL":"http://127.0.0.1:\(client.port!)/callback",
                 "statusAPIURL":"http://127.0.0.1:\(client.port!)","statusToken":"ghp_e2e"}
                """)
            #expect(trigger.status.code == 201, "\(String(decoding: triggerBody, as: UTF8.self))")
            let push = SignedGitHubPush(repository: repository, commit: commit, message: "slow", secret: secret)
            let (hook, hookBody) = try await GatewayClient(baseURL: gateway.baseURL, token: "").post(
                "/v1/webhooks/github", body: push.body, headers: push.headers)
            #expect(hook.status.code == 202, "\(String(decoding: hookBody, as: UTF8.self))")
            struct Answer: Decodable { var buildId: String }
            let id = try JSONDecoder().decode(Answer.self, from: Data(hookBody)).buildId
            _ = try await gateway.waitFor(id) { $0.status == "running" }

            first.kill9()
            let second = try GatewayProcess(
                binary: binary, dataDirectory: directory.path, services: services,
                extraArguments: ["--build-attempts", "1"])
            defer { second.terminate() }
            let restarted = GatewayClient(baseURL: "http://127.0.0.1:\(try await second.port())", token: gateway.token)
            let settled = try await restarted.waitUntilFinished(id)
            #expect(settled.status == "failed" && settled.reason == "interrupted")

            struct Event: Decodable {
                struct Build: Decodable { var id: String; var status: String; var reason: String? }; var build: Build
            }
            let told = try await ChildProcess.wait(for: .seconds(30)) {
                callbacks.bodies.withLock { bodies in
                    bodies.contains {
                        (try? JSONDecoder().decode(Event.self, from: Data($0)))?.build.status == "failed"
                    }
                }
            }
            #expect(told, "no callback for the interrupted build")
            let failed = callbacks.bodies.withLock { $0 }.compactMap {
                try? JSONDecoder().decode(Event.self, from: Data($0))
            }
            .filter { $0.build.id == id && $0.build.status == "failed" }
            #expect(failed.count == 1, "told \(failed.count) times")
            #expect(failed.first?.build.reason == "interrupted")
            // And the commit's status on the forge ends too, no longer "pending".
            struct Status: Decodable { var state: String }
            let ended = try await ChildProcess.wait(for: .seconds(30)) {
                callbacks.statuses.withLock { statuses in
                    statuses.contains {
                        $0.path == "/repos/\(repository)/statuses/\(commit)"
                            && ["error", "failure"].contains(
                                (try? JSONDecoder().decode(Status.self, from: Data($0.body)))?.state)
                    }
                }
            }
            #expect(ended, "no final commit status: \(callbacks.statuses.withLock { $0.map(\.path) })")
        }
    }
}

/// The real `buildgate` executable as a child process, so it can be killed with SIGKILL.
final class GatewayProcess: Sendable {
    private let process: Process
    private let output: Pipe

    convenience init(binary: String, dataDirectory: String, services: RealServices, extraArguments: [String] = [])
        throws
    {
        try self.init(
            binary: binary, dataDirectory: dataDirectory,
            arguments: [
                "--builder", "podman=unix://\(services.podmanSocket)", "--insecure-registry", services.registry,
            ]
                + extraArguments)
    }

    /// `buildgate serve` on an ephemeral port with `arguments` (no builder among them: the embedded Podman).
    init(binary: String, dataDirectory: String, arguments: [String]) throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments =
            [
                "serve", "--listen", "127.0.0.1:0", "--data-dir", dataDirectory,
                "--lease-seconds", "3", "--migrations", migrationsDirectory, "--log-level", "warning",
            ] + arguments
        output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.standardError
        try process.run()
    }

    /// The port from the "buildgate listening on http://HOST:PORT" line.
    func port() async throws -> Int {
        var text = ""
        let handle = output.fileHandleForReading
        while !text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().contains(where: {
            $0.contains("listening on")
        }) {
            let data = handle.availableData
            guard !data.isEmpty else { break }
            text += String(decoding: data, as: UTF8.self)
        }
        let line = try #require(
            text.split(separator: "\n").first { $0.contains("listening on") }, "gateway did not start: \(text)")
        let afterHost = try #require(line.split(separator: " ").first { $0.hasPrefix("http://") })
        return try #require(Int(afterHost.split(separator: ":").last ?? ""))
    }

    /// Sends SIGTERM and waits (without blocking a thread) up to `timeout` for the process to exit.
    func sigterm(waitingUpTo timeout: Duration) async throws -> Bool {
        kill(process.processIdentifier, SIGTERM)
        return try await ChildProcess.wait(for: timeout) { !process.isRunning }
    }

    func kill9() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    func terminate() {
        guard process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
    }
}

/// `GET /metrics` after a real build: Prometheus text with the gateway's own figures.
@Suite(.enabled(if: RealEngines.shouldRun, RealEngines.skipReason), .timeLimit(.minutes(5)))
struct MetricsEndToEndTests {
    @Test func aBuildShowsUpInTheMetrics() async throws {
        bootstrapMetricsOnce
        let services = try RealServices()
        try await services.withGateway { gateway, _ in
            let build = try await gateway.waitUntilFinished(
                try await gateway.submit(services.context(""), query: "image=\(services.uniqueImage("metrics"))").id)
            #expect(build.status == "succeeded")
            let (response, body) = try await gateway.get("/metrics")
            #expect(response.status.code == 200)
            let text = String(decoding: body, as: UTF8.self)
            for expected in [
                "buildgate_upload_bytes_total ",
                #"buildgate_build_duration_seconds_count{engine="podman",result="succeeded"}"#,
                #"buildgate_build_queue_wait_seconds_count{engine="podman"}"#,
                #"buildgate_builder_healthy{builder="test-podman"} 1"#,
                #"buildgate_builds{status="queued"}"#, "hb_requests{", "http_server_request_duration_bucket",
            ] {
                #expect(text.contains(expected), "missing \(expected) in:\n\(text.prefix(3000))")
            }
        }
    }
}

extension MetricsEndToEndTests {
    /// The gauges that move while something happens: a builder's busy slots and capacity (under a builder name no
    /// other test uses, so the figures are exact), uploads and followers in flight (process-wide: other suites run
    /// beside this one, so those are read as "at least ours"), and rejected webhook deliveries counted.
    @Test func busySlotsCapacityUploadsFollowersAndDeliveriesAreMeasuredAsTheyHappen() async throws {
        bootstrapMetricsOnce
        let services = try RealServices()
        let name = "metrics-\(UUID().uuidString.prefix(8).lowercased())"
        try await services.withGateway(builder: "podman=unix://\(services.podmanSocket),capacity=1,name=\(name)") {
            gateway, _ in
            func metric(_ series: String) async throws -> Double? {
                let text = String(decoding: try await gateway.get("/metrics").1, as: UTF8.self)
                return text.split(separator: "\n").first { $0.hasPrefix(series + " ") }
                    .flatMap { Double($0.split(separator: " ").last ?? "") }
            }
            func until(_ what: String, _ condition: @escaping (Double) -> Bool, _ series: String) async throws {
                let deadline = ContinuousClock.now + .seconds(60)
                while ContinuousClock.now < deadline {
                    if let value = try await metric(series), condition(value) { return }
                    try await Task.sleep(for: .milliseconds(100))
                }
                Issue.record("never: \(what) (\(series) = \(String(describing: try await metric(series))))")
                throw CancellationError()
            }

            try await until("the builder's capacity", { $0 == 1 }, #"buildgate_builder_capacity{builder="\#(name)"}"#)

            // A build that holds its builder for a while, followed meanwhile.
            let build = try await gateway.submit(
                services.context("RUN echo holding && sleep 10"), query: "image=\(services.uniqueImage("metrics"))")
            try await gateway.waitForLog(build.id, containing: "holding")
            let follower = Task {
                let response = try await HTTPClient.shared.execute(
                    gateway.request("/v1/builds/\(build.id)/logs?follow=true"), timeout: .seconds(300))
                for try await _ in response.body {}
            }
            try await until("a busy slot", { $0 == 1 }, #"buildgate_builder_busy_slots{builder="\#(name)"}"#)
            try await until("our follower", { $0 >= 1 }, "buildgate_log_followers")

            // An upload whose body is held half-way.
            let (body, half) = AsyncStream.makeStream(of: ByteBuffer.self)
            let context = services.context("")
            half.yield(ByteBuffer(bytes: context.prefix(context.count / 2)))
            var upload = gateway.request("/v1/builds?image=\(services.uniqueImage("metrics-upload"))")
            upload.method = .POST
            upload.body = .stream(body, length: .known(Int64(context.count)))
            let uploading = Task { try await HTTPClient.shared.execute(upload, timeout: .seconds(120)).status.code }
            try await until("our upload", { $0 >= 1 }, "buildgate_uploads_active")
            half.yield(ByteBuffer(bytes: context.suffix(from: context.count / 2)))
            half.finish()
            #expect(try await uploading.value == 202)

            try await follower.value
            try await until("the slot freed", { $0 == 0 }, #"buildgate_builder_busy_slots{builder="\#(name)"}"#)

            let series = #"buildgate_webhook_deliveries_total{forge="gitea",outcome="rejected"}"#
            let before = try await metric(series) ?? 0
            let (rejected, _) = try await gateway.postJSON(
                "/v1/webhooks/gitea", "{}", headers: [("X-Gitea-Event", "push")])
            #expect(rejected.status.code == 401)
            try await until("the rejected delivery counted", { $0 >= before + 1 }, series)
        }
    }
}

/// swift-metrics is bootstrapped once per process.
let bootstrapMetricsOnce: Void = bootstrapMetrics()
