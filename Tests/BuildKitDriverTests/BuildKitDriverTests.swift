import BuildGateCore
import BuildGateTesting
import Foundation
import Logging
import Synchronization
import Testing

@testable import BuildKitDriver

/// The driver against a stand-in `buildctl` that records what it was given (arguments, `DOCKER_CONFIG`, the
/// extracted context, secret files) and replays a real buildctl v0.24 capture on standard error.
@Suite struct BuildKitDriverTests {
    /// A directory holding the stand-in, its configuration, what it recorded, a context archive and a work dir.
    struct StandIn {
        let directory: TemporaryDirectory
        var buildctl: String { "\(directory.path)/buildctl" }

        init(_ settings: [String: String]) throws {
            directory = try TemporaryDirectory("buildctl-standin")
            let script = try #require(Bundle.module.url(forResource: "Fixtures/buildctl-standin", withExtension: nil))
            try FileManager.default.copyItem(atPath: script.path, toPath: buildctl)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: buildctl)
            let conf = settings.map { key, value in
                let fixture = Bundle.module.url(forResource: "Fixtures/\(value)", withExtension: nil)?.path
                return "\(key)='\(["REPLAY", "METADATA"].contains(key) ? fixture ?? value : value)'"
            }
            try (conf.joined(separator: "\n") + "\n").write(
                toFile: "\(directory.path)/standin.conf", atomically: true, encoding: .utf8)
        }

        func recorded(_ name: String) -> String? {
            try? String(contentsOfFile: "\(directory.path)/\(name)", encoding: .utf8)
        }

        func job(
            dockerfile: String = "Dockerfile",
            images: [String] = ["127.0.0.1:5000/team/app:1", "127.0.0.1:5000/team/app:latest"],
            secrets: [String: SecretValue] = [:]
        ) throws -> BuildJob {
            var tar = TarWriter()
            tar.file(dockerfile, "FROM busybox\nRUN echo hello\n")
            tar.file("src/main.c", "int main(void) { return 0; }\n")
            tar.file(".dockerignore", "*.log\n")
            tar.end()
            let archive = "\(directory.path)/context.tar"
            try Data(tar.bytes).write(to: URL(fileURLWithPath: archive))
            let request = BuildRequest(
                images: try images.map { try ImageReference(parsing: $0) }, dockerfile: dockerfile, target: "final",
                buildArgs: ["VERSION": "1.2", "A": "x=y"],
                labels: ["org.opencontainers.image.source": "https://git.example/app"],
                platform: try Platform(parsing: "linux/arm64"), noCache: true,
                cacheFrom: [try ImageReference(parsing: "127.0.0.1:5000/team/app-cache:main")],
                cacheTo: try ImageReference(parsing: "cache.example.com/team/app-cache:main"))
            return BuildJob(
                id: BuildID.generate(), request: request,
                context: BuildContext(
                    digest: ContextDigest(hex: String(repeating: "a", count: 64))!, size: Int64(tar.bytes.count),
                    compression: .none),
                contextPath: archive,
                registryCredentials: ["127.0.0.1:5000": RegistryCredential(username: "ci", password: "s3cret")],
                secrets: secrets)
        }

        func driver(insecure: Set<String> = ["127.0.0.1:5000"]) -> BuildKitDriver {
            var configuration = BuildKitDriver.Configuration(workDirectory: "\(directory.path)/work")
            configuration.buildctl = buildctl
            configuration.insecureRegistries = insecure
            configuration.stopGracePeriod = .seconds(5)
            return BuildKitDriver(configuration: configuration, logger: Logger(label: "test"))
        }

        /// Nothing is left in the work directory once a build has ended.
        var workDirectoryIsEmpty: Bool {
            ((try? FileManager.default.contentsOfDirectory(atPath: "\(directory.path)/work")) ?? []).isEmpty
        }
    }

    final class Events: Sendable {
        private let list = Mutex<[BuildEvent]>([])
        func append(_ event: BuildEvent) { list.withLock { $0.append(event) } }
        var all: [BuildEvent] { list.withLock { $0 } }
        var text: String {
            all.compactMap { if case .output(let text) = $0 { text } else { nil } }.joined()
        }
    }

    let endpoint = {
        var endpoint = BuilderEndpoint(
            name: "bk-1", engine: .buildkit, address: .tcp(host: "buildkitd.builders", port: 1234))
        endpoint.networkMode = "host"
        endpoint.tls = .init(
            caCertificate: "/certs/ca.pem", clientCertificate: "/certs/cert.pem", clientKey: "/certs/key.pem",
            serverName: "buildkitd")
        return endpoint
    }()

    @Test func everyParameterBecomesABuildctlArgument() async throws {
        let standIn = try StandIn(["REPLAY": "build-rawjson.jsonl", "METADATA": "build-metadata.json"])
        defer { standIn.directory.remove() }
        let events = Events()
        let outcome = await standIn.driver().run(try standIn.job(dockerfile: "docker/Dockerfile.prod"), on: endpoint) {
            events.append($0)
        }

        let digest = "sha256:0586c9d1809d7beee270f2e95e5021166301625a9749bc6cac8fc79373e8c232"
        guard case .succeeded(let pushed) = outcome else { Issue.record("expected success, got \(outcome)"); return }
        #expect(pushed.map(\.digest) == [digest, digest])
        #expect(pushed.map(\.reference.description) == ["127.0.0.1:5000/team/app:1", "127.0.0.1:5000/team/app:latest"])

        let args = try #require(standIn.recorded("args")).split(separator: "\n").map(String.init)
        // The work directory is gone by now; compare with its paths' shape.
        let context = try #require(args.first { $0.hasPrefix("context=") }).dropFirst("context=".count)
        let metadata = try #require(args.last)
        #expect(
            args == [
                "--addr", "tcp://buildkitd.builders:1234",
                "--tlscacert", "/certs/ca.pem", "--tlscert", "/certs/cert.pem", "--tlskey", "/certs/key.pem",
                "--tlsservername", "buildkitd",
                "build", "--frontend", "dockerfile.v0", "--progress", "rawjson",
                "--local", "context=\(context)",
                "--local", "dockerfile=\(context)/docker",
                "--opt", "filename=Dockerfile.prod",
                "--opt", "target=final",
                "--opt", "platform=linux/arm64",
                "--opt", "build-arg:A=x=y", "--opt", "build-arg:VERSION=1.2",
                "--opt", "label:org.opencontainers.image.source=https://git.example/app",
                "--no-cache",
                "--opt", "force-network-mode=host", "--allow", "network.host",
                "--import-cache", "type=registry,ref=127.0.0.1:5000/team/app-cache:main,registry.insecure=true",
                "--export-cache", "type=registry,ref=cache.example.com/team/app-cache:main,mode=max",
                "--output",
                "type=image,\"name=127.0.0.1:5000/team/app:1,127.0.0.1:5000/team/app:latest\",push=true,registry.insecure=true",
                "--metadata-file", metadata,
            ])
        // The context arrived whole, .dockerignore included (BuildKit applies it).
        #expect(
            standIn.recorded("context-files")
                == ".\n./.dockerignore\n./docker\n./docker/Dockerfile.prod\n./src\n./src/main.c\n")
        // Credentials reached buildctl through DOCKER_CONFIG, and the per-build directory is gone afterwards.
        let config = try #require(standIn.recorded("docker-config.json"))
        #expect(config.contains(Data("ci:s3cret".utf8).base64EncodedString()))
        #expect(standIn.workDirectoryIsEmpty)
        #expect(!args.joined().contains("s3cret"))

        // The log: engine header, then the progress rendered in BuildKit's plain style.
        #expect(events.all.first == .accepted(engine: "BuildKit v0.24.0 at tcp://buildkitd.builders:1234"))
        #expect(events.text.contains("[2/3] RUN echo hello"))
        #expect(events.text.range(of: #"#\d+ \d+\.\d{3} hello"#, options: .regularExpression) != nil)

        // Steps with BuildKit's own times, the last report complete.
        let steps = try #require(
            events.all.last { if case .steps = $0 { true } else { false } }.flatMap { event -> [BuildStep]? in
                if case .steps(let steps) = event { steps } else { nil }
            })
        let run = try #require(steps.first { $0.name == "[2/3] RUN echo hello" })
        let (started, completed) = (try #require(run.startedAt), try #require(run.completedAt))
        #expect(completed > started && completed.timeIntervalSince(started) < 60)
        #expect(!run.cached && run.error == nil)
        #expect(steps.allSatisfy { $0.completedAt != nil })
        // In execution order, although buildkitd announced `[3/3] COPY` before the context load, RUN and FROM.
        let starts = steps.compactMap(\.startedAt)
        #expect(starts == starts.sorted(), "\(steps.map(\.name))")
        let positions = ["[1/3] FROM", "[2/3] RUN", "[3/3] COPY"].compactMap { prefix in
            steps.firstIndex { $0.name.hasPrefix(prefix) }
        }
        #expect(positions.count == 3 && positions == positions.sorted(), "\(steps.map(\.name))")
    }

    @Test func aCachedBuildsStepsSayCached() async throws {
        let standIn = try StandIn(["REPLAY": "build-rawjson-cached.jsonl", "METADATA": "build-metadata.json"])
        defer { standIn.directory.remove() }
        let events = Events()
        #expect(await standIn.driver().run(try standIn.job(), on: endpoint) { events.append($0) }.isSuccess)
        guard case .steps(let steps)? = events.all.last(where: { if case .steps = $0 { true } else { false } }) else {
            Issue.record("no steps reported")
            return
        }
        #expect(steps.first { $0.name.hasSuffix("RUN echo hello") }?.cached == true)
        #expect(events.text.contains("CACHED"))
    }

    @Test func secretsAreFilesOnlyTheBuildCanRead() async throws {
        let standIn = try StandIn(["REPLAY": "build-rawjson.jsonl", "METADATA": "build-metadata.json"])
        defer { standIn.directory.remove() }
        let job = try standIn.job(secrets: ["npmrc": SecretValue(Array("token-123".utf8))])
        let outcome = await standIn.driver().run(job, on: endpoint) { _ in }
        #expect(outcome.isSuccess)
        let args = try #require(standIn.recorded("args"))
        #expect(args.range(of: #"--secret\nid=npmrc,src=/\S+/secrets/npmrc\n"#, options: .regularExpression) != nil)
        #expect(!args.contains("token-123"))
        #expect(standIn.recorded("secret-files") == "600 token-123\n")
        #expect(standIn.workDirectoryIsEmpty)
    }

    @Test func aFailedBuildEndsWithBuildctlsErrorLine() async throws {
        let standIn = try StandIn(["REPLAY": "build-fail-rawjson.jsonl", "EXIT": "1"])
        defer { standIn.directory.remove() }
        let events = Events()
        let outcome = await standIn.driver().run(try standIn.job(), on: endpoint) { events.append($0) }
        #expect(
            outcome
                == .failed(
                    .buildFailed,
                    message:
                        #"failed to solve: process "/bin/sh -c echo about-to-fail && exit 3" did not complete successfully: exit code: 3"#
                ))
        #expect(events.text.contains("about-to-fail"))
        #expect(events.text.contains(">>> RUN echo about-to-fail && exit 3"))
        #expect(!events.all.contains { if case .pushed = $0 { true } else { false } })
        guard case .steps(let steps)? = events.all.last(where: { if case .steps = $0 { true } else { false } }) else {
            Issue.record("no steps reported")
            return
        }
        #expect(
            steps.first { $0.name.hasSuffix("RUN echo about-to-fail && exit 3") }?.error?.contains("exit code: 3")
                == true)
        #expect(standIn.workDirectoryIsEmpty)
    }

    @Test func aContextBuildKitCouldNotLoadIsABuildFailureWithBuildctlsMessage() async throws {
        // buildctl's plain text only (a real capture of a 404 context download): no JSON at all.
        let standIn = try StandIn(["REPLAY": "build-httpctx-404-plain.txt", "EXIT": "1"])
        defer { standIn.directory.remove() }
        let events = Events()
        let outcome = await standIn.driver().run(try standIn.job(), on: endpoint) { events.append($0) }
        #expect(
            outcome
                == .failed(
                    .buildFailed,
                    message:
                        "failed to solve: failed to read downloaded context: failed to load cache key: invalid response status 404"
                ))
        #expect(events.text.contains("#1 ERROR: invalid response status 404\n"))
    }

    @Test func aRefusedPushIsAPushFailure() async throws {
        let standIn = try StandIn(["REPLAY": "push-denied.txt", "EXIT": "1"])
        defer { standIn.directory.remove() }
        try """
        error: failed to solve: failed to push 127.0.0.1:5000/team/app:1: failed to authorize: failed to fetch basic auth token: 401 Unauthorized

        """.write(toFile: "\(standIn.directory.path)/push-denied.txt", atomically: true, encoding: .utf8)
        try "REPLAY='\(standIn.directory.path)/push-denied.txt'\nEXIT=1\n".write(
            toFile: "\(standIn.directory.path)/standin.conf", atomically: true, encoding: .utf8)
        let outcome = await standIn.driver().run(try standIn.job(), on: endpoint) { _ in }
        guard case .failed(.pushFailed, let message) = outcome else {
            Issue.record("expected pushFailed, got \(outcome)"); return
        }
        #expect(message.contains("401 Unauthorized"))
    }

    @Test func anUnreachableDaemonIsBuilderUnavailable() async throws {
        let standIn = try StandIn(["UNREACHABLE": "1"])
        defer { standIn.directory.remove() }
        let outcome = await standIn.driver().run(try standIn.job(), on: endpoint) { _ in }
        guard case .failed(.builderUnavailable, let message) = outcome else { Issue.record("got \(outcome)"); return }
        #expect(message.contains("connection refused"))
        #expect(standIn.recorded("args") == nil)
        #expect(standIn.workDirectoryIsEmpty)
    }

    @Test func cancellingEndsBuildctl() async throws {
        let standIn = try StandIn(["REPLAY": "build-rawjson.jsonl", "HANG": "1"])
        defer { standIn.directory.remove() }
        let job = try standIn.job()
        let driver = standIn.driver()
        let task = Task { await driver.run(job, on: endpoint) { _ in } }
        // Wait until buildctl runs and waits (its SIGTERM trap set), then cancel as the dispatcher does on a user
        // cancel or a timeout.
        let hanging = try await ChildProcess.wait(for: .seconds(30)) { standIn.recorded("hanging") != nil }
        #expect(hanging, "the buildctl stand-in never started waiting")
        task.cancel()
        let outcome = await task.value
        #expect(outcome == .failed(.cancelled, message: "the build was stopped"))
        #expect(standIn.recorded("terminated") == "yes\n", "buildctl got SIGTERM, so it could cancel the solve")
        #expect(standIn.workDirectoryIsEmpty)
    }

    @Test func aProbeReportsVersionAndWorkerPlatformsOrThrows() async throws {
        let standIn = try StandIn([:])
        defer { standIn.directory.remove() }
        let probe = try await standIn.driver().probe(endpoint)
        #expect(probe.version == "BuildKit v0.24.0 at tcp://buildkitd.builders:1234")
        #expect(probe.platforms.map(\.description) == ["linux/amd64", "linux/amd64/v2", "linux/amd64/v3", "linux/386"])
        let down = try StandIn(["UNREACHABLE": "1"])
        defer { down.directory.remove() }
        await #expect(throws: (any Error).self) { try await down.driver().probe(endpoint) }
    }

    @Test func theVersionComesFromDebugInfo() {
        #expect(
            BuildKitDriver.version(fromDebugInfo: "BuildKit: github.com/moby/buildkit v0.24.0 3a9ba4f\n")
                == "BuildKit v0.24.0")
        #expect(BuildKitDriver.version(fromDebugInfo: "something else") == "BuildKit")
    }
}

extension BuildOutcome {
    var isSuccess: Bool { if case .succeeded = self { true } else { false } }
}
