import BuildGateCore
import BuildGateStore
import Foundation
import Logging
import PostgresNIO

/// `buildgate-bench queue COUNT MIGRATIONS URL`: the queue on PostgreSQL, against bare single-row INSERTs (each its
/// own committed transaction) on the same server, in the same run.
struct PostgresQueueBench {
    let count: Int
    let migrations: String
    let serverURL: String

    private static func seconds(_ body: () async throws -> Void) async rethrows -> Double {
        let start = ContinuousClock.now
        try await body()
        let elapsed = ContinuousClock.now - start
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }

    /// Runs one statement on the server's `postgres` database.
    private func administer(_ sql: String) async throws {
        guard var components = URLComponents(string: serverURL) else { return }
        components.path = "/postgres"
        let client = PostgresClient(
            configuration: try BuildGatePostgres.configuration(url: components.string ?? serverURL, password: nil))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            defer { group.cancelAll() }
            try await client.query(PostgresQuery(unsafeSQL: sql))
        }
    }

    func run() async throws {
        let name = "bench_\(UUID().uuidString.prefix(8).lowercased())"
        try await administer("CREATE DATABASE \(name)")
        defer { Task { try? await administer("DROP DATABASE IF EXISTS \(name) WITH (FORCE)") } }
        guard var components = URLComponents(string: serverURL) else { return }
        components.path = "/\(name)"
        let url = components.string ?? serverURL
        var logger = Logger(label: "bench")
        logger.logLevel = .error
        let gatewayA = try await BuildGatePostgres(
            url: url, migrationsDirectory: "\(migrations)/postgres", logger: logger)
        let gatewayB = try await BuildGatePostgres(
            url: url, migrationsDirectory: "\(migrations)/postgres", logger: logger)
        let store = PostgresBuildStore(database: gatewayA)

        _ = try await gatewayA.rows("CREATE TABLE baseline (id bigint PRIMARY KEY, payload text)")
        let baseline = try await Self.seconds {
            for index in 0..<count {
                _ = try await gatewayA.rows("INSERT INTO baseline (id, payload) VALUES (\(index), 'x')")
            }
        }
        let request = BuildRequest(images: [try ImageReference(parsing: "r.example.com/bench:1")])
        let context = BuildContext(
            digest: ContextDigest(hex: String(repeating: "a", count: 64))!, size: 1, compression: .none)
        func enqueue() async throws {
            for _ in 0..<count {
                _ = try await store.create(
                    Build(id: .generate(), request: request, context: context, createdAt: Date()))
            }
        }
        let enqueued = try await Self.seconds { try await enqueue() }
        var claimed: [BuildID] = []
        let claim = try await Self.seconds {
            while claimed.count < count {
                let candidates = try await store.dispatchable(limit: 200)
                guard !candidates.isEmpty else { break }
                for build in candidates {
                    let now = Date()
                    if let build = try await store.claim(
                        build.id, builder: "bench", capacity: nil, owner: "bench", leaseUntil: now + 60, now: now)
                    {
                        claimed.append(build.id)
                    }
                }
            }
        }
        let complete = try await Self.seconds {
            for id in claimed {
                _ = try await store.settle(
                    id, expecting: .lease(owner: "bench"), to: BuildLifecycle.Transition(status: .succeeded),
                    pushedImages: [], at: Date())
            }
        }
        guard claimed.count == count else {
            throw BuildGateError(.internalError, "claimed \(claimed.count) of \(count)")
        }
        // Two gateways (two pools), four claimers each, over a fresh queue of the same size.
        try await enqueue()
        let claimers = [gatewayA, gatewayA, gatewayA, gatewayA, gatewayB, gatewayB, gatewayB, gatewayB]
        var claimedConcurrently = 0
        let concurrent = try await Self.seconds {
            claimedConcurrently = try await withThrowingTaskGroup(of: Int.self) { group in
                for (index, database) in claimers.enumerated() {
                    let queue = PostgresBuildStore(database: database)
                    group.addTask {
                        var mine = 0
                        while true {
                            let candidates = try await queue.dispatchable(limit: 50)
                            guard !candidates.isEmpty else { return mine }
                            for build in candidates.shuffled() {
                                let now = Date()
                                if try await queue.claim(
                                    build.id, builder: "bench-\(index)", capacity: nil, owner: "bench-\(index)",
                                    leaseUntil: now + 60, now: now) != nil
                                {
                                    mine += 1
                                }
                            }
                        }
                    }
                }
                return try await group.reduce(0, +)
            }
        }
        gatewayA.close()
        gatewayB.close()

        print("queue on PostgreSQL 15, \(count) builds, one committed transaction each (fsync as the server has it)")
        print("| operation | seconds | per second | vs bare INSERT |")
        print("|---|---|---|---|")
        for (name, seconds, done) in [
            ("bare INSERT (baseline)", baseline, count), ("enqueue", enqueued, count), ("claim", claim, count),
            ("complete", complete, count), ("claim, 2 gateways × 4 claimers", concurrent, claimedConcurrently),
        ] {
            print(
                String(
                    format: "| %@ | %.2f | %.0f | %.2f× |", name, seconds, Double(done) / seconds,
                    (baseline / Double(count)) / (seconds / Double(done))))
        }
    }
}
