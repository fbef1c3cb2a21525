import AsyncHTTPClient
import BuildGateApp
import BuildGateCore
import BuildGateTesting
import Crypto
import Foundation
import Logging
import Testing

/// Builds from real git: a bare repository served by `git daemon` on loopback, a real Podman and a real registry.
@Suite(.enabled(if: RealEngines.shouldRun, RealEngines.skipReason), .serialized, .timeLimit(.minutes(5)))
struct GitEndToEndTests {
    @Test func aJSONGitBuildAndASignedWebhookEachBuildTheirExactCommitAndAReplayBuildsNothing() async throws {
        let services = try RealServices()
        let git = try GitServer()
        defer { git.stop() }
        let work = try git.makeRepository("app")
        let marker = "marker-\(UUID().uuidString)"
        let first = try git.commit(
            work,
            files: [
                "Dockerfile": services.dockerfileHeader + "RUN echo \(marker)-one\nCOPY app.txt /app.txt\n",
                "app.txt": "one\n",
            ], message: "first")
        try await git.waitUntilServing("app")

        try await services.withGateway(allowedGitHosts: ["127.0.0.1"]) { gateway, directory in
            // 1. POST /v1/builds with a git source: exactly that commit, labelled with it.
            let image = services.uniqueImage("git")
            let (created, createdBody) = try await gateway.postJSON(
                "/v1/builds",
                """
                {"source":{"git":{"url":"\(git.url("app"))","ref":"refs/heads/main","commit":"\(first)"}},"images":["\(image)"]}
                """)
            #expect(created.status.code == 202, "\(String(decoding: createdBody, as: UTF8.self))")
            let queued = try JSONDecoder().decode(BuildJSON.self, from: Data(createdBody))
            let built = try await gateway.waitUntilFinished(queued.id)
            let log = try await gateway.log(queued.id)
            #expect(built.status == "succeeded", "\(built.message ?? "") \(log)")
            #expect(log.contains("fetched commit \(first)"))
            #expect(log.contains("\(marker)-one"))
            let manifest = try await services.manifest(of: image)
            #expect(manifest.labels["org.opencontainers.image.revision"] == first)
            #expect(manifest.digest == built.images.first?.digest)

            // 2. A trigger and a signed GitHub-style push of a second commit.
            let second = try git.commit(
                work,
                files: [
                    "Dockerfile": services.dockerfileHeader + "RUN echo \(marker)-two\nCOPY app.txt /app.txt\n",
                    "app.txt": "two\n",
                ], message: "second")
            let secret = "a-webhook-secret-\(UUID().uuidString)"
            let repository = "e2e/app-\(UUID().uuidString.prefix(6).lowercased())"
            let (trigger, triggerBody) = try await gateway.postJSON(
                "/v1/triggers",
                """
                {"forge":"github","repository":"\(repository)","secret":"\(secret)","cloneURL":"\(git.url("app"))",
                 "images":["\(services.registry)/e2e-hook:{{branch}}-{{shortSha}}"],"branches":["main"]}
                """)
            #expect(trigger.status.code == 201, "\(String(decoding: triggerBody, as: UTF8.self))")
            #expect(!String(decoding: triggerBody, as: UTF8.self).contains(secret))

            let push = SignedGitHubPush(
                repository: repository, commit: second, before: first, message: "second", secret: secret)
            let (payload, hookHeaders) = (push.body, push.headers)
            let anonymous = GatewayClient(baseURL: gateway.baseURL, token: "")
            let (hook, hookBody) = try await anonymous.post("/v1/webhooks/github", body: payload, headers: hookHeaders)
            #expect(hook.status.code == 202, "\(String(decoding: hookBody, as: UTF8.self))")
            struct Answer: Decodable { var status: String; var buildId: String? }
            let answer = try JSONDecoder().decode(Answer.self, from: Data(hookBody))
            let hookBuildID = try #require(answer.buildId)
            let hookBuild = try await gateway.waitUntilFinished(hookBuildID)
            let hookLog = try await gateway.log(hookBuildID)
            #expect(hookBuild.status == "succeeded", "\(hookLog)")
            let hookImage = "\(services.registry)/e2e-hook:main-\(second.prefix(7))"
            #expect(hookBuild.images.map(\.reference) == [hookImage])
            #expect(try await services.manifest(of: hookImage).labels["org.opencontainers.image.revision"] == second)
            #expect(hookLog.contains("\(marker)-two"))

            // 3. The forge redelivers: same answer, no second build.
            let (replay, replayBody) = try await anonymous.post(
                "/v1/webhooks/github", body: payload, headers: hookHeaders)
            #expect(replay.status.code == 202)
            #expect(try JSONDecoder().decode(Answer.self, from: Data(replayBody)).buildId == hookBuildID)
            let (_, listBody) = try await gateway.get("/v1/builds?limit=50")
            #expect(try JSONDecoder().decode(PageJSON.self, from: Data(listBody)).builds.count == 2)

            // 4. A bad signature builds nothing.
            var forged = hookHeaders
            forged[3] = ("X-Hub-Signature-256", "sha256=" + String(repeating: "0", count: 64))
            forged[2] = ("X-GitHub-Delivery", UUID().uuidString)
            #expect(
                try await anonymous.post("/v1/webhooks/github", body: payload, headers: forged).0.status.code == 401)

            // 5. Another tenant cannot see these builds; a token without the scope is refused.
            var configuration = try BuildGateConfiguration.resolve([], environment: [:])
            configuration.dataDirectory = directory.path
            configuration.migrationsDirectory = migrationsDirectory
            let tokens = try await openAccessTokens(configuration, logger: Logger(label: "test"))
            let stranger = GatewayClient(
                baseURL: gateway.baseURL,
                token: try await tokens.createToken(
                    tenant: TenantID("other")!, name: "e2e", scopes: [.admin], buildID: nil, expiresAt: nil, at: Date()
                ).token)
            #expect(try await stranger.get("/v1/builds/\(hookBuildID)").0.status.code == 404)
            #expect(try await stranger.get("/v1/builds/\(hookBuildID)/logs").0.status.code == 404)
            let reader = GatewayClient(
                baseURL: gateway.baseURL,
                token: try await tokens.createToken(
                    tenant: .default, name: "e2e", scopes: [.buildsRead], buildID: nil, expiresAt: nil, at: Date()
                ).token)
            #expect(try await reader.postJSON("/v1/triggers", "{}").0.status.code == 403)
            // Every git command's output files were closed, not just deleted (a leak would pile up descriptors).
            let open = (try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")).compactMap {
                try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\($0)")
            }
            #expect(!open.contains { $0.contains("git-output-") }, "\(open.filter { $0.contains("git-output-") })")
        }
    }

    @Test func aCommitThatIsNotInTheRepositoryFailsAsSourceFailedWithoutLeakingCredentials() async throws {
        let services = try RealServices()
        let git = try GitServer()
        defer { git.stop() }
        let work = try git.makeRepository("missing")
        _ = try git.commit(work, files: ["Dockerfile": services.dockerfileHeader], message: "only")
        try await git.waitUntilServing("missing")
        try await services.withGateway(allowedGitHosts: ["127.0.0.1"]) { gateway, _ in
            let absent = String(repeating: "d", count: 40)
            let (_, body) = try await gateway.postJSON(
                "/v1/builds",
                """
                {"source":{"git":{"url":"\(git.url("missing"))","commit":"\(absent)"}},"images":["\(services.uniqueImage("absent"))"]}
                """)
            let queued = try JSONDecoder().decode(BuildJSON.self, from: Data(body))
            let build = try await gateway.waitUntilFinished(queued.id)
            #expect(build.status == "failed")
            #expect(build.reason == "sourceFailed")
            #expect(try await gateway.log(queued.id).contains("ERROR: fetching the source failed"))

            let (refused, refusedBody) = try await gateway.postJSON(
                "/v1/builds",
                """
                {"source":{"git":{"url":"git://10.0.0.1/x.git","ref":"main"}},"images":["\(services.uniqueImage("x"))"]}
                """)
            #expect(refused.status.code == 400)
            #expect(String(decoding: refusedBody, as: UTF8.self).contains("not allowed"))
        }
    }
}
