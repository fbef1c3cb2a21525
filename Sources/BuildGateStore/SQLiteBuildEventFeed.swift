import BuildGateCore
import Foundation
import GRDB
import Synchronization

/// `BuildEventFeed` over the `buildEvent` table, which triggers fill (migration 0009). Readers waiting for changes
/// are woken by GRDB's observation of commits that touch the table in this process.
package final class SQLiteBuildEventFeed: BuildEventFeed {
    private let database: BuildGateDatabase
    private let waiters: SequenceWaiters
    private let observation = Mutex<AnyDatabaseCancellable?>(nil)

    package init(database: BuildGateDatabase) throws {
        self.database = database
        let seen = try database.writer.read { db in
            try Int64.fetchOne(db, sql: "SELECT MAX(sequence) FROM buildEvent") ?? 0
        }
        waiters = SequenceWaiters(seen: seen)
        let observer = DatabaseRegionObservation(tracking: Table("buildEvent")).start(
            in: database.writer, onError: { _ in }
        ) { [weak self] db in
            guard let self, let newest = try? Int64.fetchOne(db, sql: "SELECT MAX(sequence) FROM buildEvent") else {
                return
            }
            self.waiters.committed(newest)
        }
        observation.withLock { $0 = observer }
    }

    deinit {
        observation.withLock { $0?.cancel() }
    }

    package func changes(of tenant: TenantID, after sequence: Int64, limit: Int) async throws -> [BuildStateChange] {
        try await database.writer.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT sequence, tenantId, buildId, status, reason, at FROM buildEvent
                    WHERE tenantId = ? AND sequence > ? ORDER BY sequence LIMIT ?
                    """,
                arguments: [tenant.rawValue, sequence, limit]
            ).compactMap { row in
                guard let tenant = TenantID(row["tenantId"]), let id = BuildID(row["buildId"]),
                    let status = BuildStatus(rawValue: row["status"])
                else { return nil }
                return BuildStateChange(
                    sequence: row["sequence"], tenant: tenant, buildID: id, status: status,
                    reason: (row["reason"] as String?).flatMap(BuildFailureReason.init(rawValue:)),
                    at: Date(timeIntervalSince1970: row["at"]))
            }
        }
    }

    package func lastSequence() async throws -> Int64 {
        try await database.writer.read { db in try Int64.fetchOne(db, sql: "SELECT MAX(sequence) FROM buildEvent") ?? 0
        }
    }

    package func waitForChanges(after sequence: Int64, timeout: Duration) async {
        await waiters.wait(after: sequence, timeout: timeout)
    }
}
