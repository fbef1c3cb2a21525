import BuildGateCore
import Foundation
import GRDB

/// Builds in SQLite: the API's `BuildRepository` and the dispatchers' `BuildQueue` over one table.
///
/// Every method is one write or read transaction on `BuildGateDatabase`; status changes follow `BuildLifecycle`
/// and are guarded in their `WHERE` clauses, so concurrent dispatchers and API calls cannot double-claim or
/// overwrite a settled build.
package struct SQLiteBuildStore: BuildRepository, BuildQueue {
    private let database: BuildGateDatabase
    /// Running builds per tenant when its row sets no limit; nil means no limit.
    private let defaultMaxRunningPerTenant: Int?

    package init(database: BuildGateDatabase, defaultMaxRunningPerTenant: Int? = nil) {
        self.database = database
        self.defaultMaxRunningPerTenant = defaultMaxRunningPerTenant
    }

    // MARK: - BuildRepository

    package func create(_ build: Build) async throws -> BuildCreation {
        let record = try BuildRecord(build)
        // Builds arriving together are committed together (one fsync), each in its own savepoint.
        return try await database.batchedWrite { db in
            if let key = build.idempotencyKey,
                let existing = try BuildRecord.filter(Column("idempotencyKey") == key).fetchOne(db)
            {
                return .existing(try existing.build())
            }
            try record.insert(db)
            return .created(build)
        }
    }

    package func build(idempotencyKey: String) async throws -> Build? {
        try await database.writer.read { db in
            try BuildRecord.filter(Column("idempotencyKey") == idempotencyKey).fetchOne(db)?.build()
        }
    }

    package func storedContext(_ digest: ContextDigest, tenant: TenantID) async throws -> BuildContext? {
        try await database.writer.read { db in
            try BuildRecord.fetchOne(
                db,
                sql: """
                    SELECT * FROM build WHERE tenantId = ? AND contextDigest = ? AND contextRemoved = 0
                    ORDER BY id DESC LIMIT 1
                    """,
                arguments: [tenant.rawValue, digest.description]
            )?.build().context
        }
    }

    package func build(_ id: BuildID) async throws -> Build? {
        try await database.writer.read { db in
            try BuildRecord.fetchOne(db, key: id.rawValue)?.build()
        }
    }

    package func list(tenant: TenantID, status: BuildStatus?, limit: Int, after: BuildID?) async throws -> [Build] {
        try await database.writer.read { db in
            var request = BuildRecord.filter(Column("tenantId") == tenant.rawValue).order(Column("id").desc).limit(
                limit)
            if let status { request = request.filter(Column("status") == status.rawValue) }
            if let after { request = request.filter(Column("id") < after.rawValue) }
            return try request.fetchAll(db).map { try $0.build() }
        }
    }

    package func markCancelRequested(_ id: BuildID) async throws -> Build? {
        try await database.writer.write { db in
            try BuildRecord.fetchOne(
                db,
                sql:
                    "UPDATE build SET cancelRequested = 1 WHERE id = ? AND status IN \(BuildStatus.leased.sqlList) RETURNING *",
                arguments: [id.rawValue]
            )?.build()
        }
    }

    package func queuedOlder(than build: Build) async throws -> [Build] {
        guard build.runPolicy == .latestOnly, let key = build.runKey else { return [] }
        return try await database.writer.read { db in
            try BuildRecord.fetchAll(
                db,
                sql: """
                    SELECT * FROM build
                    WHERE runKey = ? AND runPolicy = 'latestOnly' AND status = 'queued' AND id < ?
                    ORDER BY id
                    """,
                arguments: [key, build.id.rawValue]
            ).map { try $0.build() }
        }
    }

    package func settle(
        _ id: BuildID, expecting: SettlementGuard, to transition: BuildLifecycle.Transition,
        pushedImages: [PushedImage],
        at date: Date
    ) async throws -> Build? {
        guard transition.isTerminal else {
            throw BuildGateError(.internalError, "settle needs a terminal status, not \(transition.status.rawValue)")
        }
        let images = String(decoding: try JSONEncoder.sorted.encode(pushedImages), as: UTF8.self)
        let (condition, conditionArguments) = Self.condition(expecting)
        // Under an expired lease, a build still starting was being dispatched when its gateway died.
        let dispatchCount = if case .expiredLease = expecting { "(status = 'starting')" } else { "0" }
        let arguments: StatementArguments =
            [
                transition.status.rawValue, transition.reason?.rawValue, transition.message, images,
                date.timeIntervalSince1970, id.rawValue,
            ] + conditionArguments
        return try await database.writer.write { db in
            try BuildRecord.fetchOne(
                db,
                sql: """
                    UPDATE build
                    SET status = ?, reason = ?, message = ?, pushedImages = ?, finishedAt = ?,
                        interruptedDispatches = interruptedDispatches + \(dispatchCount),
                        leaseOwner = NULL, leaseExpiresAt = NULL
                    WHERE id = ? AND \(condition)
                    RETURNING *
                    """,
                arguments: arguments
            )?.build()
        }
    }

    package func build(_ id: BuildID, ifStill expected: SettlementGuard) async throws -> Build? {
        let (condition, conditionArguments) = Self.condition(expected)
        return try await database.writer.read { db in
            try BuildRecord.fetchOne(
                db, sql: "SELECT * FROM build WHERE id = ? AND \(condition)",
                arguments: [id.rawValue] + conditionArguments
            )?.build()
        }
    }

    /// The `WHERE` condition (after `id = ?`) that a settlement guard stands for, with its arguments.
    private static func condition(_ expected: SettlementGuard) -> (String, StatementArguments) {
        switch expected {
        case .lease(let owner):
            ("leaseOwner = ? AND status IN \(BuildStatus.leased.sqlList)", [owner])
        case .queued:
            ("status = 'queued'", [])
        case .expiredLease(let now):
            (
                "leaseOwner IS NOT NULL AND leaseExpiresAt < ? AND status IN \(BuildStatus.leased.sqlList)",
                [now.timeIntervalSince1970]
            )
        }
    }

    // MARK: - BuildQueue

    /// The tenant running-limit condition on a queued build `b` (the default limit is bound twice).
    private static let underTenantLimit = """
        (coalesce(t.maxRunningBuilds, ?) IS NULL
         OR (SELECT count(*) FROM build r WHERE r.tenantId = b.tenantId AND r.status IN \(BuildStatus.leased.sqlList))
            < coalesce(t.maxRunningBuilds, ?))
        """

    package func activeCounts() async throws -> [BuildStatus: Int] {
        try await database.writer.read { db in
            var counts: [BuildStatus: Int] = [:]
            for row in try Row.fetchAll(
                db,
                sql:
                    "SELECT status, count(*) AS n FROM build WHERE status IN \(BuildStatus.active.sqlList) GROUP BY status"
            ) {
                if let status = BuildStatus(rawValue: row["status"]) { counts[status] = row["n"] }
            }
            return counts
        }
    }

    package func activeRunKeys() async throws -> Set<String> {
        try await database.writer.read { db in
            Set(
                try String.fetchAll(
                    db,
                    sql:
                        "SELECT DISTINCT runKey FROM build WHERE runKey IS NOT NULL AND status IN \(BuildStatus.leased.sqlList)"
                ))
        }
    }

    package func requeueForRetry(_ id: BuildID, owner: String, queueExpiresAt: Date?) async throws -> Build? {
        try await database.writer.write { db in
            try BuildRecord.fetchOne(
                db,
                sql: """
                    UPDATE build
                    SET status = 'queued', builder = NULL, leaseOwner = NULL, leaseExpiresAt = NULL, startedAt = NULL,
                        attempt = attempt + 1, steps = '[]', queueExpiresAt = ?
                    WHERE id = ? AND leaseOwner = ? AND status IN \(BuildStatus.leased.sqlList) AND cancelRequested = 0
                    RETURNING *
                    """,
                arguments: [queueExpiresAt?.timeIntervalSince1970, id.rawValue, owner]
            )?.build()
        }
    }

    package func queueExpired(now: Date) async throws -> [Build] {
        try await database.writer.read { db in
            try BuildRecord.fetchAll(
                db, sql: "SELECT * FROM build WHERE status = 'queued' AND queueExpiresAt <= ? ORDER BY id",
                arguments: [now.timeIntervalSince1970]
            ).map { try $0.build() }
        }
    }

    package func queuePosition(of id: BuildID) async throws -> Int? {
        try await database.writer.read { db in
            try Int.fetchOne(
                db,
                sql: """
                    SELECT (SELECT count(*) FROM build q WHERE q.status = 'queued' AND q.id <= b.id)
                    FROM build b WHERE b.id = ? AND b.status = 'queued'
                    """,
                arguments: [id.rawValue])
        }
    }

    package func dispatchable(limit: Int) async throws -> [Build] {
        try await database.writer.read { db in
            try BuildRecord.fetchAll(
                db,
                sql: """
                    SELECT b.* FROM build b LEFT JOIN tenant t ON t.id = b.tenantId
                    WHERE b.status = 'queued' AND \(Self.underTenantLimit)
                    ORDER BY b.id LIMIT ?
                    """,
                arguments: [defaultMaxRunningPerTenant, defaultMaxRunningPerTenant, limit]
            ).map { try $0.build() }
        }
    }

    package func claim(
        _ id: BuildID, builder: String, capacity: Int?, owner: String, leaseUntil: Date, now: Date
    ) async throws -> Build? {
        try await database.writer.write { db in
            try BuildRecord.fetchOne(
                db,
                sql: """
                    UPDATE build
                    SET status = 'starting', builder = ?, leaseOwner = ?, leaseExpiresAt = ?, startedAt = ?
                    WHERE id = (
                        SELECT b.id FROM build b LEFT JOIN tenant t ON t.id = b.tenantId
                        WHERE b.id = ? AND b.status = 'queued' AND \(Self.underTenantLimit)
                          AND (b.runPolicy != 'serial' OR NOT EXISTS (
                              SELECT 1 FROM build r WHERE r.runKey = b.runKey AND r.status IN \(BuildStatus.leased.sqlList)))
                          AND (? IS NULL OR (SELECT count(*) FROM build s
                              WHERE s.builder = ? AND s.status IN \(BuildStatus.leased.sqlList)) < ?))
                    RETURNING *
                    """,
                arguments: [
                    builder, owner, leaseUntil.timeIntervalSince1970, now.timeIntervalSince1970, id.rawValue,
                    defaultMaxRunningPerTenant, defaultMaxRunningPerTenant, capacity, builder, capacity,
                ]
            )?.build()
        }
    }

    package func recordSteps(_ id: BuildID, owner: String, steps: [BuildStep]) async throws -> Bool {
        let json = String(decoding: try JSONEncoder.sorted.encode(steps), as: UTF8.self)
        return try await database.writer.write { db in
            try db.execute(
                sql:
                    "UPDATE build SET steps = ? WHERE id = ? AND leaseOwner = ? AND status IN \(BuildStatus.leased.sqlList)",
                arguments: [json, id.rawValue, owner])
            return db.changesCount == 1
        }
    }

    package func attachContext(_ id: BuildID, owner: String, context: BuildContext, gitSource: GitSource) async throws
        -> Bool
    {
        let source = String(decoding: try JSONEncoder.sorted.encode(gitSource), as: UTF8.self)
        return try await database.writer.write { db in
            try db.execute(
                sql: """
                    UPDATE build SET contextDigest = ?, contextSize = ?, contextCompression = ?, gitSource = ?
                    WHERE id = ? AND leaseOwner = ? AND status IN \(BuildStatus.leased.sqlList)
                    """,
                arguments: [
                    context.digest.description, context.size, context.compression.rawValue, source, id.rawValue, owner,
                ])
            return db.changesCount == 1
        }
    }

    package func markRunning(_ id: BuildID, owner: String) async throws -> Bool {
        try await database.writer.write { db in
            try db.execute(
                sql: "UPDATE build SET status = 'running' WHERE id = ? AND leaseOwner = ? AND status = 'starting'",
                arguments: [id.rawValue, owner]
            )
            return db.changesCount == 1
        }
    }

    package func renewLeases(_ ids: [BuildID], owner: String, until: Date) async throws -> Set<BuildID> {
        try await database.writer.write { db in
            var cancelled: Set<BuildID> = []
            for id in ids {
                let flag = try Bool.fetchOne(
                    db,
                    sql: """
                        UPDATE build SET leaseExpiresAt = ?
                        WHERE id = ? AND leaseOwner = ? AND status IN \(BuildStatus.leased.sqlList)
                        RETURNING cancelRequested
                        """,
                    arguments: [until.timeIntervalSince1970, id.rawValue, owner]
                )
                if flag == true { cancelled.insert(id) }
            }
            return cancelled
        }
    }

    package func expiredLeases(now: Date) async throws -> [Build] {
        try await database.writer.read { db in
            try BuildRecord
                .filter(sql: "leaseOwner IS NOT NULL AND leaseExpiresAt < ?", arguments: [now.timeIntervalSince1970])
                .order(Column("id"))
                .fetchAll(db)
                .map { try $0.build() }
        }
    }

    package func requeueExpiredLease(_ id: BuildID, now: Date, queueExpiresAt: Date?) async throws -> Build? {
        try await database.writer.write { db in
            try BuildRecord.fetchOne(
                db,
                sql: """
                    UPDATE build
                    SET status = 'queued', builder = NULL, startedAt = NULL, leaseOwner = NULL, leaseExpiresAt = NULL,
                        interruptedDispatches = interruptedDispatches + (status = 'starting'),
                        attempt = attempt + (status = 'running'),
                        steps = CASE WHEN status = 'running' THEN '[]' ELSE steps END,
                        queueExpiresAt = coalesce(?, queueExpiresAt)
                    WHERE id = ? AND status IN \(BuildStatus.leased.sqlList) AND cancelRequested = 0
                      AND leaseOwner IS NOT NULL AND leaseExpiresAt < ?
                    RETURNING *
                    """,
                arguments: [queueExpiresAt?.timeIntervalSince1970, id.rawValue, now.timeIntervalSince1970]
            )?.build()
        }
    }
}

extension SQLiteBuildStore: BuildRetentionStore {
    package func contextsReleased(before date: Date, limit: Int) async throws -> [ContextDigest] {
        try await database.writer.read { db in
            try String.fetchAll(
                db,
                sql: """
                    SELECT contextDigest FROM build WHERE contextDigest IS NOT NULL
                    GROUP BY contextDigest
                    HAVING min(contextRemoved) = 0 AND sum(status IN \(BuildStatus.active.sqlList)) = 0
                        AND max(finishedAt) < ?
                    LIMIT ?
                    """,
                arguments: [date.timeIntervalSince1970, limit]
            ).compactMap { ContextDigest($0) }
        }
    }

    package func markContextRemoved(_ digest: ContextDigest) async throws {
        try await database.writer.write { db in
            try db.execute(
                sql: "UPDATE build SET contextRemoved = 1 WHERE contextDigest = ?", arguments: [digest.description])
        }
    }

    package func logsToRemove(finishedBefore date: Date, limit: Int) async throws -> [BuildID] {
        try await database.writer.read { db in
            try String.fetchAll(
                db, sql: "SELECT id FROM build WHERE finishedAt < ? AND logRemoved = 0 ORDER BY finishedAt LIMIT ?",
                arguments: [date.timeIntervalSince1970, limit]
            ).compactMap { BuildID($0) }
        }
    }

    package func markLogsRemoved(_ ids: [BuildID]) async throws {
        guard !ids.isEmpty else { return }
        let list = String(decoding: try JSONEncoder().encode(ids.map(\.rawValue)), as: UTF8.self)
        try await database.writer.write { db in
            try db.execute(
                sql: "UPDATE build SET logRemoved = 1 WHERE id IN (SELECT value FROM json_each(?))", arguments: [list])
        }
    }

    package func deleteStateChanges(before date: Date, limit: Int) async throws -> Int {
        try await database.writer.write { db in
            try db.execute(
                sql:
                    "DELETE FROM buildEvent WHERE sequence IN (SELECT sequence FROM buildEvent WHERE at < ? ORDER BY sequence LIMIT ?)",
                arguments: [date.timeIntervalSince1970, limit])
            return db.changesCount
        }
    }

    package func deleteBuilds(finishedBefore date: Date, limit: Int) async throws -> [BuildID] {
        try await database.writer.write { db in
            try String.fetchAll(
                db,
                sql: """
                    DELETE FROM build WHERE id IN (
                        SELECT id FROM build WHERE finishedAt < ? AND status IN ('succeeded', 'failed', 'cancelled', 'timedOut', 'expired')
                        ORDER BY finishedAt LIMIT ?)
                    RETURNING id
                    """,
                arguments: [date.timeIntervalSince1970, limit]
            ).compactMap { BuildID($0) }
        }
    }
}
