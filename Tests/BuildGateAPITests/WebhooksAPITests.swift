import AsyncHTTPClient
import BuildGateAPI
import BuildGateCore
import BuildGateTesting
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

/// Webhook intake over the router with the real fixture deliveries (`Tests/ForgeWebhooksTests/Fixtures`).
struct WebhooksAPITests {
    static let fixtures = "\(repositoryRoot)/Tests/ForgeWebhooksTests/Fixtures"

    /// Headers and body of a fixture, as the forge sent them.
    static func fixture(_ name: String) throws -> (HTTPFields, ByteBuffer) {
        let body = try Data(contentsOf: URL(fileURLWithPath: "\(fixtures)/\(name).json"))
        let text = try String(contentsOfFile: "\(fixtures)/\(name).headers.txt", encoding: .utf8)
        var headers = HTTPFields()
        for line in text.split(separator: "\n") where !line.hasPrefix("#") && !line.hasPrefix("POST ") {
            guard let colon = line.firstIndex(of: ":"), let name = HTTPField.Name(String(line[..<colon])) else {
                continue
            }
            if name == .contentLength { continue }
            headers.append(
                HTTPField(name: name, value: line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        return (headers, ByteBuffer(bytes: body))
    }

    struct Answer: Decodable { var status: String; var reason: String?; var buildId: String?; var trigger: String }
    struct TriggerJSON: Decodable { var id: String; var webhookPath: String; var events: [String] }

    private func createTrigger(
        _ client: some TestClientProtocol, harness: APIHarness, json: String, headers: HTTPFields? = nil
    ) async throws -> TestResponse {
        try await client.execute(
            uri: "/v1/triggers", method: .post, headers: (headers ?? harness.auth) + [.contentType: "application/json"],
            body: ByteBuffer(string: json))
    }

    @Test func aSignedGitHubPushQueuesOneBuildOfThatCommitAndARedeliveryNoSecond() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        try await harness.application().test(.router) { client in
            let created = try await createTrigger(
                client, harness: harness,
                json: """
                    {"forge":"github","repository":"Codertocat/Hello-World","secret":"It's a Secret to Everybody",
                     "images":["r.example.com/hello:{{branch}}-{{shortSha}}"],"buildArgs":{"MODE":"ci"}}
                    """)
            #expect(created.status == .created)
            #expect(!created.text.contains("Secret to Everybody"))
            let trigger = try created.decode(TriggerJSON.self)
            #expect(trigger.events == ["push", "tag"])

            let (headers, body) = try Self.fixture("github/push-branch-created")
            let first = try await client.execute(
                uri: "/v1/webhooks/github", method: .post, headers: headers, body: body)
            #expect(first.status == .accepted)
            let answer = try first.decode(Answer.self)
            #expect(answer.status == "queued")
            let id = try #require(answer.buildId.flatMap(BuildID.init))
            let build = try #require(try await harness.store.build(id))
            #expect(
                build.gitSource
                    == (try GitSource(
                        url: "https://github.com/Codertocat/Hello-World.git", ref: "refs/heads/master",
                        commit: "6113728f27ae82c7b1a177c8d03f9e96e0adf246")))
            #expect(build.request.images.map(\.description) == ["r.example.com/hello:master-6113728"])
            #expect(build.request.buildArgs == ["MODE": "ci"])
            #expect(build.triggerID == trigger.id)
            #expect(build.context == nil)

            let again = try await client.execute(uri: trigger.webhookPath, method: .post, headers: headers, body: body)
            #expect(again.status == .accepted)
            #expect(try again.decode(Answer.self).buildId == answer.buildId)
            #expect(again.headers[HTTPField.Name("X-BuildGate-Redelivery")!] == "true")
            #expect(try await harness.buildCount() == 1)

            // The trigger shows its latest delivery (once: the redelivery was the same one) and what it led to.
            let shown = try await client.execute(uri: "/v1/triggers/\(trigger.id)", method: .get, headers: harness.auth)
            struct Shown: Decodable {
                struct Delivery: Decodable { var statusCode: Int; var outcome: String?; var buildId: String? }
                var lastDeliveries: [Delivery]
            }
            let deliveries = try shown.decode(Shown.self).lastDeliveries
            #expect(deliveries.count == 1)
            #expect(deliveries.first?.statusCode == 202 && deliveries.first?.outcome == "queued")
            #expect(deliveries.first?.buildId == answer.buildId)
        }
    }

    @Test func aTriggersBuildSecretsAndCacheAreCheckedAtCreationAndCarriedIntoItsBuilds() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        try await harness.application().test(.router) { client in
            let json = """
                {"forge":"github","repository":"Codertocat/Hello-World","secret":"It's a Secret to Everybody",
                 "images":["r.example.com/hello:{{shortSha}}"],"buildSecrets":["npmrc"],
                 "cacheFrom":"r.example.com/hello-cache","cacheTo":"r.example.com/hello-cache"}
                """
            let refused = try await createTrigger(client, harness: harness, json: json)
            #expect(refused.status == .unprocessableContent)
            #expect(try refused.decode(ErrorEnvelope.self).error.code == "noSuchSecret")

            try await harness.secrets.setSecret(
                SecretValue(Array("token".utf8)), tenant: .default, name: "npmrc", at: Date())
            let created = try await createTrigger(client, harness: harness, json: json)
            #expect(created.status == .created)
            #expect(created.text.contains(#""buildSecrets":["npmrc"]"#))

            let (headers, body) = try Self.fixture("github/push-branch-created")
            let answer = try await client.execute(
                uri: "/v1/webhooks/github", method: .post, headers: headers, body: body
            ).decode(Answer.self)
            let id = try #require(answer.buildId.flatMap(BuildID.init))
            let build = try #require(try await harness.store.build(id))
            #expect(build.request.secrets == ["npmrc"])
            #expect(build.request.cacheFrom.map(\.description) == ["r.example.com/hello-cache:latest"])
            #expect(build.request.cacheTo?.description == "r.example.com/hello-cache:latest")
        }
    }

    @Test func badMissingOrForeignSignaturesAre401AndBuildNothing() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        try await harness.application().test(.router) { client in
            _ = try await createTrigger(
                client, harness: harness,
                json: """
                    {"forge":"github","repository":"Codertocat/Hello-World","secret":"a different secret!","images":["r.example.com/a:1"]}
                    """)
            let (headers, body) = try Self.fixture("github/push-branch-created")
            let wrongSecret = try await client.execute(
                uri: "/v1/webhooks/github", method: .post, headers: headers, body: body)
            #expect(wrongSecret.status == .unauthorized)
            #expect(
                try wrongSecret.decode(ErrorEnvelope.self).error.message
                    == "the delivery is not signed by a known trigger")
            var unsigned = headers
            unsigned[HTTPField.Name("X-Hub-Signature-256")!] = nil
            #expect(
                try await client.execute(uri: "/v1/webhooks/github", method: .post, headers: unsigned, body: body)
                    .status == .unauthorized)
            // A GitHub signature does not open the GitLab door.
            #expect(
                try await client.execute(uri: "/v1/webhooks/gitlab", method: .post, headers: headers, body: body).status
                    == .unauthorized)
            #expect(
                try await client.execute(uri: "/v1/webhooks/svn", method: .post, headers: headers, body: body).status
                    == .notFound)
        }
        #expect(try await harness.buildCount() == 0)
    }

    @Test func pingsFilteredBranchesAndOtherForgesAreAnsweredWithAReason() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        try await harness.application().test(.router) { client in
            _ = try await createTrigger(
                client, harness: harness,
                json: """
                    {"forge":"github","repository":"Codertocat/Hello-World","secret":"It's a Secret to Everybody",
                     "images":["r.example.com/a:{{sha}}"],"branches":["main"]}
                    """)
            let (pingHeaders, pingBody) = try Self.fixture("github/ping")
            let ping = try await client.execute(
                uri: "/v1/webhooks/github", method: .post, headers: pingHeaders, body: pingBody)
            #expect(ping.status == .ok)
            #expect(try ping.decode(Answer.self).reason == "ping")

            // The fixtures share the docs' example delivery id; a real second delivery has its own.
            var (headers, body) = try Self.fixture("github/push-branch-created")
            headers[HTTPField.Name("X-GitHub-Delivery")!] = UUID().uuidString
            let filtered = try await client.execute(
                uri: "/v1/webhooks/github", method: .post, headers: headers, body: body)
            #expect(filtered.status == .ok)
            let filteredReason = try filtered.decode(Answer.self).reason
            #expect(filteredReason == "branch master does not match main")

            _ = try await createTrigger(
                client, harness: harness,
                json: """
                    {"forge":"gitlab","repository":"mike/diaspora","secret":"my-secret-token","images":["r.example.com/d:{{shortSha}}"],
                     "cloneURL":"https://gitlab.example.com/mike/diaspora.git"}
                    """)
            let (gitlabHeaders, gitlabBody) = try Self.fixture("gitlab/push-hook")
            let gitlab = try await client.execute(
                uri: "/v1/webhooks/gitlab", method: .post, headers: gitlabHeaders, body: gitlabBody)
            #expect(gitlab.status == .accepted)

            _ = try await createTrigger(
                client, harness: harness,
                json: """
                    {"forge":"gitea","repository":"example/example","secret":"IsWishesWereHorsesWedAllBeEatingSteak!","images":["r.example.com/e:{{branch}}"]}
                    """)
            let (giteaHeaders, giteaBody) = try Self.fixture("gitea/push")
            let gitea = try await client.execute(
                uri: "/v1/webhooks/gitea", method: .post, headers: giteaHeaders, body: giteaBody)
            // That payload's clone URL is plain http://, which the gateway never fetches.
            #expect(gitea.status == .ok)
            #expect(try gitea.decode(Answer.self).reason?.contains("must be https://, ssh:// or git://") == true)
        }
        #expect(try await harness.buildCount() == 1)
    }

    @Test func aMalformedSignedPayloadIs400() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        try await harness.application().test(.router) { client in
            _ = try await createTrigger(
                client, harness: harness,
                json: """
                    {"forge":"gitlab","repository":"a/b","secret":"my-secret-token","images":["r.example.com/a:1"]}
                    """)
            let malformed = try await client.execute(
                uri: "/v1/webhooks/gitlab", method: .post,
                headers: [
                    HTTPField.Name("X-Gitlab-Token")!: "my-secret-token",
                    HTTPField.Name("X-Gitlab-Event")!: "Push Hook",
                ],
                body: ByteBuffer(string: "{\"ref\": 42}"))
            #expect(malformed.status == .badRequest)
        }
    }

    @Test func triggersAreTenantsOwnAndNeedTheirScope() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        let builder = try await harness.auth(tenant: "default", scopes: [.buildsWrite, .buildsRead])
        let other = try await harness.auth(tenant: "acme", scopes: [.triggersAdmin])
        try await harness.application().test(.router) { client in
            let json =
                #"{"forge":"github","repository":"o/r","secret":"0123456789abcdef","images":["r.example.com/a:{{branch}}"]}"#
            #expect(
                try await createTrigger(client, harness: harness, json: json, headers: builder).status == .forbidden)
            let trigger = try await createTrigger(client, harness: harness, json: json).decode(TriggerJSON.self)
            #expect(
                try await client.execute(uri: "/v1/triggers/\(trigger.id)", method: .get, headers: other).status
                    == .notFound)
            #expect(
                try await client.execute(uri: "/v1/triggers/\(trigger.id)", method: .delete, headers: other).status
                    == .notFound)
            #expect(
                try await client.execute(uri: "/v1/triggers/\(trigger.id)", method: .get, headers: harness.auth).status
                    == .ok)
            let bad = try await createTrigger(
                client, harness: harness,
                json: #"{"forge":"github","repository":"o/r","secret":"0123456789abcdef","images":["App:{{branch}}"]}"#)
            #expect(bad.status == .badRequest)
            #expect(
                try await client.execute(uri: "/v1/triggers/\(trigger.id)", method: .delete, headers: harness.auth)
                    .status == .noContent)
            #expect(
                try await client.execute(uri: "/v1/triggers/\(trigger.id)", method: .get, headers: harness.auth).status
                    == .notFound)
        }
    }

    @Test func aGitBuildRequestIsQueuedWithoutAContextAndBadSourcesAre400() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        try await harness.application().test(.router) { client in
            let json: HTTPFields = harness.auth + [.contentType: "application/json"]
            let commit = String(repeating: "c", count: 40)
            let created = try await client.execute(
                uri: "/v1/builds", method: .post, headers: json,
                body: ByteBuffer(
                    string:
                        #"{"source":{"git":{"url":"https://git.example.com/o/r.git","ref":"refs/heads/main","commit":"\#(commit)"}},"images":["r.example.com/a:1"],"labels":{"x":"y"}}"#
                ))
            #expect(created.status == .accepted)
            struct WithSource: Decodable {
                struct Source: Decodable {
                    struct Git: Decodable { var url: String; var commit: String? }; var git: Git
                }
                var source: Source
                var context: BuildJSON.Context?
            }
            let build = try created.decode(WithSource.self)
            #expect(build.source.git.commit == commit)
            #expect(build.context == nil)
            for body in [
                #"{"source":{"git":{"url":"https://user:secret@git.example.com/o/r.git","ref":"main"}},"images":["r.example.com/a:1"]}"#,
                #"{"source":{"git":{"url":"file:///etc","ref":"main"}},"images":["r.example.com/a:1"]}"#,
                #"{"source":{"git":{"url":"https://git.example.com/o/r.git"}},"images":["r.example.com/a:1"]}"#,
                #"{"images":["r.example.com/a:1"]}"#,
            ] {
                let refused = try await client.execute(
                    uri: "/v1/builds", method: .post, headers: json, body: ByteBuffer(string: body))
                #expect(refused.status == .badRequest, "\(body)")
                #expect(!refused.text.contains("secret@"))
            }
        }
        #expect(try await harness.buildCount() == 1)
    }

    /// Webhook bodies are capped at 25 MiB (26,214,400 bytes) before anything is hashed: declared over it, refused
    /// before the body is read; streamed over it without a length, refused when it crosses; at it, read and judged
    /// on its signature (here none: 401).
    @Test func aWebhookBodyOver25MiBIsRefusedBeforeItIsVerified() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        let limit = BuildGateAPILimits().maxWebhookBody
        #expect(limit == 26_214_400)
        @Sendable func deliver(_ size: Int, declared: Bool, port: Int) async throws -> (Int, String) {
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/v1/webhooks/github")
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.headers.add(name: "X-GitHub-Event", value: "push")
            let piece = ByteBuffer(repeating: UInt8(ascii: " "), count: 1 << 20)
            request.body = .stream(
                AsyncStream { continuation in
                    var left = size
                    while left > 0 {
                        continuation.yield(piece.getSlice(at: 0, length: min(left, piece.readableBytes))!)
                        left -= piece.readableBytes
                    }
                    continuation.finish()
                }, length: declared ? .known(Int64(size)) : .unknown)
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
            let body = try await response.body.collect(upTo: 1 << 20)
            return (Int(response.status.code), String(buffer: body))
        }
        try await harness.application().test(.live) { client in
            let port = try #require(client.port)
            let over = try await deliver(limit + 1, declared: true, port: port)
            #expect(over.0 == 413 && over.1.contains("contextTooLarge"), "\(over)")
            let streamed = try await deliver(limit + 1, declared: false, port: port)
            #expect(streamed.0 == 413, "\(streamed)")
            let atTheLimit = try await deliver(limit, declared: true, port: port)
            #expect(atTheLimit.0 == 401, "\(atTheLimit)")
        }
        #expect(try await harness.buildCount() == 0)
    }
}
