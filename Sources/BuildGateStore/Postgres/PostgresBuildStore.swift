import BuildGateCore
import Foundation
import PostgresNIO

/// Builds in PostgreSQL: the same `BuildRepository`, `BuildQueue` and retention ports as `SQLiteBuildStore`, for
/// several gateways sharing one database.
///
/// Status changes are guarded in their `WHERE` clauses exactly as in SQLite. Claims (`claim_build`, migration 0002)
/// are serialized across gateways by a transaction-scoped advisory lock, and the candidate row is locked `FOR UPDATE
/// SKIP LOCKED`, so each claim counts the builds every earlier claim committed: a builder's capacity, a tenant's
/// running limit and a `serial` run key hold however many gateways claim at once.
package struct PostgresBuildStore: BuildRepository, BuildQueue {
    private let database: BuildGatePostgres
    /// Running builds per tenant when its row sets no limit; nil means no limit.
    private let defaultMaxRunningPerTenant: Int?

    package init(database: BuildGatePostgres, defaultMaxRunningPerTenant: Int? = nil) {
        self.database = database
        self.defaultMaxRunningPerTenant = defaultMaxRunningPerTenant
    }

    private static let leased = BuildStatus.leased.sqlList
    private static let active = BuildStatus.active.sqlList

    private func builds(_ query: PostgresQuery) async throws -> [Build] {
        try await database.rows(query).map { try BuildRecord(postgres: $0).build() }
    }

    // MARK: - BuildRepository

    package func create(_ build: Build) async throws -> BuildCreation {
        let record = try BuildRecord(build)
        // One statement (the tenant exists, as in SQLite: a build names a tenant its token or trigger created).
        let inserted = try await builds(
            PostgresQuery(
                unsafeSQL: BuildRecord.insertSQL + " ON CONFLICT (idempotencyKey) DO NOTHING RETURNING *",
                binds: record.postgresBindings))
        if !inserted.isEmpty { return .created(build) }
        guard let key = build.idempotencyKey,
            let existing = try await self.build(idempotencyKey: key)
        else { throw BuildGateError(.conflict, "build \(build.id) exists") }
        return .existing(existing)
    }

    package func build(idempotencyKey: String) async throws -> Build? {
        try await builds("SELECT * FROM build WHERE idempotencyKey = \(idempotencyKey)").first
    }

    package func storedContext(_ digest: ContextDigest, tenant: TenantID) async throws -> BuildContext? {
        try await builds(
            """
            SELECT * FROM build WHERE tenantId = \(tenant.rawValue) AND contextDigest = \(digest.description)
                AND NOT contextRemoved
            ORDER BY id DESC LIMIT 1
            """
        ).first?.context
    }

    package func build(_ id: BuildID) async throws -> Build? {
        try await builds("SELECT * FROM build WHERE id = \(id.rawValue)").first
    }

    package func list(tenant: TenantID, status: BuildStatus?, limit: Int, after: BuildID?) async throws -> [Build] {
        try await builds(
            """
            SELECT * FROM build WHERE tenantId = \(tenant.rawValue)
              AND (\(status?.rawValue)::text IS NULL OR status = \(status?.rawValue))
              AND (\(after?.rawValue)::text IS NULL OR id < \(after?.rawValue))
            ORDER BY id DESC LIMIT \(limit)
            """)
    }

    package func markCancelRequested(_ id: BuildID) async throws -> Build? {
        try await builds(
            """
            UPDATE build SET cancelRequested = true
            WHERE id = \(id.rawValue) AND status IN \(unescaped: Self.leased) RETURNING *
            """
        ).first
    }

    package func queuedOlder(than build: Build) async throws -> [Build] {
        guard build.runPolicy == .latestOnly, let key = build.runKey else { return [] }
        return try await builds(
            """
            SELECT * FROM build
            WHERE runKey = \(key) AND runPolicy = 'latestOnly' AND status = 'queued' AND id < \(build.id.rawValue)
            ORDER BY id
            """)
    }

    package func settle(
        _ id: BuildID, expecting: SettlementGuard, to transition: BuildLifecycle.Transition,
        pushedImages: [PushedImage], at date: Date
    ) async throws -> Build? {
        guard transition.isTerminal else {
            throw BuildGateError(.internalError, "settle needs a terminal status, not \(transition.status.rawValue)")
        }
        let images = String(decoding: try JSONEncoder.sorted.encode(pushedImages), as: UTF8.self)
        // Under an expired lease, a build still starting was being dispatched when its gateway died.
        let dispatchCount = if case .expiredLease = expecting { "(status = 'starting')::int" } else { "0" }
        let (kind, owner, now) = Self.parameters(expecting)
        return try await builds(
            """
            UPDATE build
            SET status = \(transition.status.rawValue), reason = \(transition.reason?.rawValue),
                message = \(transition.message), pushedImages = \(images), finishedAt = \(date.timeIntervalSince1970),
                interruptedDispatches = interruptedDispatches + \(unescaped: dispatchCount),
                leaseOwner = NULL, leaseExpiresAt = NULL
            WHERE id = \(id.rawValue)
              AND ((\(kind) = 'lease' AND leaseOwner = \(owner) AND status IN \(unescaped: Self.leased))
                OR (\(kind) = 'queued' AND status = 'queued')
                OR (\(kind) = 'expiredLease' AND leaseOwner IS NOT NULL AND leaseExpiresAt < \(now)
                    AND status IN \(unescaped: Self.leased)))
            RETURNING *
            """
        ).first
    }

    package func build(_ id: BuildID, ifStill expected: SettlementGuard) async throws -> Build? {
        let (kind, owner, now) = Self.parameters(expected)
        return try await builds(
            """
            SELECT * FROM build WHERE id = \(id.rawValue)
              AND ((\(kind) = 'lease' AND leaseOwner = \(owner) AND status IN \(unescaped: Self.leased))
                OR (\(kind) = 'queued' AND status = 'queued')
                OR (\(kind) = 'expiredLease' AND leaseOwner IS NOT NULL AND leaseExpiresAt < \(now)
                    AND status IN \(unescaped: Self.leased)))
            """
        ).first
    }

    /// A settlement guard as the parameters of the condition both queries above spell out.
    private static func parameters(_ expected: SettlementGuard) -> (kind: String, owner: String?, now: Double?) {
        switch expected {
        case .lease(let owner): ("lease", owner, nil)
        case .queued: ("queued", nil, nil)
        case .expiredLease(let now): ("expiredLease", nil, now.timeIntervalSince1970)
        }
    }

    // MARK: - BuildQueue

    package func activeCounts() async throws -> [BuildStatus: Int] {
        var counts: [BuildStatus: Int] = [:]
        for row in try await database.rows(
            "SELECT status, count(*) AS n FROM build WHERE status IN \(unescaped: Self.active) GROUP BY status")
        {
            if let status = BuildStatus(rawValue: try row.value("status")) { counts[status] = try row.value("n") }
        }
        return counts
    }

    package func activeRunKeys() async throws -> Set<String> {
        Set(
            try await database.rows(
                """
                SELECT DISTINCT runKey FROM build WHERE runKey IS NOT NULL AND status IN \(unescaped: Self.leased)
                """
            ).map { try $0.value("runKey") })
    }

    package func requeueForRetry(_ id: BuildID, owner: String, queueExpiresAt: Date?) async throws -> Build? {
        try await builds(
            """
            UPDATE build
            SET status = 'queued', builder = NULL, leaseOwner = NULL, leaseExpiresAt = NULL, startedAt = NULL,
                attempt = attempt + 1, steps = '[]', queueExpiresAt = \(queueExpiresAt?.timeIntervalSince1970)
            WHERE id = \(id.rawValue) AND leaseOwner = \(owner) AND status IN \(unescaped: Self.leased)
              AND NOT cancelRequested
            RETURNING *
            """
        ).first
    }

    package func queueExpired(now: Date) async throws -> [Build] {
        try await builds(
            """
            SELECT * FROM build WHERE status = 'queued' AND queueExpiresAt <= \(now.timeIntervalSince1970) ORDER BY id
            """)
    }

    package func queuePosition(of id: BuildID) async throws -> Int? {
        try await database.rows(
            """
            SELECT (SELECT count(*) FROM build q WHERE q.status = 'queued' AND q.id <= b.id) AS position
            FROM build b WHERE b.id = \(id.rawValue) AND b.status = 'queued'
            """
        ).first.map { try $0.value("position") }
    }

    package func dispatchable(limit: Int) async throws -> [Build] {
        try await builds(
            """
            SELECT b.* FROM build b LEFT JOIN tenant t ON t.id = b.tenantId
            WHERE b.status = 'queued'
              AND (coalesce(t.maxRunningBuilds, \(defaultMaxRunningPerTenant)) IS NULL
                OR (SELECT count(*) FROM build r WHERE r.tenantId = b.tenantId AND r.status IN \(unescaped: Self.leased))
                   < coalesce(t.maxRunningBuilds, \(defaultMaxRunningPerTenant)))
            ORDER BY b.id LIMIT \(limit)
            """)
    }

    package func claim(
        _ id: BuildID, builder: String, capacity: Int?, owner: String, leaseUntil: Date, now: Date
    ) async throws -> Build? {
        // One round trip: the function takes the claim lock, then updates under a snapshot taken after it.
        try await builds(
            """
            SELECT * FROM claim_build(\(id.rawValue), \(builder), \(capacity), \(owner),
                \(leaseUntil.timeIntervalSince1970), \(now.timeIntervalSince1970), \(defaultMaxRunningPerTenant))
            """
        ).first
    }

    package func recordSteps(_ id: BuildID, owner: String, steps: [BuildStep]) async throws -> Bool {
        let json = String(decoding: try JSONEncoder.sorted.encode(steps), as: UTF8.self)
        return try await !database.rows(
            """
            UPDATE build SET steps = \(json)
            WHERE id = \(id.rawValue) AND leaseOwner = \(owner) AND status IN \(unescaped: Self.leased) RETURNING id
            """
        ).isEmpty
    }

    package func attachContext(_ id: BuildID, owner: String, context: BuildContext, gitSource: GitSource) async throws
        -> Bool
    {
        let source = String(decoding: try JSONEncoder.sorted.encode(gitSource), as: UTF8.self)
        return try await !database.rows(
            """
            UPDATE build SET contextDigest = \(context.digest.description), contextSize = \(context.size),
                contextCompression = \(context.compression.rawValue), gitSource = \(source)
            WHERE id = \(id.rawValue) AND leaseOwner = \(owner) AND status IN \(unescaped: Self.leased) RETURNING id
            """
        ).isEmpty
    }

    package func markRunning(_ id: BuildID, owner: String) async throws -> Bool {
        try await !database.rows(
            """
            UPDATE build SET status = 'running'
            WHERE id = \(id.rawValue) AND leaseOwner = \(owner) AND status = 'starting' RETURNING id
            """
        ).isEmpty
    }

    package func renewLeases(_ ids: [BuildID], owner: String, until: Date) async throws -> Set<BuildID> {
        guard !ids.isEmpty else { return [] }
        return Set(
            try await database.rows(
                """
                UPDATE build SET leaseExpiresAt = \(until.timeIntervalSince1970)
                WHERE id = ANY(\(ids.map(\.rawValue))) AND leaseOwner = \(owner) AND status IN \(unescaped: Self.leased)
                RETURNING id, cancelRequested
                """
            ).compactMap { row in
                try row.value("cancelRequested", as: Bool.self) ? BuildID(try row.value("id", as: String.self)) : nil
            })
    }

    package func expiredLeases(now: Date) async throws -> [Build] {
        try await builds(
            """
            SELECT * FROM build WHERE leaseOwner IS NOT NULL AND leaseExpiresAt < \(now.timeIntervalSince1970)
            ORDER BY id
            """)
    }

    package func requeueExpiredLease(_ id: BuildID, now: Date, queueExpiresAt: Date?) async throws -> Build? {
        try await builds(
            """
            UPDATE build
            SET status = 'queued', builder = NULL, startedAt = NULL, leaseOwner = NULL, leaseExpiresAt = NULL,
                interruptedDispatches = interruptedDispatches + (status = 'starting')::int,
                attempt = attempt + (status = 'running')::int,
                steps = CASE WHEN status = 'running' THEN '[]' ELSE steps END,
                queueExpiresAt = coalesce(\(queueExpiresAt?.timeIntervalSince1970), queueExpiresAt)
            WHERE id = \(id.rawValue) AND status IN \(unescaped: Self.leased) AND NOT cancelRequested
              AND leaseOwner IS NOT NULL AND leaseExpiresAt < \(now.timeIntervalSince1970)
            RETURNING *
            """
        ).first
    }
}

extension PostgresBuildStore: BuildRetentionStore {
    package func contextsReleased(before date: Date, limit: Int) async throws -> [ContextDigest] {
        try await database.rows(
            """
            SELECT contextDigest FROM build WHERE contextDigest IS NOT NULL
            GROUP BY contextDigest
            HAVING NOT bool_or(contextRemoved) AND NOT bool_or(status IN \(unescaped: Self.active))
                AND max(finishedAt) < \(date.timeIntervalSince1970)
            LIMIT \(limit)
            """
        ).compactMap { ContextDigest(try $0.value("contextDigest", as: String.self)) }
    }

    package func markContextRemoved(_ digest: ContextDigest) async throws {
        _ = try await database.rows(
            "UPDATE build SET contextRemoved = true WHERE contextDigest = \(digest.description)")
    }

    package func logsToRemove(finishedBefore date: Date, limit: Int) async throws -> [BuildID] {
        try await database.rows(
            """
            SELECT id FROM build WHERE finishedAt < \(date.timeIntervalSince1970) AND NOT logRemoved
            ORDER BY finishedAt LIMIT \(limit)
            """
        ).compactMap { BuildID(try $0.value("id", as: String.self)) }
    }

    package func markLogsRemoved(_ ids: [BuildID]) async throws {
        guard !ids.isEmpty else { return }
        _ = try await database.rows("UPDATE build SET logRemoved = true WHERE id = ANY(\(ids.map(\.rawValue)))")
    }

    package func deleteStateChanges(before date: Date, limit: Int) async throws -> Int {
        try await database.rows(
            """
            DELETE FROM buildEvent WHERE sequence IN (
                SELECT sequence FROM buildEvent WHERE at < \(date.timeIntervalSince1970) ORDER BY sequence LIMIT \(limit))
            RETURNING sequence
            """
        ).count
    }

    package func deleteBuilds(finishedBefore date: Date, limit: Int) async throws -> [BuildID] {
        try await database.rows(
            """
            DELETE FROM build WHERE id IN (
                SELECT id FROM build WHERE finishedAt < \(date.timeIntervalSince1970)
                  AND status IN ('succeeded', 'failed', 'cancelled', 'timedOut', 'expired')
                ORDER BY finishedAt LIMIT \(limit))
            RETURNING id
            """
        ).compactMap { BuildID(try $0.value("id", as: String.self)) }
    }
}

extension BuildRecord {
    /// `INSERT INTO build (…) VALUES ($1, …)` for every column, in `bindings` order.
    static let insertSQL = """
        INSERT INTO build (id, tenantId, status, request, gitSource, triggerId, contextDigest, contextSize,
            contextCompression, idempotencyKey, createdAt, startedAt, finishedAt, builder, leaseOwner, leaseExpiresAt,
            cancelRequested, reason, message, pushedImages, steps, attempt, queueExpiresAt, runKey, runPolicy,
            interruptedDispatches)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22,
            $23, $24, $25, $26)
        """

    var postgresBindings: PostgresBindings {
        var bindings = PostgresBindings(capacity: 26)
        bindings.append(id)
        bindings.append(tenantId)
        bindings.append(status)
        bindings.append(request)
        bindings.append(gitSource)
        bindings.append(triggerId)
        bindings.append(contextDigest)
        bindings.append(contextSize)
        bindings.append(contextCompression)
        bindings.append(idempotencyKey)
        bindings.append(createdAt.timeIntervalSince1970)
        bindings.append(startedAt?.timeIntervalSince1970)
        bindings.append(finishedAt?.timeIntervalSince1970)
        bindings.append(builder)
        bindings.append(leaseOwner)
        bindings.append(leaseExpiresAt?.timeIntervalSince1970)
        bindings.append(cancelRequested)
        bindings.append(reason)
        bindings.append(message)
        bindings.append(pushedImages)
        bindings.append(steps)
        bindings.append(attempt)
        bindings.append(queueExpiresAt?.timeIntervalSince1970)
        bindings.append(runKey)
        bindings.append(runPolicy)
        bindings.append(interruptedDispatches)
        return bindings
    }

    init(postgres row: PostgresRandomAccessRow) throws {
        id = try row.value("id")
        tenantId = try row.value("tenantId")
        status = try row.value("status")
        request = try row.value("request")
        gitSource = try row.value("gitSource")
        triggerId = try row.value("triggerId")
        contextDigest = try row.value("contextDigest")
        contextSize = try row.value("contextSize")
        contextCompression = try row.value("contextCompression")
        idempotencyKey = try row.value("idempotencyKey")
        createdAt = try row.date("createdAt") ?? Date(timeIntervalSince1970: 0)
        startedAt = try row.date("startedAt")
        finishedAt = try row.date("finishedAt")
        builder = try row.value("builder")
        leaseOwner = try row.value("leaseOwner")
        leaseExpiresAt = try row.date("leaseExpiresAt")
        cancelRequested = try row.value("cancelRequested")
        reason = try row.value("reason")
        message = try row.value("message")
        pushedImages = try row.value("pushedImages")
        steps = try row.value("steps")
        attempt = try row.value("attempt")
        queueExpiresAt = try row.date("queueExpiresAt")
        runKey = try row.value("runKey")
        runPolicy = try row.value("runPolicy")
        interruptedDispatches = try row.value("interruptedDispatches")
    }
}

extension PostgresConnection {
    /// Creates the tenant's row if it does not exist yet (tokens, triggers and credentials may name a new tenant).
    func ensureTenant(_ tenant: TenantID, at date: Date, logger: Logger) async throws {
        try await query(
            """
            INSERT INTO tenant (id, createdAt) VALUES (\(tenant.rawValue), \(date.timeIntervalSince1970))
            ON CONFLICT (id) DO NOTHING
            """, logger: logger)
    }
}
