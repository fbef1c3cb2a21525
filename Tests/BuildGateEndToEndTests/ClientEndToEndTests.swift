import AsyncHTTPClient
import BuildGateTesting
import Foundation
import Testing

/// `buildgate submit` and the other client commands, as a person runs them: the real binary against a live gateway
/// with the real Podman and registry.
@Suite(.enabled(if: RealEngines.shouldRun, RealEngines.skipReason), .serialized, .timeLimit(.minutes(5)))
struct ClientEndToEndTests {
    /// Runs `buildgate ARGUMENTS` against `gateway`, with credentials in the environment.
    func buildgate(_ arguments: [String], gateway: GatewayClient) async throws -> ChildProcess.Result {
        let binary = try #require(RealEngines.gatewayBinary, "BUILDGATE_TEST_BINARY is not set: run scripts/test")
        return try await ChildProcess.run(
            [binary] + arguments,
            environment: ["BUILDGATE_URL": gateway.baseURL, "BUILDGATE_TOKEN": gateway.token, "HOME": "/nonexistent"])
    }

    /// A directory to build: a Dockerfile on the test registry's busybox, files, and a `.dockerignore`.
    func project(_ services: RealServices, dockerfile: String) throws -> TemporaryDirectory {
        let directory = try TemporaryDirectory("project")
        let files = [
            "Dockerfile": services.dockerfileHeader + dockerfile,
            ".dockerignore": "# local things\nsecret.env\nlogs/\n*.tmp\n!keep.tmp\n",
            "secret.env": "TOKEN=do-not-send\n",
            "logs/today.log": "noise\n",
            "keep.tmp": "kept\n",
            "drop.tmp": "dropped\n",
            "src/main.txt": "main \(UUID().uuidString)\n",
        ]
        for (path, text) in files {
            let full = "\(directory.path)/\(path)"
            try FileManager.default.createDirectory(
                atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try text.write(toFile: full, atomically: true, encoding: .utf8)
        }
        return directory
    }

    @Test func submitSendsTheDirectoryAsDockerWouldAndPrintsTheDigest() async throws {
        let services = try RealServices()
        try await services.withGateway { gateway, _ in
            let directory = try project(services, dockerfile: "COPY . /app\nRUN find /app -type f | sort\n")
            defer { directory.remove() }
            let image = services.uniqueImage("submit")
            let submitted = try await buildgate(["submit", directory.path, "-t", image], gateway: gateway)
            #expect(submitted.status == 0, "\(submitted.output)")
            let pushed = try await services.manifest(of: image)
            #expect(
                submitted.output.firstMatch(of: /succeeded in [0-9]+\.[0-9]s: build b/) != nil, "\(submitted.output)")
            #expect(submitted.output.contains("\(image)@\(pushed.digest)"), "\(submitted.output)")
            // The build saw what docker would have sent: not the ignored files, the Dockerfile and .dockerignore.
            #expect(submitted.output.contains("/app/src/main.txt") && submitted.output.contains("/app/keep.tmp"))
            #expect(submitted.output.contains("/app/.dockerignore") && submitted.output.contains("/app/Dockerfile"))
            for ignored in ["secret.env", "today.log", "drop.tmp"] {
                #expect(!submitted.output.contains("/app/\(ignored)"), "\(ignored) was sent")
            }
            // And the pushed image's layers do not hold them either.
            let files = try await services.layerFiles(of: image)
            #expect(files.contains("app/src/main.txt"))
            #expect(!files.contains { $0.hasSuffix("secret.env") || $0.hasSuffix("drop.tmp") }, "\(files)")

            // The same tree again: the same context digest.
            let first = try #require(try await gateway.builds().first)
            // The same tree again: the same context digest, which the gateway keeps, so nothing is uploaded.
            let again = try await buildgate(["submit", directory.path, "-t", image, "--detach"], gateway: gateway)
            #expect(again.status == 0, "\(again.output)")
            #expect(again.output.contains("is already on the gateway: not sent again"), "\(again.output)")
            let id = try #require(again.output.split(separator: "\n").last.map(String.init))
            #expect(try await gateway.build(id).context?.digest == first.context?.digest)
            #expect(first.context != nil)
            let forced = try await buildgate(
                ["submit", directory.path, "-t", image, "--detach", "--no-reuse"], gateway: gateway)
            #expect(forced.status == 0 && !forced.output.contains("not sent again"), "\(forced.output)")
            let forcedID = try #require(forced.output.split(separator: "\n").last.map(String.init))
            #expect(try await gateway.build(forcedID).context?.digest == first.context?.digest)
        }
    }

    @Test func aFailingBuildExits1AndARefusedRequest2() async throws {
        let services = try RealServices()
        try await services.withGateway { gateway, _ in
            let directory = try project(services, dockerfile: "RUN echo about-to-fail && exit 3\n")
            defer { directory.remove() }
            let failed = try await buildgate(
                ["submit", directory.path, "-t", services.uniqueImage("fail"), "--compress"], gateway: gateway)
            #expect(failed.status == 1, "\(failed.output)")
            #expect(failed.output.contains("about-to-fail") && failed.output.contains("failed (buildFailed)"))

            let refused = try await buildgate(
                ["submit", directory.path, "-t", services.uniqueImage("refused"), "--secret", "no-such-secret"],
                gateway: gateway)
            #expect(refused.status == 2, "\(refused.output)")
            #expect(refused.output.contains("noSuchSecret"), "\(refused.output)")
            let usage = try await buildgate(["submit", directory.path], gateway: gateway)
            #expect(usage.status == 2 && usage.output.contains("-t/--image"), "\(usage.output)")
            let unreachable = try await ChildProcess.run(
                [
                    try #require(RealEngines.gatewayBinary), "submit", directory.path, "-t", "x/y", "--url",
                    "http://127.0.0.1:9",
                ])
            #expect(unreachable.status == 4, "\(unreachable.output)")
        }
    }

    /// `login` keeps the URL and token (0600) for the other commands: `builds`, `status`, `logs`, `rerun`, `cancel`.
    @Test func loginThenTheOtherCommandsUseTheStoredCredentials() async throws {
        let services = try RealServices()
        let binary = try #require(RealEngines.gatewayBinary, "BUILDGATE_TEST_BINARY is not set: run scripts/test")
        try await services.withGateway { gateway, scratch in
            let home = "\(scratch.path)/home"
            func run(_ arguments: [String], input: String? = nil) async throws -> ChildProcess.Result {
                try await ChildProcess.run(
                    [binary] + arguments, environment: ["HOME": home, "BUILDGATE_URL": "", "BUILDGATE_TOKEN": ""],
                    input: input.map { Data($0.utf8) })
            }
            let refused = try await run(["login", gateway.baseURL], input: "bgt_not_a_token\n")
            #expect(refused.status == 2 && refused.output.contains("unauthorized"), "\(refused.output)")
            let login = try await run(["login", gateway.baseURL], input: gateway.token + "\n")
            #expect(login.status == 0, "\(login.output)")
            let file = "\(home)/.config/buildgate/credentials"
            let mode = try FileManager.default.attributesOfItem(atPath: file)[.posixPermissions] as? Int
            #expect(mode == 0o600)

            let built = try await gateway.waitUntilFinished(
                try await gateway.submit(
                    services.context("RUN echo from-logs"), query: "image=\(services.uniqueImage("cli"))"
                ).id)
            let builds = try await run(["builds", "--limit", "5"])
            #expect(builds.status == 0 && builds.output.contains(built.id), "\(builds.output)")
            let status = try await run(["status", built.id, "--json"])
            #expect(try JSONDecoder().decode(BuildJSON.self, from: Data(status.output.utf8)).status == "succeeded")
            let logs = try await run(["logs", built.id])
            #expect(logs.output.contains("from-logs") && logs.output.contains("[buildgate] result: succeeded"))

            let rerun = try await run(["rerun", built.id])
            #expect(rerun.status == 0, "\(rerun.output)")
            let again = rerun.output.trimmingCharacters(in: .whitespacesAndNewlines)
            let cancel = try await run(["cancel", again])
            #expect(cancel.status == 0, "\(cancel.output)")
            #expect(["cancelled", "succeeded"].contains(try await gateway.waitUntilFinished(again).status))
            let followed = try await run(["logs", "-f", again])
            #expect(followed.output.contains("(rerun of \(built.id))"), "\(followed.output)")
            let missing = try await run(["status", "b00000000000000000000000000"])
            #expect(missing.status == 2 && missing.output.contains("notFound"), "\(missing.output)")
        }
    }

    /// Ctrl-C (SIGINT to the process) while the build runs cancels it on the gateway.
    @Test func interruptingSubmitCancelsTheBuildOnTheGateway() async throws {
        let services = try RealServices()
        let binary = try #require(RealEngines.gatewayBinary, "BUILDGATE_TEST_BINARY is not set: run scripts/test")
        try await services.withGateway { gateway, scratch in
            let directory = try project(services, dockerfile: "RUN echo holding-on && sleep 8 && echo too-late\n")
            defer { directory.remove() }
            let log = "\(scratch.path)/submit.log"
            let process = try ChildProcess.start(
                [binary, "submit", directory.path, "-t", services.uniqueImage("interrupt")],
                environment: ["BUILDGATE_URL": gateway.baseURL, "BUILDGATE_TOKEN": gateway.token], logFile: log)
            let running = try await ChildProcess.wait(for: .seconds(60)) {
                ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("holding-on")
            }
            #expect(running, "the build never ran: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
            kill(process.processIdentifier, SIGINT)
            _ = try await ChildProcess.wait(for: .seconds(60)) { !process.isRunning }
            #expect(process.terminationStatus == 130)
            let id = try #require(try await gateway.builds().first?.id)
            let build = try await gateway.waitUntilFinished(id)
            #expect(build.status == "cancelled")
            #expect(try await gateway.log(id).contains("cancellation requested"))
        }
    }
}

extension RealServices {
    /// The paths in every layer of the image `reference` in the test registry.
    func layerFiles(of reference: String) async throws -> [String] {
        let withoutRegistry = reference.dropFirst(registry.count + 1)
        let colon = try #require(withoutRegistry.lastIndex(of: ":"))
        let repository = withoutRegistry[..<colon]
        var request = HTTPClientRequest(
            url:
                "http://\(registry)/v2/\(repository)/manifests/\(withoutRegistry[withoutRegistry.index(after: colon)...])"
        )
        request.headers.add(
            name: "Accept",
            value: "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        struct Manifest: Decodable { struct Layer: Decodable { var digest: String }; var layers: [Layer] }
        let manifest = try JSONDecoder().decode(
            Manifest.self, from: Data(try await response.body.collect(upTo: 1 << 20).readableBytesView))
        let directory = try TemporaryDirectory("layers")
        defer { directory.remove() }
        var files: [String] = []
        for layer in manifest.layers {
            let blob = try await HTTPClient.shared.execute(
                HTTPClientRequest(url: "http://\(registry)/v2/\(repository)/blobs/\(layer.digest)"),
                timeout: .seconds(30))
            let path = "\(directory.path)/layer"
            try Data(try await blob.body.collect(upTo: 256 << 20).readableBytesView).write(
                to: URL(fileURLWithPath: path))
            let listed = try await ChildProcess.run(["tar", "-tzf", path])
            files += listed.output.split(separator: "\n").map { String($0.drop { $0 == "." || $0 == "/" }) }
        }
        return files
    }
}
