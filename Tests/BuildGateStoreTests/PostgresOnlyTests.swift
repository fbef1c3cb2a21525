import BuildGateCore
import BuildGateStore
import BuildGateTesting
import Foundation
import GRDB
import PostgresNIO
import Testing

/// What only the PostgreSQL store has: its schema kept equal to SQLite's, and logs shared between gateways.
struct PostgresOnlyTests {
    /// Every table and column the SQLite migrations leave, and nothing else, in PostgreSQL's (names compared
    /// case-insensitively: PostgreSQL folds unquoted names to lower case).
    @Test func bothSchemasHaveTheSameTablesAndColumns() async throws {
        let directory = try TemporaryDirectory("schema")
        defer { directory.remove() }
        let sqlite = try BuildGateDatabase(
            path: "\(directory.path)/db.sqlite", migrationsDirectory: migrationsDirectory)
        let sqliteColumns: Set<String> = try await sqlite.writer.read { db in
            var columns: Set<String> = []
            let tables = try String.fetchAll(
                db,
                sql: """
                    SELECT name FROM sqlite_master
                    WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name != 'grdb_migrations'
                    """)
            for table in tables {
                for column in try db.columns(in: table) { columns.insert("\(table).\(column.name)".lowercased()) }
            }
            return columns
        }
        try await TestStores.with(.postgres) { stores in
            let database = try #require(stores.postgres?.database)
            let postgresColumns = Set(
                try await database.rows(
                    """
                    SELECT table_name, column_name FROM information_schema.columns
                    WHERE table_schema = 'public' AND table_name != 'schemamigration'
                    """
                ).map { "\(try $0["table_name"].decode(String.self)).\(try $0["column_name"].decode(String.self))" })
            #expect(sqliteColumns.count > 50)
            #expect(
                postgresColumns == sqliteColumns,
                "only in SQLite: \(sqliteColumns.subtracting(postgresColumns).sorted()); only in PostgreSQL: \(postgresColumns.subtracting(sqliteColumns).sorted())"
            )
        }
    }

    /// Claims from every gateway take turns under one lock, so each counts what the one before it committed (the
    /// cross-gateway tests in `SharedStoreTests` show the limits holding; this shows the turn-taking itself, which
    /// a race too narrow for those tests to catch would otherwise hide): a claim waits while another holds the lock.
    @Test func aClaimWaitsForTheClaimLock() async throws {
        try await TestStores.with(.postgres) { stores in
            let database = try #require(stores.postgres?.database)
            let build = Build(
                id: .generate(), request: BuildRequest(images: [try ImageReference(parsing: "r.example.com/a:1")]),
                context: BuildContext(
                    digest: ContextDigest(hex: String(repeating: "e", count: 64))!, size: 1, compression: .none),
                createdAt: Date())
            _ = try await stores.builds.create(build)
            let claimLock = BuildGatePostgres.claimLock
            try await database.client.withConnection { holder in
                try await holder.query("SELECT pg_advisory_lock(\(claimLock))", logger: database.logger)
                let claim = Task {
                    try await stores.builds.claim(
                        build.id, builder: "b", capacity: 1, owner: "o", leaseUntil: Date() + 60, now: Date())
                }
                #expect(
                    try await ChildProcess.wait(for: .seconds(30)) {
                        let waiting: Int =
                            try await database.rows(
                                "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                            ).first?.value("n") ?? 0
                        return waiting == 1
                    })
                #expect(try await stores.builds.build(build.id)?.status == .queued, "claimed past the lock")
                try await holder.query("SELECT pg_advisory_unlock(\(claimLock))", logger: database.logger)
                #expect(try await claim.value?.status == .starting)
            }
        }
    }

    /// Two gateways on one data directory (a ReadWriteMany volume): a follower of a log on B is woken by every
    /// append A makes and by A finishing it, through NOTIFY, and reads A's bytes from the shared file.
    @Test func aFollowerOnOneGatewayGetsEveryByteAnotherAppendsLive() async throws {
        try await TestStores.with(.postgres) { stores in
            let gatewayB = try #require(try await stores.otherGateway?())
            let directory = try TemporaryDirectory("shared-logs")
            defer { directory.remove() }
            let logsA = try FileBuildLogStore(dataDirectory: directory.path)
            let logsB = try FileBuildLogStore(dataDirectory: directory.path)
            // Shared before the services run, as the gateway does; the stores' own listeners are already running,
            // so these use fresh ones.
            let sharingA = PostgresNotifications(database: try #require(stores.postgres?.database))
            let sharingB = PostgresNotifications(database: try #require(gatewayB.postgres?.database))
            sharingA.shareLogs(of: logsA)
            sharingB.shareLogs(of: logsB)
            let runA = Task { try await sharingA.run() }
            let runB = Task { try await sharingB.run() }
            defer {
                runA.cancel()
                runB.cancel()
            }
            #expect(try await ChildProcess.wait(for: .seconds(30)) { sharingB.isListening(PostgresNotifications.logs) })

            let id = BuildID.generate()
            var expected: [UInt8] = []
            var length: Int64 = 0
            for line in 0..<20 {
                let bytes = Array("line \(line) from gateway A\n".utf8)
                let seen = length
                let follower = Task { await logsB.waitForChange(id, beyond: seen, timeout: .seconds(30)) }
                #expect(try await ChildProcess.wait(for: .seconds(30)) { logsB.waiterCount(id) == 1 })
                try await logsA.append(bytes, to: id)
                let started = ContinuousClock.now
                let snapshot = await follower.value
                #expect(ContinuousClock.now - started < .seconds(10), "woken by its timeout, not by A's append")
                expected += bytes
                #expect(snapshot.length == Int64(expected.count))
                length = snapshot.length
            }
            var read: [UInt8] = []
            while read.count < expected.count {
                read += try await logsB.read(id, from: Int64(read.count), maxLength: 1 << 20)
            }
            #expect(read == expected)

            let whole = length
            let finished = Task { await logsB.waitForChange(id, beyond: whole, timeout: .seconds(30)) }
            #expect(try await ChildProcess.wait(for: .seconds(30)) { logsB.waiterCount(id) == 1 })
            await logsA.finish(id)
            #expect(await finished.value.isFinished)
            await gatewayB.closeAll()
        }
    }
}
