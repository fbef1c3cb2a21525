import BuildGateCore
import BuildGateStore
import BuildGateTesting
import Foundation
import GRDB
import Logging
import Testing

/// Retention over the real SQLite store and the file context and log stores.
struct RetentionSweeperTests {
    @Test func contextsLogsAndRowsGoWhenThePolicySaysAndNotBefore() async throws {
        let directory = try TemporaryDirectory("retention")
        defer { directory.remove() }
        let database = try BuildGateDatabase(
            path: "\(directory.path)/db.sqlite", migrationsDirectory: migrationsDirectory)
        let store = SQLiteBuildStore(database: database)
        let contexts = try FileContextStore(dataDirectory: directory.path)
        let logs = try FileBuildLogStore(dataDirectory: directory.path)
        let now = Date()

        /// A build with its own stored context file (stored `storedAgo` seconds ago) and a log, ended `endedAgo`
        /// seconds ago (nil: still queued).
        func build(digest: Character, endedAgo: TimeInterval?, storedAgo: TimeInterval = 7200) async throws -> (
            BuildID, BuildContext
        ) {
            let context = BuildContext(
                digest: ContextDigest(hex: String(repeating: digest, count: 64))!, size: 1, compression: .none)
            let upload = try contexts.makeUploadFile()
            try contexts.commit(upload: upload, as: context)
            let stored = now.addingTimeInterval(-storedAgo).timeIntervalSince1970
            var times = [timeval(tv_sec: Int(stored), tv_usec: 0), timeval(tv_sec: Int(stored), tv_usec: 0)]
            utimes(contexts.path(of: context), &times)
            let build = Build(
                id: .generate(), request: BuildRequest(images: [try ImageReference(parsing: "r.example.com/a:1")]),
                context: context,
                createdAt: now)
            _ = try await store.create(build)
            try await logs.appendGatewayLine("queued", to: build.id)
            if let endedAgo {
                try await database.writer.write { db in
                    try db.execute(
                        sql: "UPDATE build SET status = 'succeeded', finishedAt = ? WHERE id = ?",
                        arguments: [now.addingTimeInterval(-endedAgo).timeIntervalSince1970, build.id.rawValue])
                }
            }
            return (build.id, context)
        }
        let ended = try await build(digest: "a", endedAgo: 3600)
        let sharedEnded = try await build(digest: "b", endedAgo: 3600)
        let sharedQueued = try await build(digest: "b", endedAgo: nil)
        let justStoredAgain = try await build(digest: "c", endedAgo: 3600, storedAgo: 10)
        let monthOld = try await build(digest: "d", endedAgo: 40 * 86_400)
        let ancient = try await build(digest: "e", endedAgo: 100 * 86_400)

        let sweeper = RetentionSweeper(
            store: store, contexts: contexts, logs: logs, policy: RetentionPolicy(), logger: Logger(label: "test"))
        try await sweeper.sweep(now: now)

        func stored(_ context: BuildContext) -> Bool {
            FileManager.default.fileExists(atPath: contexts.path(of: context))
        }
        func hasLog(_ id: BuildID) -> Bool {
            FileManager.default.fileExists(atPath: "\(directory.path)/logs/\(id.rawValue).log")
        }
        // Contexts: gone once every build using it ended — unless a new upload stored the same bytes a moment ago.
        #expect(!stored(ended.1))
        #expect(stored(sharedEnded.1) && stored(sharedQueued.1))
        #expect(stored(justStoredAgain.1))
        // Logs: kept 30 days; rows: kept 90 days.
        #expect(hasLog(ended.0) && hasLog(sharedQueued.0))
        #expect(!hasLog(monthOld.0))
        #expect(try await store.build(monthOld.0) != nil)
        #expect(try await store.build(ancient.0) == nil)
        #expect(!hasLog(ancient.0))
        #expect(try await store.build(ended.0)?.status == .succeeded)

        // What a pass removed is not looked at again; what it kept (stored again a moment ago) is.
        #expect(try await store.contextsReleased(before: now, limit: 100) == [justStoredAgain.1.digest])
        #expect(try await store.logsToRemove(finishedBefore: now - 30 * 86_400, limit: 100).isEmpty)
    }

    /// Each pass is bounded; the next one goes on from where it stopped, however many are behind.
    @Test func aBacklogIsWorkedOffOverSeveralPasses() async throws {
        let directory = try TemporaryDirectory("retention")
        defer { directory.remove() }
        let database = try BuildGateDatabase(
            path: "\(directory.path)/db.sqlite", migrationsDirectory: migrationsDirectory)
        let store = SQLiteBuildStore(database: database)
        let contexts = try FileContextStore(dataDirectory: directory.path)
        let logs = try FileBuildLogStore(dataDirectory: directory.path)
        let now = Date()
        var ids: [BuildID] = []
        for index in 0..<5 {
            let build = Build(
                id: .generate(), request: BuildRequest(images: [try ImageReference(parsing: "r.example.com/a:1")]),
                context: BuildContext(
                    digest: ContextDigest(hex: String(repeating: "\(index)", count: 64))!, size: 1, compression: .none),
                createdAt: now)
            _ = try await store.create(build)
            try await logs.appendGatewayLine("queued", to: build.id)
            try await database.writer.write { db in
                try db.execute(
                    sql: "UPDATE build SET status = 'succeeded', finishedAt = ? WHERE id = ?",
                    arguments: [
                        now.addingTimeInterval(-Double(40 * 86_400 + index)).timeIntervalSince1970, build.id.rawValue,
                    ])
            }
            ids.append(build.id)
        }
        let sweeper = RetentionSweeper(
            store: store, contexts: contexts, logs: logs, policy: RetentionPolicy(), logger: Logger(label: "test"))
        var removed: [Int] = []
        for _ in 0..<3 { removed.append(try await sweeper.sweep(now: now, batch: 2).logs) }
        #expect(removed == [2, 2, 1])
        for id in ids { #expect(!FileManager.default.fileExists(atPath: "\(directory.path)/logs/\(id.rawValue).log")) }
        #expect(try await sweeper.sweep(now: now, batch: 2).logs == 0)
    }
}
