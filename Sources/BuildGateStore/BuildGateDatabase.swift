import BuildGateCore
import Foundation
import GRDB
import Synchronization

/// The gateway's SQLite database: owns the connection pool and the migrator (GRDB's `AppDatabase` pattern).
///
/// WAL journal, `synchronous=FULL` on the writer (a committed build survives power loss), write transactions begun
/// with `BEGIN IMMEDIATE` by GRDB's pool, and a busy timeout so a second process waits rather than fails.
package final class BuildGateDatabase: Sendable {
    package let writer: DatabasePool

    /// Whether a write transaction can start now (`BEGIN IMMEDIATE`, then rolled back): the readiness check.
    package func isWritable() async -> Bool {
        do {
            try await writer.writeWithoutTransaction { db in
                try db.execute(sql: "BEGIN IMMEDIATE")
                try db.execute(sql: "ROLLBACK")
            }
            return true
        } catch {
            return false
        }
    }

    /// The migrations applied, in order (their file names without `.sql`).
    package func appliedMigrations() throws -> [String] {
        try writer.read { db in try Self.migrator(directory: migrationsDirectory).appliedMigrations(db) }
    }

    /// A consistent copy of the live database at `destination` (`VACUUM INTO`: a transactionally consistent,
    /// compacted copy, safe while the gateway runs; never a file copy of a WAL database). Refuses to overwrite.
    package func backup(to destination: String) throws {
        guard !FileManager.default.fileExists(atPath: destination) else {
            throw BuildGateError(.conflict, "\(destination) exists; a backup never overwrites")
        }
        try writer.writeWithoutTransaction { db in
            try db.execute(sql: "VACUUM INTO ?", arguments: [destination])
        }
    }

    private let migrationsDirectory: String

    // MARK: - Group commit

    /// A write waiting for the next batch: `perform` runs it in its own savepoint of the batch's transaction and
    /// keeps its result; `complete` resumes its caller once the transaction committed (nil) or failed.
    private struct BatchedWrite: Sendable {
        let perform: @Sendable (Database) -> Void
        let complete: @Sendable ((any Error)?) -> Void
    }
    private let batch = Mutex<(pending: [BatchedWrite], draining: Bool)>(([], false))
    /// Writes committed together at most.
    static let maxBatch = 256

    /// Runs `body` in a write transaction it shares with the other batched writes that arrive while one is being
    /// committed: one fsync for all of them (group commit), so intake bursts are not bound to one write per disk
    /// flush. Each write is its own savepoint: one that throws is rolled back alone and its caller gets the error;
    /// the others commit. Returns once the transaction holding it committed (durable, like `writer.write`).
    package func batchedWrite<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        let outcome = Outcome<T>()
        return try await withCheckedThrowingContinuation { continuation in
            let write = BatchedWrite(
                perform: { db in
                    do {
                        try db.inSavepoint {
                            outcome.set(.success(try body(db)))
                            return .commit
                        }
                    } catch {
                        outcome.set(.failure(error))
                    }
                },
                complete: { failure in
                    if let failure {
                        continuation.resume(throwing: failure)
                    } else {
                        continuation.resume(
                            with: outcome.take()
                                ?? .failure(BuildGateError(.internalError, "a batched write left no result")))
                    }
                })
            let leads = batch.withLock { state in
                state.pending.append(write)
                defer { state.draining = true }
                return !state.draining
            }
            if leads { Task { await self.drainBatches() } }
        }
    }

    /// Commits the waiting writes, a batch at a time, until none waits.
    private func drainBatches() async {
        while true {
            let writes = batch.withLock { state -> [BatchedWrite] in
                let taken = Array(state.pending.prefix(Self.maxBatch))
                state.pending.removeFirst(taken.count)
                if taken.isEmpty { state.draining = false }
                return taken
            }
            guard !writes.isEmpty else { return }
            do {
                try await writer.write { db in
                    for write in writes { write.perform(db) }
                }
                for write in writes { write.complete(nil) }
            } catch {
                for write in writes { write.complete(error) }
            }
        }
    }

    /// One batched write's result, set inside the transaction and taken after it committed.
    private final class Outcome<T: Sendable>: Sendable {
        private let value = Mutex<Result<T, any Error>?>(nil)
        func set(_ result: Result<T, any Error>) { value.withLock { $0 = result } }
        func take() -> Result<T, any Error>? { value.withLock { $0 } }
    }

    /// Opens (creating if needed) the database at `path` and applies the migrations in `migrationsDirectory`.
    package init(path: String, migrationsDirectory: String) throws {
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.foreignKeysEnabled = true
        configuration.prepareDatabase { db in
            // Statement journals (inserts fire triggers inside group commits' savepoints) and sorts in memory, not
            // in files created and deleted in /var/tmp several times a second under load.
            try db.execute(sql: "PRAGMA temp_store = MEMORY")
        }
        self.migrationsDirectory = migrationsDirectory
        writer = try DatabasePool(path: path, configuration: configuration)
        try writer.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        try Self.migrator(directory: migrationsDirectory).migrate(writer)
    }

    /// A migrator that registers every `NNNN_name.sql` file of `directory`, in numeric order.
    ///
    /// Each file runs in its own transaction, once; GRDB records it by its file name. Shipped files are never edited.
    package static func migrator(directory: String) throws -> DatabaseMigrator {
        let files = try FileManager.default.contentsOfDirectory(atPath: directory)
            .filter { $0.hasSuffix(".sql") }
            .sorted { migrationNumber($0) < migrationNumber($1) }
        guard !files.isEmpty else {
            throw BuildGateError(.internalError, "no migrations found in \(directory)")
        }
        var migrator = DatabaseMigrator()
        for file in files {
            guard migrationNumber(file) != Int.max else {
                throw BuildGateError(.internalError, "migration \(file) must start with its number, e.g. 0001_…")
            }
            let sql = try String(contentsOfFile: "\(directory)/\(file)", encoding: .utf8)
            migrator.registerMigration(String(file.dropLast(".sql".count))) { db in
                try db.execute(sql: sql)
            }
        }
        return migrator
    }

    private static func migrationNumber(_ file: String) -> Int {
        Int(file.prefix(while: \.isNumber)) ?? .max
    }
}

extension Database {
    /// Creates the tenant's row if it does not exist yet (tokens, triggers and credentials may name a new tenant).
    func ensureTenant(_ tenant: TenantID, at date: Date) throws {
        try execute(
            sql: "INSERT OR IGNORE INTO tenant (id, createdAt) VALUES (?, ?)",
            arguments: [tenant.rawValue, date.timeIntervalSince1970])
    }
}
