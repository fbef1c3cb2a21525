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

    @Test func theQueueDatabaseIsWALWithFullSynchronousCommits() throws {
        defer { directory.remove() }
        let (journal, synchronous) = try database.writer.writeWithoutTransaction { db in
            (try String.fetchOne(db, sql: "PRAGMA journal_mode"), try Int.fetchOne(db, sql: "PRAGMA synchronous"))
        }
        #expect(journal == "wal")
        #expect(synchronous == 2)
    }

    /// Statement journals (every insert fires triggers, inside group commits' savepoints) and sorts went to temporary
    /// files in /var/tmp: at 500 webhook deliveries a second, 7 files a second were created, and 30,000 of the
    /// gateway's 49,000 writes in 6 s went to them. Every connection keeps them in memory.
    @Test func temporaryTablesAndStatementJournalsStayInMemoryOnEveryConnection() async throws {
        defer { directory.remove() }
        let writer = try await database.writer.writeWithoutTransaction { db in
            try Int.fetchOne(db, sql: "PRAGMA temp_store")
        }
        let reader = try await database.writer.read { db in try Int.fetchOne(db, sql: "PRAGMA temp_store") }
        #expect(writer == 2 && reader == 2, "2 is MEMORY")
    }

    @Test func aRowWrittenBeforeSecretsAndCachesExistedStillDecodes() async throws {
        defer { directory.remove() }
        let old = try sampleBuild()
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
        for _ in 0..<5 { _ = try await store.create(try sampleBuild()) }
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
