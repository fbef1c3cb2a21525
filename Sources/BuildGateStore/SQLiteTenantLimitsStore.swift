import BuildGateCore
import Foundation
import GRDB

/// Tenant limits in the `tenant` table.
package struct SQLiteTenantLimitsStore: TenantLimitsRepository {
    private let database: BuildGateDatabase

    package init(database: BuildGateDatabase) {
        self.database = database
    }

    package func limits(of tenant: TenantID) async throws -> TenantLimits {
        try await database.writer.read { db in
            guard
                let row = try Row.fetchOne(
                    db, sql: "SELECT maxRunningBuilds, maxQueuedBuilds, requestsPerMinute FROM tenant WHERE id = ?",
                    arguments: [tenant.rawValue])
            else { return TenantLimits() }
            return TenantLimits(
                maxRunningBuilds: row["maxRunningBuilds"], maxQueuedBuilds: row["maxQueuedBuilds"],
                requestsPerMinute: row["requestsPerMinute"])
        }
    }

    package func setLimits(_ limits: TenantLimits, for tenant: TenantID, at date: Date) async throws {
        try await database.writer.write { db in
            try db.execute(
                sql: """
                    INSERT INTO tenant (id, createdAt, maxRunningBuilds, maxQueuedBuilds, requestsPerMinute)
                    VALUES (?, ?, ?, ?, ?)
                    ON CONFLICT (id) DO UPDATE SET maxRunningBuilds = excluded.maxRunningBuilds,
                        maxQueuedBuilds = excluded.maxQueuedBuilds, requestsPerMinute = excluded.requestsPerMinute
                    """,
                arguments: [
                    tenant.rawValue, date.timeIntervalSince1970, limits.maxRunningBuilds, limits.maxQueuedBuilds,
                    limits.requestsPerMinute,
                ])
        }
    }

    package func queuedBuildCount(of tenant: TenantID, upTo limit: Int) async throws -> Int {
        // Kept by triggers (migration 0011): one row, however long the queue.
        try await database.writer.read { db in
            min(
                limit,
                try Int.fetchOne(db, sql: "SELECT queuedBuilds FROM tenant WHERE id = ?", arguments: [tenant.rawValue])
                    ?? 0)
        }
    }
}
