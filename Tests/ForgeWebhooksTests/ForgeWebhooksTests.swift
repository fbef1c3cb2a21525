import Crypto
import Foundation
import Testing

@testable import ForgeWebhooks

/// Parsing and verification against real deliveries from `shared/fixtures/webhooks` (copied unchanged).
struct ForgeWebhooksTests {
    static let githubSecret = "It's a Secret to Everybody"
    static let giteaSecret = "IsWishesWereHorsesWedAllBeEatingSteak!"

    /// A fixture delivery: the `.json` body and the header lines of its `.headers.txt` (comments and the request line
    /// skipped).
    static func delivery(_ name: String, headers file: String? = nil) throws -> WebhookDelivery {
        let base = try #require(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        let body = try Data(contentsOf: base.appendingPathComponent("\(name).json"))
        let text = try String(contentsOf: base.appendingPathComponent("\(file ?? name).headers.txt"), encoding: .utf8)
        let headers = text.split(separator: "\n").compactMap { line -> (name: String, value: String)? in
            guard !line.hasPrefix("#"), !line.hasPrefix("POST "), let colon = line.firstIndex(of: ":") else {
                return nil
            }
            return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        return WebhookDelivery(headers: headers, body: Array(body))
    }

    @Test func githubsPublishedSignatureVectorVerifies() throws {
        let vector = WebhookDelivery(
            headers: [
                ("X-Hub-Signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
            ],
            body: Array("Hello, World!".utf8))
        try WebhookSignature.verify(vector, forge: .github, secret: Self.githubSecret)
        #expect(throws: WebhookError.unauthorized) {
            try WebhookSignature.verify(vector, forge: .github, secret: "It's a Secret to Everybody!")
        }
    }

    @Test func theStandardWebhooksVectorVerifiesForGitLabSigningTokens() throws {
        let vector = WebhookDelivery(
            headers: [
                ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"), ("webhook-timestamp", "1614265330"),
                ("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
            ],
            body: Array(#"{"test": 2432232314}"#.utf8))
        try WebhookSignature.verify(vector, forge: .gitlab, secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        #expect(throws: WebhookError.unauthorized) {
            try WebhookSignature.verify(vector, forge: .gitlab, secret: "whsec_AAAA9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        }
    }

    @Test(arguments: [
        ("github/push-branch-created", Forge.github, githubSecret),
        ("github/push-tag-created", .github, githubSecret),
        ("github/push-branch-update", .github, githubSecret),
        ("github/ping", .github, githubSecret),
        ("gitea/push", .gitea, giteaSecret),
        ("gitlab/push-hook", .gitlab, "my-secret-token"),
    ])
    func everyFixtureVerifiesWithItsSecretAndFailsClosedOtherwise(name: String, forge: Forge, secret: String) throws {
        let good = try Self.delivery(name)
        try WebhookSignature.verify(good, forge: forge, secret: secret)

        #expect(throws: WebhookError.unauthorized) {
            try WebhookSignature.verify(good, forge: forge, secret: secret + "x")
        }
        #expect(throws: WebhookError.unauthorized) { try WebhookSignature.verify(good, forge: forge, secret: "") }
        var tampered = good
        tampered.body[tampered.body.count / 2] ^= 1
        if forge != .gitlab {  // GitLab's classic token does not cover the body
            #expect(throws: WebhookError.unauthorized) {
                try WebhookSignature.verify(tampered, forge: forge, secret: secret)
            }
        }
        let stripped = WebhookDelivery(headers: [], body: good.body)
        #expect(throws: WebhookError.unauthorized) {
            try WebhookSignature.verify(stripped, forge: forge, secret: secret)
        }
    }

    @Test func bitbucketSignaturesAreSHA256OverTheBody() throws {
        let body = try Self.delivery("bitbucket/repo-push").body
        let mac = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Data("bb-secret".utf8)))
        let hex = mac.map { String(format: "%02x", $0) }.joined()
        let signed = WebhookDelivery(
            headers: [("X-Event-Key", "repo:push"), ("X-Hub-Signature", "sha256=\(hex)")], body: body)
        try WebhookSignature.verify(signed, forge: .bitbucket, secret: "bb-secret")
        let wrongPrefix = WebhookDelivery(headers: [("X-Hub-Signature", "sha1=\(hex)")], body: body)
        #expect(throws: WebhookError.unauthorized) {
            try WebhookSignature.verify(wrongPrefix, forge: .bitbucket, secret: "bb-secret")
        }
    }

    @Test func githubPushesParseToBranchTagAndCommit() throws {
        let created = try ForgeWebhookParser.parse(try Self.delivery("github/push-branch-created"), forge: .github)
        #expect(created.deliveryID == "72d3162e-cc78-11e3-81ab-4c9367dc0958")
        guard case .push(let push) = created.event else { Issue.record("not a push: \(created.event)"); return }
        #expect(
            push.repository
                == ForgeRepository(
                    fullName: "Codertocat/Hello-World", cloneURL: "https://github.com/Codertocat/Hello-World.git"))
        #expect(push.branch == "master" && push.tag == nil)
        #expect(push.commit == "6113728f27ae82c7b1a177c8d03f9e96e0adf246")
        #expect(push.headCommitMessage == "Initial commit")

        let tagged = try ForgeWebhookParser.parse(try Self.delivery("github/push-tag-created"), forge: .github)
        guard case .push(let tag) = tagged.event else { Issue.record("not a push"); return }
        #expect(tag.tag == "simple-tag" && tag.branch == nil)
    }

    @Test func aPingIsIgnoredWithAReason() throws {
        let parsed = try ForgeWebhookParser.parse(try Self.delivery("github/ping"), forge: .github)
        #expect(parsed.event == .ignored(reason: "ping"))
    }

    @Test func gitlabGiteaAndBitbucketPushesParse() throws {
        let gitlab = try ForgeWebhookParser.parse(try Self.delivery("gitlab/push-hook"), forge: .gitlab)
        #expect(gitlab.deliveryID == "13792a34-cac6-4fda-95a8-c58e00a3954e")
        guard case .push(let push) = gitlab.event else { Issue.record("not a push"); return }
        #expect(push.repository.fullName == "mike/diaspora")
        #expect(push.commit == "da1560886d4f094c3e6c9ef40349f7d38b5d27d7")
        #expect(push.headCommitMessage == "fixed readme")

        let tag = try ForgeWebhookParser.parse(try Self.delivery("gitlab/tag-push-hook"), forge: .gitlab)
        guard case .push(let tagPush) = tag.event else { Issue.record("not a push"); return }
        #expect(tagPush.tag == "v1.0.0")

        let gitea = try ForgeWebhookParser.parse(try Self.delivery("gitea/push"), forge: .gitea)
        #expect(gitea.deliveryID == "f6266f16-1bf3-46a5-9ea4-602e06ead473")
        guard case .push(let giteaPush) = gitea.event else { Issue.record("not a push"); return }
        #expect(giteaPush.repository.cloneURL == "http://localhost:3000/example/example.git")
        #expect(giteaPush.commit == "67b56589a45103f891bdee7c0546e5d40bc02001")

        let bitbucket = try ForgeWebhookParser.parse(try Self.delivery("bitbucket/repo-push"), forge: .bitbucket)
        guard case .push(let bbPush) = bitbucket.event else { Issue.record("not a push"); return }
        #expect(bbPush.repository.fullName == "team_name/repo_name")
        #expect(bbPush.branch == "name-of-branch")
        #expect(bbPush.commit == "709d658dc5b6d6afcd46049c2f332ee3f515a67d")
    }

    @Test func aBranchDeletionIsIgnored() throws {
        var delivery = try Self.delivery("github/push-branch-update")
        var json = try #require(try JSONSerialization.jsonObject(with: Data(delivery.body)) as? [String: Any])
        json["after"] = String(repeating: "0", count: 40)
        json["deleted"] = true
        delivery.body = Array(try JSONSerialization.data(withJSONObject: json))
        let parsed = try ForgeWebhookParser.parse(delivery, forge: .github)
        #expect(parsed.event == .ignored(reason: "refs/heads/master was deleted"))
    }

    @Test func aMalformedPayloadIsMalformedAndAnUnknownEventIgnored() throws {
        let broken = WebhookDelivery(headers: [("X-GitHub-Event", "push")], body: Array("{\"ref\": 5".utf8))
        #expect(throws: WebhookError.self) { try ForgeWebhookParser.parse(broken, forge: .github) }
        let wrongShape = WebhookDelivery(headers: [("X-Gitlab-Event", "Push Hook")], body: Array("{}".utf8))
        #expect(throws: WebhookError.self) { try ForgeWebhookParser.parse(wrongShape, forge: .gitlab) }
        let issue = WebhookDelivery(headers: [("X-GitHub-Event", "issues")], body: Array("{}".utf8))
        #expect(
            try ForgeWebhookParser.parse(issue, forge: .github).event == .ignored(reason: "event 'issues' is not built")
        )
    }

    @Test func githubPullRequestsParseToTheHeadCommit() throws {
        let body =
            #"{"action":"synchronize","pull_request":{"number":7,"title":"Fix","head":{"sha":"\#(String(repeating: "a", count: 40))","ref":"feature"}},"repository":{"full_name":"o/r","clone_url":"https://github.com/o/r.git"}}"#
        let parsed = try ForgeWebhookParser.parse(
            WebhookDelivery(headers: [("X-GitHub-Event", "pull_request")], body: Array(body.utf8)), forge: .github)
        #expect(
            parsed.event
                == .pullRequest(
                    PullRequestEvent(
                        repository: ForgeRepository(fullName: "o/r", cloneURL: "https://github.com/o/r.git"), number: 7,
                        ref: "refs/pull/7/head", commit: String(repeating: "a", count: 40), sourceBranch: "feature",
                        title: "Fix")))
    }
}
