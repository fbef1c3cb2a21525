import BuildGateCore
import BuildGateStore
import Foundation
import GRDB

/// `buildgate-bench queue [COUNT]`: enqueue, claim and complete COUNT builds through the real SQLite store
/// (WAL, synchronous=FULL, one durable transaction each), against a baseline of COUNT bare single-row durable
/// INSERT transactions on the same database, measured in the same run. Prints builds/s and the ratio.
@main
struct BuildGateBench {
    static func main() async throws {
        let arguments = CommandLine.arguments.dropFirst()
        guard arguments.first == "queue" else {
            print("usage: buildgate-bench queue [COUNT] [MIGRATIONS_DIR]")
            return
        }
        let count = arguments.dropFirst().first.flatMap(Int.init) ?? 10_000
        let migrations = arguments.dropFirst(2).first ?? "migrations"
        let directory = NSTemporaryDirectory() + "/buildgate-bench-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let database = try BuildGateDatabase(path: "\(directory)/db.sqlite", migrationsDirectory: migrations)
        let store = SQLiteBuildStore(database: database)

        func timed(_ body: () async throws -> Void) async rethrows -> Double {
            let start = ContinuousClock.now
            try await body()
            let elapsed = ContinuousClock.now - start
            return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        }

        try await database.writer.write { db in try db.execute(sql: "CREATE TABLE baseline (id INTEGER PRIMARY KEY, payload TEXT)") }
        let baseline = try await timed {
            for index in 0..<count {
                try await database.writer.write { db in
                    try db.execute(sql: "INSERT INTO baseline (id, payload) VALUES (?, ?)", arguments: [index, "x"])
                }
            }
        }
        let request = BuildRequest(images: [try ImageReference(parsing: "r.example.com/bench:1")])
        let context = BuildContext(digest: ContextDigest(hex: String(repeating: "a", count: 64))!, size: 1, compression: .none)
        let enqueue = try await timed {
            for _ in 0..<count {
                _ = try await store.create(Build(id: .generate(), request: request, context: context, createdAt: Date()))
            }
        }
        var claimed: [BuildID] = []
        let claim = try await timed {
            for _ in 0..<count {
                let now = Date()
                guard let build = try await store.claimNext(builder: "bench", owner: "bench", leaseUntil: now.addingTimeInterval(60), now: now)
                else { break }
                claimed.append(build.id)
            }
        }
        let complete = try await timed {
            for id in claimed {
                _ = try await store.finish(
                    id, owner: "bench", status: .succeeded, reason: nil, message: nil, pushedImages: [], at: Date())
            }
        }
        precondition(claimed.count == count, "claimed \(claimed.count) of \(count)")
        print("queue, \(count) builds, one durable transaction each (WAL, synchronous=FULL)")
        print("| operation | seconds | per second | vs bare INSERT |")
        print("|---|---|---|---|")
        for (name, seconds) in [("bare INSERT (baseline)", baseline), ("enqueue", enqueue), ("claim", claim), ("complete", complete)] {
            print(String(format: "| %@ | %.2f | %.0f | %.2f× |", name, seconds, Double(count) / seconds, baseline / seconds))
        }
    }
}
