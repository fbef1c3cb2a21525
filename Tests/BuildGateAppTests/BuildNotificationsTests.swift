import AsyncHTTPClient
import BuildGateCore
import BuildGateStore
import BuildGateTesting
import BuildNotifications
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
import Testing

/// Outbound status against a real HTTP listener standing in for the callback receiver and GitHub's statuses API.
struct BuildNotificationsTests {
    /// Everything the listener received, in order.
    final class Received: Sendable {
        struct Call: Sendable { var path: String; var headers: HTTPFields; var body: [UInt8] }
        let calls = Mutex<[Call]>([])
        /// Answer the first callback with 500, to see it retried.
        let failFirstCallback = Mutex(true)
    }

    @Test func aWebhookBuildReportsEveryStateToItsSignedCallbackAndAsGitHubCommitStatuses() async throws {
        let received = Received()
        let listener = Router()
        listener.post("**") { request, _ -> Response in
            let body = try await request.body.collect(upTo: 1 << 20)
            let path = request.uri.path
            if path == "/callback",
                received.failFirstCallback.withLock({
                    let first = $0; $0 = false; return first
                })
            {
                return Response(status: .internalServerError)
            }
            received.calls.withLock {
                $0.append(.init(path: path, headers: request.headers, body: Array(body.readableBytesView)))
            }
            return Response(status: .created)
        }
        try await Application(router: listener, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
            .test(.live) { client in
                let base = "http://127.0.0.1:\(client.port!)"
                let directory = try TemporaryDirectory("notify")
                defer { directory.remove() }
                let database = try BuildGateDatabase(
                    path: "\(directory.path)/db.sqlite", migrationsDirectory: migrationsDirectory)
                let store = SQLiteBuildStore(database: database)
                let triggers = SQLiteTriggerStore(database: database, box: SecretBox(key: .init(size: .bits256)))
                let logs = try FileBuildLogStore(dataDirectory: directory.path)
                let contexts = try FileContextStore(dataDirectory: directory.path)

                var settings = TriggerSettings(images: ["r.example.com/app:{{shortSha}}"])
                settings.callbackURL = "\(base)/callback"
                settings.statusAPIURL = base
                let trigger = Trigger(
                    id: Trigger.generateID(), tenant: .default, forge: "github", repository: "octo/app",
                    settings: settings, createdAt: Date())
                let secret = "callback-signing-secret"
                try await triggers.createTrigger(
                    trigger, secret: secret, cloneCredential: nil, statusToken: "ghp_status_token")
                let commit = String(repeating: "f", count: 40)
                let build = Build(
                    id: .generate(),
                    request: BuildRequest(images: [try ImageReference(parsing: "r.example.com/app:1")]),
                    context: BuildContext(
                        digest: ContextDigest(hex: String(repeating: "a", count: 64))!, size: 1, compression: .none),
                    gitSource: try GitSource(
                        url: "https://github.com/octo/app.git", ref: "refs/heads/main", commit: commit),
                    triggerID: trigger.id, createdAt: Date())
                _ = try await store.create(build)

                let notifier = BuildStatusNotifier(
                    triggers: triggers, httpClient: .shared, publicURL: "https://gate.example.com",
                    retryDelays: [.milliseconds(50), .milliseconds(50)], logger: Logger(label: "test"))
                var configuration = BuildDispatcher.Configuration()
                configuration.pollInterval = .milliseconds(20)
                let dispatcher = BuildDispatcher(
                    queue: store, logs: logs, contexts: contexts,
                    pool: .healthy([BuilderEndpoint(name: "fake", engine: .podman, address: .unix(path: "/x"))]),
                    drivers: [.podman: FakeBuilderDriver()], observer: notifier, configuration: configuration,
                    logger: Logger(label: "test"))
                await notifier.buildChanged(build)  // what intake does for a queued build

                let group = ServiceGroup(services: [notifier, dispatcher], logger: Logger(label: "test"))
                let running = Task { try await group.run() }
                let deadline = ContinuousClock.now + .seconds(20)
                while received.calls.withLock({ $0.filter { $0.path == "/callback" }.count }) < 4,
                    ContinuousClock.now < deadline
                {
                    try await Task.sleep(for: .milliseconds(50))
                }
                await group.triggerGracefulShutdown()
                try await running.value

                let calls = received.calls.withLock { $0 }
                let callbacks = calls.filter { $0.path == "/callback" }
                let states = try callbacks.map { call -> String in
                    let signature = try #require(call.headers[HTTPField.Name("X-BuildGate-Signature-256")!])
                    let expected = HMAC<SHA256>.authenticationCode(
                        for: call.body, using: SymmetricKey(data: Data(secret.utf8))
                    )
                    .map { String(format: "%02x", $0) }.joined()
                    #expect(signature == "sha256=\(expected)")
                    struct Event: Decodable {
                        struct B: Decodable { var status: String; var commit: String? }; var build: B;
                        var trigger: String
                    }
                    let event = try JSONDecoder().decode(Event.self, from: Data(call.body))
                    #expect(event.trigger == trigger.id && event.build.commit == commit)
                    return event.build.status
                }
                #expect(
                    states == ["queued", "starting", "running", "succeeded"],
                    "the first callback was retried after a 500")

                let statuses = calls.filter { $0.path == "/repos/octo/app/statuses/\(commit)" }
                #expect(statuses.count == 4)
                #expect(statuses.allSatisfy { $0.headers[.authorization] == "Bearer ghp_status_token" })
                struct Status: Decodable {
                    enum CodingKeys: String, CodingKey { case state, context, targetURL = "target_url" }
                    var state: String
                    var context: String
                    var targetURL: String?
                }
                let githubStates = try statuses.map { try JSONDecoder().decode(Status.self, from: Data($0.body)) }
                #expect(githubStates.map(\.state) == ["pending", "pending", "pending", "success"])
                #expect(
                    githubStates.allSatisfy {
                        $0.context == "buildgate" && $0.targetURL == "https://gate.example.com/v1/builds/\(build.id)"
                    })
            }
    }

    @Test func gitlabAndGiteaStatusRequestsFollowTheirAPIs() throws {
        let commit = String(repeating: "1", count: 40)
        var build = Build(
            id: .generate(), request: BuildRequest(images: [try ImageReference(parsing: "r.example.com/a:1")]),
            context: nil, gitSource: try GitSource(url: "https://x.example/a.git", ref: "main", commit: commit),
            createdAt: Date())
        build.status = .failed
        build.reason = .buildFailed
        let gitlab = try #require(
            ForgeCommitStatus.request(
                forge: "gitlab", apiURL: "https://gitlab.example.com", repository: "group/sub/app", commit: commit,
                build: build,
                targetURL: nil, token: "glpat-x"))
        #expect(
            gitlab.url.hasPrefix(
                "https://gitlab.example.com/api/v4/projects/group%2Fsub%2Fapp/statuses/\(commit)?state=failed&name=buildgate"
            ))
        #expect(gitlab.headers.first(name: "PRIVATE-TOKEN") == "glpat-x")
        let gitea = try #require(
            ForgeCommitStatus.request(
                forge: "gitea", apiURL: "https://gitea.example.com", repository: "o/a", commit: commit, build: build,
                targetURL: nil, token: "t"))
        #expect(gitea.url == "https://gitea.example.com/api/v1/repos/o/a/statuses/\(commit)")
        #expect(gitea.headers.first(name: "Authorization") == "token t")
        #expect(
            ForgeCommitStatus.request(
                forge: "gitea", apiURL: nil, repository: "o/a", commit: commit, build: build, targetURL: nil, token: "t"
            ) == nil)
    }
}
