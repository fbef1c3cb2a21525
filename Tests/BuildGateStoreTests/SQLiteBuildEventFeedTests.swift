import BuildGateCore
import BuildGateStore
import BuildGateTesting
import Foundation
import GRDB
import Testing

/// The durable record behind `GET /v1/events`: filled by the database's triggers on every status a build takes.
struct SQLiteBuildEventFeedTests {
    let directory: TemporaryDirectory
    let database: BuildGateDatabase
    let store: SQLiteBuildStore
    let feed: SQLiteBuildEventFeed

    init() throws {
        directory = try TemporaryDirectory("events")
        database = try BuildGateDatabase(path: "\(directory.path)/db.sqlite", migrationsDirectory: migrationsDirectory)
        store = SQLiteBuildStore(database: database)
        feed = try SQLiteBuildEventFeed(database: database)
    }

    func build(tenant: TenantID = .default) throws -> Build {
        Build(
            id: .generate(), tenant: tenant,
            request: BuildRequest(images: [try ImageReference(parsing: "r.example.com/app:1")]),
            context: BuildContext(
                digest: ContextDigest(hex: String(repeating: "c", count: 64))!, size: 1, compression: .gzip),
            createdAt: Date())
    }

    @Test func everyStatusABuildTakesIsRecordedInOrderPerTenant() async throws {
        defer { directory.remove() }
        let first = try build()
        let other = try build(tenant: TenantID("other")!)
        // A tenant exists once it has a token.
        _ = try await SQLiteAccessTokenStore(database: database).createToken(
            tenant: other.tenant, name: "t", scopes: [.admin], buildID: nil, expiresAt: nil, at: Date())
        _ = try await store.create(first)
        _ = try await store.create(other)
        let claimed = try #require(
            try await store.claim(
                first.id, builder: "b", capacity: nil, owner: "g", leaseUntil: Date() + 60, now: Date()))
        #expect(claimed.status == .starting)
        // A write that changes no status records nothing.
        try await database.writer.write { db in
            try db.execute(sql: "UPDATE build SET builder = 'c' WHERE id = ?", arguments: [first.id.rawValue])
        }
        // A rolled-back change leaves nothing either.
        try? await database.writer.write { db in
            try db.execute(
                sql: "UPDATE build SET status = 'queued', leaseOwner = NULL, leaseExpiresAt = NULL WHERE id = ?",
                arguments: [first.id.rawValue])
            throw CancellationError()
        }

        let mine = try await feed.changes(of: .default, after: 0, limit: 100)
        #expect(mine.map(\.status) == [.queued, .starting])
        #expect(mine.allSatisfy { $0.buildID == first.id })
        #expect(mine[0].sequence < mine[1].sequence)
        let theirs = try await feed.changes(of: TenantID("other")!, after: 0, limit: 100)
        #expect(theirs.map(\.buildID) == [other.id])
        #expect(try await feed.changes(of: .default, after: mine[0].sequence, limit: 100).map(\.status) == [.starting])
        #expect(try await feed.lastSequence() == mine[1].sequence)
    }

    @Test func aReaderIsWokenByACommitAndOtherwiseAtItsTimeout() async throws {
        defer { directory.remove() }
        let before = try await feed.lastSequence()
        let woken = Task { () -> Duration in
            let start = ContinuousClock.now
            await feed.waitForChanges(after: before, timeout: .seconds(60))
            return ContinuousClock.now - start
        }
        // The waiter is registered or not yet: either way a commit after this point wakes it (it compares sequences).
        _ = try await store.create(try build())
        #expect(try await woken.value < .seconds(30))

        let last = try await feed.lastSequence()
        let start = ContinuousClock.now
        await feed.waitForChanges(after: last, timeout: .milliseconds(200))
        #expect(ContinuousClock.now - start >= .milliseconds(200))
    }

    @Test func retentionRemovesChangesOlderThanTheBuildsItKeeps() async throws {
        defer { directory.remove() }
        _ = try await store.create(try build())
        #expect(try await store.deleteStateChanges(before: Date().addingTimeInterval(-86_400), limit: 100) == 0)
        #expect(try await store.deleteStateChanges(before: Date().addingTimeInterval(60), limit: 100) == 1)
        #expect(try await feed.changes(of: .default, after: 0, limit: 100).isEmpty)
    }
}
