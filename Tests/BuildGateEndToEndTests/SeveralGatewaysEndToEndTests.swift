import AsyncHTTPClient
import BuildGateCore
import BuildGateTesting
import Crypto
import Foundation
import Testing

/// Two `buildgate serve` processes on one PostgreSQL database and one data directory (as two replicas on a
/// ReadWriteMany volume), with the real Podman service and registry.
@Suite(.enabled(if: RealEngines.shouldRun, RealEngines.skipReason), .timeLimit(.minutes(6)))
struct SeveralGatewaysEndToEndTests {
    /// Two gateways sharing `database`; `b` has the real Podman builder too unless `builderOnB` is false (then it
    /// names one that never answers, so every build runs on A).
    final class Pair {
        let directory: TemporaryDirectory
        let database: (url: String, drop: @Sendable () async -> Void)
        let a: GatewayProcess
        let clientA: GatewayClient
        var b: GatewayProcess?
        var clientB: GatewayClient?

        init(
            directory: TemporaryDirectory, database: (url: String, drop: @Sendable () async -> Void),
            a: GatewayProcess, clientA: GatewayClient
        ) {
            self.directory = directory
            self.database = database
            self.a = a
            self.clientA = clientA
        }

        func stop() async {
            a.terminate()
            b?.terminate()
            await database.drop()
            directory.remove()
        }
    }

    static func arguments(_ services: RealServices, url: String, builder: Bool) -> [String] {
        let podman =
            builder
            ? "podman=unix://\(services.podmanSocket),name=shared-podman"
            : "podman=unix:///nonexistent.sock,name=nobody"
        return ["--builder", podman, "--insecure-registry", services.registry, "--database", url]
    }

    /// Runs `body` with A started, then (unless `startB` is false) B once A has created the shared key and admin
    /// token; stops both and drops the database after.
    static func withPair(
        _ services: RealServices, builderOnB: Bool = true, startB: Bool = true, _ body: (Pair) async throws -> Void
    ) async throws {
        guard let pair = try await start(services, builderOnB: builderOnB, startB: startB) else { return }
        do {
            try await body(pair)
        } catch {
            await pair.stop()
            throw error
        }
        await pair.stop()
    }

    static func start(_ services: RealServices, builderOnB: Bool, startB: Bool) async throws -> Pair? {
        let binary = try #require(RealEngines.gatewayBinary, "BUILDGATE_TEST_BINARY is not set: run scripts/test")
        guard let database = try await TestStores.freshPostgresDatabase() else { return nil }
        let directory = try TemporaryDirectory("two-gateways")
        let a = try GatewayProcess(
            binary: binary, dataDirectory: directory.path,
            arguments: arguments(services, url: database.url, builder: true))
        let clientA = try GatewayClient(
            baseURL: "http://127.0.0.1:\(try await a.port())", dataDirectory: directory.path)
        let pair = Pair(directory: directory, database: database, a: a, clientA: clientA)
        if startB { try await pair.startB(services, builder: builderOnB) }
        return pair
    }

    @Test func uploadsToEitherGatewayAreBuiltAndAFollowerOnBGetsEveryByteOfABuildRunByALive() async throws {
        let services = try RealServices()
        try await Self.withPair(services, builderOnB: false) { pair in
            let clientB = try #require(pair.clientB)

            // Queued on B, which has no builder: A is woken (NOTIFY) and runs it.
            let onB = try await clientB.submit(services.context(""), query: "image=\(services.uniqueImage("on-b"))")
            let lines = (1...6).map { "echo streamed-line-\($0) && sleep 0.5" }.joined(separator: " && ")
            let onA = try await pair.clientA.submit(
                services.context("RUN \(lines)\n"), query: "image=\(services.uniqueImage("on-a"))")

            // A follower on B of the build A runs: its bytes as they come, with the time each line arrived.
            let follower = Task {
                let response = try await HTTPClient.shared.execute(
                    clientB.request("/v1/builds/\(onA.id)/logs?follow=true"), timeout: .seconds(240))
                var bytes: [UInt8] = []
                var firstLineAt: Date?
                for try await chunk in response.body {
                    bytes += chunk.readableBytesView
                    if firstLineAt == nil, String(decoding: bytes, as: UTF8.self).contains("streamed-line-1\n") {
                        firstLineAt = Date()
                    }
                }
                return (bytes, firstLineAt)
            }
            let builtOnB = try await clientB.waitUntilFinished(onB.id)
            #expect(builtOnB.status == "succeeded", "\(builtOnB.message ?? "")")
            let builtOnA = try await pair.clientA.waitUntilFinished(onA.id)
            #expect(builtOnA.status == "succeeded", "\(builtOnA.message ?? "")")

            let (followed, firstLineAt) = try await follower.value
            let whole = try await pair.clientA.log(onA.id)
            #expect(String(decoding: followed, as: UTF8.self) == whole, "the follower on B missed bytes")
            #expect(whole.contains("streamed-line-6"))
            // Live: the first line reached B's follower while A's build still had seconds to go.
            let finished = try #require(APITimestamp.date(builtOnA.finishedAt))
            let first = try #require(firstLineAt, "the follower on B never saw the first line")
            #expect(first < finished - 1.5, "first line on B at \(first), build finished at \(finished)")
        }
    }

    /// One builder of capacity 1 shared by both gateways: the builder's own clock (`/proc/uptime` inside each
    /// build) shows no two builds running on it at once.
    @Test func twoGatewaysNeverRunTwoBuildsAtOnceOnABuilderOfCapacityOne() async throws {
        let services = try RealServices()
        try await Self.withPair(services) { pair in
            let clientB = try #require(pair.clientB)
            let step = "RUN echo started-at $(cat /proc/uptime) && sleep 1 && echo ended-at $(cat /proc/uptime)\n"
            var ids: [(GatewayClient, String)] = []
            for index in 0..<6 {
                let client = index.isMultiple(of: 2) ? pair.clientA : clientB
                let build = try await client.submit(
                    services.context(step), query: "image=\(services.uniqueImage("capacity\(index)"))")
                ids.append((client, build.id))
            }
            var spans: [(start: Double, end: Double)] = []
            for (client, id) in ids {
                let build = try await client.waitUntilFinished(id)
                #expect(build.status == "succeeded", "\(build.message ?? "")")
                let log = try await client.log(id)
                func time(after marker: String) -> Double? {
                    guard let range = log.range(of: "\n" + marker + " ", options: .backwards) else { return nil }
                    return Double(log[range.upperBound...].prefix { $0 != " " && $0 != "\n" })
                }
                spans.append((try #require(time(after: "started-at")), try #require(time(after: "ended-at"))))
            }
            let ordered = spans.sorted { $0.start < $1.start }
            for (earlier, later) in zip(ordered, ordered.dropFirst()) {
                #expect(earlier.end <= later.start, "two builds overlapped on the builder: \(earlier) and \(later)")
            }
        }
    }

    /// The gateway running a build is killed: its lease runs out, the survivor queues the build again (attempt 2),
    /// runs it, and a follower on the survivor gets the whole story in one log, ending with `X-Log-Complete: true`.
    @Test func aBuildWhoseGatewayIsKilledEndsOnTheOtherAndItsFollowerThereGetsTheWholeLog() async throws {
        let services = try RealServices()
        try await Self.withPair(services, startB: false) { pair in
            let slow = try await pair.clientA.submit(
                services.context("RUN echo slow-started && sleep 4 && echo slow-done\n"),
                query: "image=\(services.uniqueImage("killed"))")
            try await pair.clientA.waitForLog(slow.id, containing: "slow-started")
            // B joins while A runs the build, so A is the one that ran it.
            try await pair.startB(services, builder: true)
            let clientB = try #require(pair.clientB)

            let follower = Task {
                var offset = 0
                var bytes: [UInt8] = []
                while true {
                    let (response, body) = try await clientB.get("/v1/builds/\(slow.id)/logs?offset=\(offset)&wait=20")
                    bytes += body
                    offset += body.count
                    if response.headers.first(name: "X-Log-Complete") == "true" { return bytes }
                }
            }
            pair.a.kill9()

            let settled = try await clientB.waitUntilFinished(slow.id)
            #expect(settled.status == "succeeded", "\(settled.message ?? "")")
            #expect(settled.attempt == 2)
            let followed = String(decoding: try await follower.value, as: UTF8.self)
            #expect(followed == (try await clientB.log(slow.id)))
            #expect(followed.contains("attempt 1 of 3 ended without a result: the gateway running it stopped"))
            // The first attempt's step, then the retry, then the second attempt's claim, output and result.
            let lines = followed.split(separator: "\n").map(String.init)
            let firstStep = try #require(lines.firstIndex { $0.hasPrefix("STEP 3/3") }, "\(followed)")
            let retry = try #require(lines.firstIndex { $0.contains("the gateway running it stopped") }, "\(followed)")
            let claims = lines.indices.filter { lines[$0].contains("dispatched to builder") }
            let done = try #require(lines.lastIndex(of: "slow-done"), "\(followed)")
            #expect(firstStep < retry && claims.count == 2 && claims[1] > retry && done > claims[1], "\(followed)")
            #expect(lines.last?.contains("result: succeeded") == true, "\(followed)")
        }
    }

    @Test func theSameWebhookDeliveredToEachGatewayBuildsOnce() async throws {
        let services = try RealServices()
        try await Self.withPair(services) { pair in
            let clientB = try #require(pair.clientB)
            let secret = "shared-\(UUID().uuidString)"
            let repository = "e2e/shared-\(UUID().uuidString.prefix(6).lowercased())"
            let (trigger, triggerBody) = try await pair.clientA.postJSON(
                "/v1/triggers",
                """
                {"forge":"github","repository":"\(repository)","secret":"\(secret)",
                 "cloneURL":"git://127.0.0.1:9/none.git","images":["\(services.registry)/e2e-shared:{{shortSha}}"]}
                """)
            #expect(trigger.status.code == 201, "\(String(decoding: triggerBody, as: UTF8.self))")
            let push = SignedGitHubPush(
                repository: repository, commit: String(repeating: "ab", count: 20), message: "m", secret: secret)
            let (first, firstBody) = try await GatewayClient(baseURL: pair.clientA.baseURL, token: "").post(
                "/v1/webhooks/github", body: push.body, headers: push.headers)
            let (second, secondBody) = try await GatewayClient(baseURL: clientB.baseURL, token: "").post(
                "/v1/webhooks/github", body: push.body, headers: push.headers)
            #expect(first.status.code == 202, "\(String(decoding: firstBody, as: UTF8.self))")
            #expect(second.status.code == 202, "the redelivery answers as the first delivery did")
            #expect(second.headers.first(name: "X-BuildGate-Redelivery") == "true")
            #expect(secondBody == firstBody)
            let builds = try await pair.clientA.builds()
            #expect(builds.count == 1, "\(builds.map(\.id))")
        }
    }
}

extension SeveralGatewaysEndToEndTests.Pair {
    func startB(_ services: RealServices, builder: Bool) async throws {
        let binary = try #require(RealEngines.gatewayBinary)
        let b = try GatewayProcess(
            binary: binary, dataDirectory: directory.path,
            arguments: SeveralGatewaysEndToEndTests.arguments(services, url: database.url, builder: builder))
        self.b = b
        clientB = GatewayClient(baseURL: "http://127.0.0.1:\(try await b.port())", token: clientA.token)
    }
}
