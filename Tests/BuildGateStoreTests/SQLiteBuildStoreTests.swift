import BuildGateCore
import BuildGateStore
import BuildGateTesting
import Foundation
import GRDB
import Testing

struct SQLiteBuildStoreTests {
    let directory: TemporaryDirectory
    let database: BuildGateDatabase
    let store: SQLiteBuildStore

    init() throws {
        directory = try TemporaryDirectory("store")
        database = try BuildGateDatabase(path: "\(directory.path)/db.sqlite", migrationsDirectory: migrationsDirectory)
        store = SQLiteBuildStore(database: database)
    }

    private func build(key: String? = nil, at date: Date = Date()) throws -> Build {
        Build(
            id: .generate(at: date),
            request: BuildRequest(images: [try ImageReference(parsing: "r.example.com/app:1")], labels: ["a": "b"]),
            context: BuildContext(
                digest: ContextDigest(hex: String(repeating: "b", count: 64))!, size: 42, compression: .gzip),
            createdAt: date, idempotencyKey: key)
    }

    @Test func theQueueDatabaseIsWALWithFullSynchronousCommits() throws {
        defer { directory.remove() }
        let (journal, synchronous) = try database.writer.writeWithoutTransaction { db in
            (try String.fetchOne(db, sql: "PRAGMA journal_mode"), try Int.fetchOne(db, sql: "PRAGMA synchronous"))
        }
        #expect(journal == "wal")
        #expect(synchronous == 2)
    }

    @Test func aBuildRoundTripsThroughItsRow() async throws {
        defer { directory.remove() }
        let original = try build(key: "k1")
        #expect(try await store.create(original) == .created(original))
        let loaded = try #require(try await store.build(original.id))
        #expect(loaded.request == original.request)
        #expect(loaded.context == original.context)
        #expect(abs(loaded.createdAt.timeIntervalSince(original.createdAt)) < 0.001)
    }

    @Test func anIdempotencyKeyReturnsTheEarlierBuildAndWritesNothing() async throws {
        defer { directory.remove() }
        let first = try build(key: "same")
        _ = try await store.create(first)
        let second = try build(key: "same")
        guard case .existing(let existing) = try await store.create(second) else {
            Issue.record("a second build with the same key was created")
            return
        }
        #expect(existing.id == first.id)
        #expect(try await store.build(second.id) == nil)
        #expect(try await store.list(tenant: .default, status: nil, limit: 10, after: nil).count == 1)
    }

    /// (Which builder may take a build that needs secrets or caches is the pool's choice: `BuilderPoolTests`.)
    @Test func secretNamesRoundTripAndStepsAreStoredUnderTheLease() async throws {
        defer { directory.remove() }
        var withSecret = try build(at: Date(timeIntervalSinceNow: -10))
        withSecret.request.secrets = ["npmrc"]
        withSecret.request.cacheTo = try ImageReference(parsing: "r.example.com/app:cache")
        _ = try await store.create(withSecret)

        let podman = try await store.claimNext(builder: "podman", owner: "o", leaseUntil: Date() + 60, now: Date())
        #expect(podman?.id == withSecret.id)
        #expect(podman?.request.secrets == ["npmrc"])
        #expect(podman?.request.cacheTo == withSecret.request.cacheTo)

        let steps = [
            BuildStep(
                name: "[1/2] FROM busybox", startedAt: Date(timeIntervalSince1970: 1),
                completedAt: Date(timeIntervalSince1970: 2), cached: true),
            BuildStep(name: "[2/2] RUN false", startedAt: Date(timeIntervalSince1970: 2), error: "exit code: 1"),
        ]
        #expect(try await store.recordSteps(withSecret.id, owner: "o", steps: steps))
        #expect(try await store.recordSteps(withSecret.id, owner: "someone else", steps: []) == false)
        #expect(try await store.build(withSecret.id)?.steps == steps)
    }

    @Test func aRowWrittenBeforeSecretsAndCachesExistedStillDecodes() async throws {
        defer { directory.remove() }
        let old = try build()
        _ = try await store.create(old)
        // The request JSON as the gateway wrote it before migration 0005.
        try await database.writer.write { db in
            try db.execute(
                sql: """
                    UPDATE build SET request = '{"buildArgs":{},"dockerfile":"Dockerfile","images":["r.example.com/app:1"],"labels":{"a":"b"},"noCache":false,"timeoutSeconds":3600}'
                    WHERE id = ?
                    """,
                arguments: [old.id.rawValue])
        }
        let loaded = try #require(try await store.build(old.id))
        #expect(loaded.request == old.request)
        #expect(loaded.request.secrets.isEmpty && loaded.request.cacheFrom.isEmpty && loaded.request.cacheTo == nil)
    }

    @Test func claimsTakeTheOldestQueuedBuildOnceEvenUnderConcurrentClaimers() async throws {
        defer { directory.remove() }
        let start = Date(timeIntervalSince1970: 1_700_000_000)
        var ids: [BuildID] = []
        for index in 0..<40 {
            let value = try build(at: start.addingTimeInterval(Double(index)))
            ids.append(value.id)
            _ = try await store.create(value)
        }
        let claimed = try await withThrowingTaskGroup(of: [BuildID].self) { group in
            for claimer in 0..<4 {
                group.addTask {
                    var mine: [BuildID] = []
                    while let build = try await store.claimNext(
                        builder: "b\(claimer)", owner: "o\(claimer)", leaseUntil: Date() + 60, now: Date())
                    {
                        mine.append(build.id)
                    }
                    return mine
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        #expect(claimed.count == 40)
        #expect(Set(claimed) == Set(ids))
        let first = try await store.claimNext(builder: "x", owner: "x", leaseUntil: Date(), now: Date())
        #expect(first == nil)
    }

    @Test func aResultIsStoredOnlyByTheLeaseHolder() async throws {
        defer { directory.remove() }
        let value = try build()
        _ = try await store.create(value)
        _ = try await store.claimNext(builder: "b", owner: "mine", leaseUntil: Date() + 60, now: Date())
        let succeeded = BuildLifecycle.Transition(status: .succeeded)
        let stolen = try await store.settle(
            value.id, expecting: .lease(owner: "someone-else"), to: succeeded, pushedImages: [], at: Date())
        #expect(stolen == nil)
        let pushed = [
            PushedImage(
                reference: try ImageReference(parsing: "r.example.com/app:1"),
                digest: "sha256:" + String(repeating: "c", count: 64))
        ]
        let stored = try await store.settle(
            value.id, expecting: .lease(owner: "mine"), to: succeeded, pushedImages: pushed, at: Date())
        #expect(stored?.status == .succeeded)
        #expect(stored?.pushedImages == pushed)
        #expect(try await store.renewLeases([value.id], owner: "mine", until: Date() + 60).isEmpty)
    }

    /// A build that kills the gateway while it is being dispatched (claimed, the engine not answering yet) went
    /// back to the queue after every restart and killed the gateway again, for ever.
    @Test func aBuildWhoseDispatchTheGatewayDiedInTwiceIsAbandonedNotQueuedAgain() async throws {
        defer { directory.remove() }
        let poison = try build()
        _ = try await store.create(poison)
        let start = Date()

        _ = try #require(try await store.claimNext(builder: "b", owner: "gateway-1", leaseUntil: start + 1, now: start))
        let requeued = try #require(try await store.requeueExpiredLease(poison.id, now: start + 2))
        #expect(requeued.status == .queued)
        #expect(requeued.interruptedDispatches == 1)
        #expect(try await store.build(poison.id)?.interruptedDispatches == 1)

        let second = try #require(
            try await store.claimNext(builder: "b", owner: "gateway-2", leaseUntil: start + 3, now: start + 2))
        // The reaper asks the lifecycle, which gives the build up at the second interrupted dispatch.
        let transition = try #require(
            BuildLifecycle.transition(
                from: second.status,
                on: .leaseExpired(interruptedDispatches: second.interruptedDispatches, cancelRequested: false)))
        #expect(transition.isTerminal)
        let abandoned = try #require(
            try await store.settle(
                poison.id, expecting: .expiredLease(now: start + 4), to: transition, pushedImages: [], at: start + 4))
        #expect(abandoned.status == .failed)
        #expect(abandoned.reason == .dispatchAbandoned)
        #expect(abandoned.message?.contains("2 times") == true)
        #expect(abandoned.interruptedDispatches == 2)
        #expect(try await store.build(poison.id)?.status == .failed)
        #expect(
            try await store.claimNext(builder: "b", owner: "gateway-3", leaseUntil: start + 10, now: start + 4) == nil)
    }

    /// Builds that reached the engine are not counted: one interrupted while running still ends `interrupted`.
    @Test func aRunningBuildWhoseLeaseExpiredIsInterruptedAndCountsNoDispatch() async throws {
        defer { directory.remove() }
        let running = try build()
        _ = try await store.create(running)
        let start = Date()
        _ = try #require(try await store.claimNext(builder: "b", owner: "g", leaseUntil: start + 1, now: start))
        #expect(try await store.markRunning(running.id, owner: "g"))
        #expect(
            try await store.requeueExpiredLease(running.id, now: start + 2) == nil,
            "a running build is not queued again")
        let interrupted = try #require(
            BuildLifecycle.transition(
                from: .running, on: .leaseExpired(interruptedDispatches: 0, cancelRequested: false)))
        let settled = try #require(
            try await store.settle(
                running.id, expecting: .expiredLease(now: start + 2), to: interrupted, pushedImages: [], at: start + 2))
        #expect(settled.status == .failed)
        #expect(settled.reason == .interrupted)
        #expect(settled.interruptedDispatches == 0)
    }

    @Test func renewingReportsCancellationRequests() async throws {
        defer { directory.remove() }
        let value = try build()
        _ = try await store.create(value)
        _ = try await store.claimNext(builder: "b", owner: "o", leaseUntil: Date() + 60, now: Date())
        #expect(try await store.renewLeases([value.id], owner: "o", until: Date() + 60).isEmpty)
        _ = try await store.markCancelRequested(value.id)
        #expect(try await store.renewLeases([value.id], owner: "o", until: Date() + 60) == [value.id])
    }

    @Test func listingIsNewestFirstWithACursor() async throws {
        defer { directory.remove() }
        let start = Date(timeIntervalSince1970: 1_700_000_000)
        var ids: [BuildID] = []
        for index in 0..<5 {
            let value = try build(at: start.addingTimeInterval(Double(index)))
            ids.append(value.id)
            _ = try await store.create(value)
        }
        let page1 = try await store.list(tenant: .default, status: nil, limit: 2, after: nil).map(\.id)
        let page2 = try await store.list(tenant: .default, status: nil, limit: 2, after: page1.last).map(\.id)
        #expect(page1 == [ids[4], ids[3]])
        #expect(page2 == [ids[2], ids[1]])
        #expect(try await store.list(tenant: .default, status: .running, limit: 10, after: nil).isEmpty)
    }

    @Test func theSchemaRefusesRowsTheCodeMustNeverWrite() throws {
        defer { directory.remove() }
        #expect(throws: DatabaseError.self) {
            try database.writer.write { db in
                try db.execute(
                    sql: """
                        INSERT INTO build (id, status, request, contextDigest, contextSize, contextCompression, createdAt)
                        VALUES ('x', 'running', '{}', 'sha256:\(String(repeating: "a", count: 64))', 1, 'none', 0)
                        """)
            }
        }
        #expect(throws: DatabaseError.self) {
            try database.writer.write { db in
                try db.execute(
                    sql: """
                        INSERT INTO build (id, status, request, contextDigest, contextSize, contextCompression, createdAt)
                        VALUES ('y', 'exploded', '{}', 'sha256:\(String(repeating: "a", count: 64))', 1, 'none', 0)
                        """)
            }
        }
    }

    @Test func migrationsAreAppliedOnceAndInOrder() throws {
        defer { directory.remove() }
        let again = try BuildGateDatabase(path: "\(directory.path)/db.sqlite", migrationsDirectory: migrationsDirectory)
        let applied = try again.writer.read { db in
            try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations")
        }
        let files = try FileManager.default.contentsOfDirectory(atPath: migrationsDirectory).filter {
            $0.hasSuffix(".sql")
        }.sorted()
        #expect(applied == files.map { String($0.dropLast(4)) })
    }

    @Test func aBuildStoredBeforeMigration0006KeepsItsRowAndItsDatesBecomeUnixSeconds() async throws {
        defer { directory.remove() }
        // A database as the gateway left it at migration 0005, with a row whose dates GRDB wrote as text.
        let old = try TemporaryDirectory("migrations")
        defer { old.remove() }
        let files = try FileManager.default.contentsOfDirectory(atPath: migrationsDirectory).filter {
            $0.hasSuffix(".sql")
        }.sorted()
        for file in files where file < "0006" {
            try FileManager.default.copyItem(atPath: "\(migrationsDirectory)/\(file)", toPath: "\(old.path)/\(file)")
        }
        let path = "\(old.path)/db.sqlite"
        let before = try BuildGateDatabase(path: path, migrationsDirectory: old.path)
        try await before.writer.write { db in
            try db.execute(sql: "INSERT INTO tenant (id, createdAt) VALUES ('default', 0) ON CONFLICT DO NOTHING")
            try db.execute(
                sql: """
                    INSERT INTO build (id, tenantId, status, request, contextDigest, contextSize, contextCompression, createdAt, finishedAt, reason, message)
                    VALUES ('b00000000000000000000000001', 'default', 'failed',
                      '{"buildArgs":{},"dockerfile":"Dockerfile","images":["r.example.com/app:1"],"labels":{},"noCache":false,"timeoutSeconds":60}',
                      'sha256:\(String(repeating: "c", count: 64))', 1, 'none', '2026-11-20 10:00:00.500', '2026-11-20 10:01:00.000', 'buildFailed', 'x')
                    """)
        }
        let after = try BuildGateDatabase(path: path, migrationsDirectory: migrationsDirectory)
        let row = try await after.writer.read { db in
            try Row.fetchOne(
                db, sql: "SELECT typeof(createdAt) AS type, createdAt, finishedAt, attempt, runPolicy FROM build")
        }
        #expect(row?["type"] == "real")
        let created: Double = try #require(row?["createdAt"])
        #expect(abs(created - Date(timeIntervalSince1970: 1_795_168_800.5).timeIntervalSince1970) < 0.01)
        #expect(row?["attempt"] == 1)
        #expect(row?["runPolicy"] == "parallel")
        let build = try #require(
            try await SQLiteBuildStore(database: after).build(BuildID("b00000000000000000000000001")!))
        #expect(build.status == .failed)
        #expect(build.finishedAt.map { $0.timeIntervalSince(build.createdAt) }.map { abs($0 - 59.5) < 0.01 } == true)
    }

    @Test func aBackupIsAConsistentOpenableCopyAndNeverOverwrites() async throws {
        defer { directory.remove() }
        for _ in 0..<5 { _ = try await store.create(try build()) }
        let destination = "\(directory.path)/backup.sqlite"
        try database.backup(to: destination)
        let copy = try BuildGateDatabase(path: destination, migrationsDirectory: migrationsDirectory)
        #expect(
            try await SQLiteBuildStore(database: copy).list(tenant: .default, status: nil, limit: 50, after: nil).count
                == 5)
        #expect(try copy.appliedMigrations() == database.appliedMigrations())
        #expect(throws: BuildGateError.self) { try database.backup(to: destination) }
    }
}
