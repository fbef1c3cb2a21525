import BuildGateAPI
import BuildGateCore
import BuildGateTesting
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

/// Requests as an attacker would send them, one test per class of attack found so far. Every refusal is a 4xx with
/// the JSON error, and nothing is kept. The framing and timeout classes run against the live server
/// (`HostileConnectionTests`), since the in-process router never sees raw bytes.
struct HostileInputTests {
    private func refusal(_ response: TestResponse) throws -> ErrorEnvelope.Detail {
        try response.decode(ErrorEnvelope.self).error
    }

    // MARK: - What one build may ask for

    /// 2,800 build arguments in a 41 KB query were accepted; dispatching the build then stopped the whole gateway,
    /// again after every restart.
    @Test(arguments: [
        ("buildArg", 2800, "the query string is 46515 bytes, over the limit of 32768"),
        ("buildArg", 101, "at most 100 'buildArg'"),
        ("label", 3000, "over the limit of 32768"),
        ("label", 101, "at most 100 'label'"),
        ("image", 17, "at most 16 'image'"),
        ("secret", 33, "at most 32 'secret'"),
    ])
    func aBuildAskingForTooManyOfSomethingIsRefusedNamingTheLimit(name: String, count: Int, expected: String)
        async throws
    {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        let values = (0..<count).map {
            name == "image" ? "r.example.com/app\($0):1" : name == "secret" ? "s\($0)" : "K\($0)=v"
        }
        let query = (["image=r.example.com/app:1"].filter { _ in name != "image" } + values.map { "\(name)=\($0)" })
            .joined(separator: "&")
        try await harness.application().test(.router) { client in
            let response = try await client.execute(
                uri: "/v1/builds?\(query)", method: .post, headers: harness.auth,
                body: ByteBuffer(bytes: sampleContext()))
            #expect(response.status == .badRequest)
            let error = try refusal(response)
            #expect(error.code == "invalidParameter")
            #expect(error.message.contains(expected), "\(error.message)")
        }
        #expect(try await harness.buildCount() == 0)
        #expect(harness.contextFiles.isEmpty)
    }

    @Test func buildArgumentsAndLabelsAreBoundedInTotalSizeAndTheQueryInBytes() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        let big = String(repeating: "x", count: 3000)
        try await harness.application().test(.router) { client in
            let args = (0..<3).map { "buildArg=K\($0)=\(big)" }.joined(separator: "&")
            let tooBig = try await client.execute(
                uri: "/v1/builds?image=r.example.com/a:1&\(args)", method: .post, headers: harness.auth,
                body: ByteBuffer(bytes: sampleContext()))
            #expect(tooBig.status == .badRequest)
            #expect(try refusal(tooBig).message.contains("8192 bytes together"))

            let longQuery = try await client.execute(
                uri: "/v1/builds?image=r.example.com/a:1&runKey=\(String(repeating: "k", count: 40_000))",
                method: .post,
                headers: harness.auth, body: ByteBuffer(bytes: sampleContext()))
            #expect(longQuery.status == .badRequest)
            #expect(try refusal(longQuery).message.contains("query string"))

            let longValue = try await client.execute(
                uri: "/v1/builds?image=r.example.com/a:1&target=\(String(repeating: "t", count: 2000))", method: .post,
                headers: harness.auth, body: ByteBuffer(bytes: sampleContext()))
            #expect(longValue.status == .badRequest)
            #expect(try refusal(longValue).message.contains("longer than 1024 bytes"))
        }
        #expect(try await harness.buildCount() == 0)
    }

    @Test func theGitBuildBodyHasTheSameLimits() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        let args = (0..<150).map { "\"K\($0)\":\"v\"" }.joined(separator: ",")
        let body =
            #"{"source":{"git":{"url":"https://git.example.com/a.git","ref":"main"}},"images":["r.example.com/a:1"],"buildArgs":{"#
            + args + "}}"
        try await harness.application().test(.router) { client in
            let response = try await client.execute(
                uri: "/v1/builds", method: .post, headers: harness.auth(adding: [.contentType: "application/json"]),
                body: ByteBuffer(string: body))
            #expect(response.status == .badRequest)
            #expect(try refusal(response).message.contains("at most 100 'buildArg'"))
        }
        #expect(try await harness.buildCount() == 0)
    }

    // MARK: - Tokens reach no further than they were given

    /// A 60 s log-read token minted a day-long one, which kept reading after the first expired.
    @Test func aLogReadTokenCannotMintTokens() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        try await harness.application().test(.router) { client in
            let created = try await client.execute(
                uri: "/v1/builds?image=r.example.com/a:1", method: .post, headers: harness.auth,
                body: ByteBuffer(bytes: sampleContext()))
            let id = try created.decode(BuildJSON.self).id
            let minted = try await client.execute(
                uri: "/v1/builds/\(id)/log-tokens?ttl=60", method: .post, headers: harness.auth)
            #expect(minted.status == .created)
            struct Minted: Decodable { var token: String }
            let logToken = try minted.decode(Minted.self).token

            let again = try await client.execute(
                uri: "/v1/builds/\(id)/log-tokens?ttl=86400", method: .post,
                headers: [.authorization: "Bearer \(logToken)"])
            #expect(again.status == .forbidden)
            #expect(try refusal(again).code == "forbidden")
        }
    }

    @Test func aLogReadTokenNeverOutlivesTheTokenThatMintedIt() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        let now = Date()
        let (shortLived, shortRecord) = try await harness.tokens.createToken(
            tenant: .default, name: "ci", scopes: [.buildsRead, .buildsWrite], buildID: nil,
            expiresAt: now.addingTimeInterval(300), at: now)
        let minter: HTTPFields = [.authorization: "Bearer \(shortLived)"]
        try await harness.application().test(.router) { client in
            let created = try await client.execute(
                uri: "/v1/builds?image=r.example.com/a:1", method: .post, headers: minter,
                body: ByteBuffer(bytes: sampleContext()))
            let id = try created.decode(BuildJSON.self).id
            let minted = try await client.execute(
                uri: "/v1/builds/\(id)/log-tokens?ttl=86400", method: .post, headers: minter)
            #expect(minted.status == .created)
            struct Minted: Decodable { var token: String; var expiresAt: Date }
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .iso8601
            let logToken = try decoder.decode(Minted.self, from: Data(minted.body.readableBytesView))
            #expect(logToken.expiresAt <= now.addingTimeInterval(301), "asked for a day, its minter has 5 minutes")
            let reader: HTTPFields = [.authorization: "Bearer \(logToken.token)"]
            #expect(try await client.execute(uri: "/v1/builds/\(id)/logs", method: .get, headers: reader).status == .ok)

            // Revoking the minter ends the log link too.
            #expect(try await harness.tokens.revokeToken(id: shortRecord.id, at: Date()))
            #expect(
                try await client.execute(uri: "/v1/builds/\(id)/logs", method: .get, headers: reader).status
                    == .unauthorized)
        }
    }

    // MARK: - Webhooks

    private func createTrigger(_ client: some TestClientProtocol, harness: APIHarness, json: String) async throws
        -> String
    {
        let created = try await client.execute(
            uri: "/v1/triggers", method: .post, headers: harness.auth(adding: [.contentType: "application/json"]),
            body: ByteBuffer(string: json))
        #expect(created.status == .created, "\(created.text)")
        return try created.decode(WebhooksAPITests.TriggerJSON.self).id
    }

    /// With two triggers of one repository on the shared URL, only the first was tried: it ignored the push, and the
    /// second, which wanted it, never saw it.
    @Test func everyTriggerTheDeliveryIsSignedForIsTried() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        try await harness.application().test(.router) { client in
            let releases = try await createTrigger(
                client, harness: harness,
                json: """
                    {"forge":"github","repository":"Codertocat/Hello-World","secret":"It's a Secret to Everybody",
                     "images":["r.example.com/release:{{shortSha}}"],"branches":["release/*"]}
                    """)
            let everything = try await createTrigger(
                client, harness: harness,
                json: """
                    {"forge":"github","repository":"Codertocat/Hello-World","secret":"It's a Secret to Everybody",
                     "images":["r.example.com/hello:{{shortSha}}"]}
                    """)
            let (headers, body) = try WebhooksAPITests.fixture("github/push-branch-created")
            let response = try await client.execute(
                uri: "/v1/webhooks/github", method: .post, headers: headers, body: body)
            #expect(response.status == .accepted, "\(response.text)")
            struct Combined: Decodable {
                var status: String; var trigger: String; var results: [WebhooksAPITests.Answer]
            }
            let answer = try response.decode(Combined.self)
            #expect(answer.status == "queued")
            #expect(answer.trigger == everything)
            #expect(Set(answer.results.map(\.trigger)) == [releases, everything])
            #expect(answer.results.first { $0.trigger == releases }?.status == "ignored")
        }
        #expect(try await harness.buildCount() == 1)
    }

    /// The signature covers only the body: a captured push replayed with a new X-GitHub-Delivery built again.
    @Test func aReplayedPushUnderANewDeliveryIDIsAnsweredWithTheBuildAlreadyQueued() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        try await harness.application().test(.router) { client in
            _ = try await createTrigger(
                client, harness: harness,
                json: """
                    {"forge":"github","repository":"Codertocat/Hello-World","secret":"It's a Secret to Everybody",
                     "images":["r.example.com/hello:{{shortSha}}"]}
                    """)
            let (headers, body) = try WebhooksAPITests.fixture("github/push-branch-created")
            let first = try await client.execute(
                uri: "/v1/webhooks/github", method: .post, headers: headers, body: body)
            #expect(first.status == .accepted)
            let queued = try first.decode(WebhooksAPITests.Answer.self)

            var replayed = headers
            replayed[HTTPField.Name("X-GitHub-Delivery")!] = UUID().uuidString
            let replay = try await client.execute(
                uri: "/v1/webhooks/github", method: .post, headers: replayed, body: body)
            #expect(replay.status == .ok, "\(replay.text)")
            let answer = try replay.decode(WebhooksAPITests.Answer.self)
            #expect(answer.status == "alreadyQueued")
            #expect(answer.buildId == queued.buildId)
            #expect(replay.headers[HTTPField.Name("X-BuildGate-Redelivery")!] == nil)
        }
        #expect(try await harness.buildCount() == 1)
    }
}
