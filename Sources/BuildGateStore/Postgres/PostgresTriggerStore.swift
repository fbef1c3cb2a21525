import BuildGateCore
import Foundation
import PostgresNIO

/// Triggers and webhook deliveries in PostgreSQL; secrets sealed as in `SQLiteTriggerStore`.
///
/// A delivery is recorded under a transaction lock on its trigger, so the same delivery received by two gateways at
/// once builds once: the second finds the first's row (the `(triggerId, deliveryId)` key) and answers as a
/// redelivery.
package struct PostgresTriggerStore: TriggerRepository {
    private let database: BuildGatePostgres
    private let box: SecretBox

    package init(database: BuildGatePostgres, box: SecretBox) {
        self.database = database
        self.box = box
    }

    private typealias Row = SQLiteTriggerStore.Row

    package func createTrigger(
        _ trigger: Trigger, secret: String, cloneCredential: GitCredential?, statusToken: String?
    ) async throws {
        let settings = String(decoding: try JSONEncoder.sorted.encode(trigger.settings), as: UTF8.self)
        let sealedSecret = try box.seal(Data(secret.utf8), context: "trigger-secret:\(trigger.id)")
        let sealedClone = try cloneCredential.map {
            try box.seal(try JSONEncoder().encode($0), context: "trigger-clone:\(trigger.id)")
        }
        let sealedStatus = try statusToken.map {
            try box.seal(Data($0.utf8), context: "trigger-status:\(trigger.id)")
        }
        try await database.transaction { connection in
            try await connection.ensureTenant(trigger.tenant, at: trigger.createdAt, logger: database.logger)
            try await connection.query(
                """
                INSERT INTO trigger (id, tenantId, forge, repository, settings, sealedSecret, sealedCloneCredentials,
                    sealedStatusToken, createdAt)
                VALUES (\(trigger.id), \(trigger.tenant.rawValue), \(trigger.forge), \(trigger.repository), \(settings),
                    \(sealedSecret), \(sealedClone), \(sealedStatus), \(trigger.createdAt.timeIntervalSince1970))
                """, logger: database.logger)
        }
    }

    private func rows(_ query: PostgresQuery) async throws -> [Row] {
        try await database.rows(query).map(Row.init(postgres:))
    }

    package func trigger(_ id: String) async throws -> Trigger? {
        try await rows("SELECT * FROM trigger WHERE id = \(id)").first?.trigger()
    }

    package func triggers(of tenant: TenantID) async throws -> [Trigger] {
        try await rows("SELECT * FROM trigger WHERE tenantId = \(tenant.rawValue) ORDER BY id").map { try $0.trigger() }
    }

    package func deleteTrigger(_ id: String, tenant: TenantID) async throws -> Bool {
        try await !database.rows(
            "DELETE FROM trigger WHERE id = \(id) AND tenantId = \(tenant.rawValue) RETURNING id"
        ).isEmpty
    }

    package func triggersWithSecrets(forge: String) async throws -> [(trigger: Trigger, secret: String)] {
        try await rows("SELECT * FROM trigger WHERE forge = \(forge)").map { try ($0.trigger(), secret(of: $0)) }
    }

    package func triggerWithSecret(_ id: String) async throws -> (trigger: Trigger, secret: String)? {
        guard let row = try await rows("SELECT * FROM trigger WHERE id = \(id)").first else { return nil }
        return (try row.trigger(), try secret(of: row))
    }

    package func cloneCredential(forTrigger id: String) async throws -> GitCredential? {
        guard let sealed = try await rows("SELECT * FROM trigger WHERE id = \(id)").first?.sealedCloneCredentials
        else { return nil }
        return try JSONDecoder().decode(GitCredential.self, from: try box.open(sealed, context: "trigger-clone:\(id)"))
    }

    package func statusToken(forTrigger id: String) async throws -> String? {
        guard let sealed = try await rows("SELECT * FROM trigger WHERE id = \(id)").first?.sealedStatusToken
        else { return nil }
        return String(decoding: try box.open(sealed, context: "trigger-status:\(id)"), as: UTF8.self)
    }

    private func secret(of row: Row) throws -> String {
        String(decoding: try box.open(row.sealedSecret, context: "trigger-secret:\(row.id)"), as: UTF8.self)
    }

    package func recentDeliveries(forTrigger id: String, limit: Int) async throws -> [DeliveryRecord] {
        try await database.rows(
            """
            SELECT deliveryId, receivedAt, statusCode, response FROM webhookDelivery
            WHERE triggerId = \(id) ORDER BY receivedAt DESC LIMIT \(limit)
            """
        ).map {
            DeliveryRecord(
                deliveryID: try $0.value("deliveryId"),
                receivedAt: try $0.date("receivedAt") ?? Date(timeIntervalSince1970: 0),
                statusCode: try $0.value("statusCode"), response: try $0.value("response"))
        }
    }

    package func recordDelivery(
        triggerID: String, deliveryID: String, build: Build?, at date: Date,
        answer: @escaping @Sendable (DeliveryOutcome) throws -> (statusCode: Int, response: String)
    ) async throws -> RecordedDelivery {
        let record = try build.map(BuildRecord.init)
        let logger = database.logger
        return try await database.transaction { connection in
            try await connection.query(
                "SELECT pg_advisory_xact_lock(hashtext(\(triggerID)))", logger: logger)
            if let stored = try await connection.query(
                """
                SELECT statusCode, response FROM webhookDelivery
                WHERE triggerId = \(triggerID) AND deliveryId = \(deliveryID)
                """, logger: logger
            ).collect().first?.makeRandomAccess() {
                return RecordedDelivery(
                    statusCode: try stored.value("statusCode"), response: try stored.value("response"),
                    isRedelivery: true, queued: nil)
            }
            var outcome = DeliveryOutcome.nothing
            if let build, let record {
                // The signature covers only the body: a captured push replayed under a new delivery id must not
                // build the same commit again while it is being built.
                // Found through build_on_triggerId_commit (migration 0003), whatever the queue's length.
                let commit = build.gitSource?.commit
                let active = try await connection.query(
                    """
                    SELECT * FROM build
                    WHERE triggerId = \(triggerID) AND status IN \(unescaped: BuildStatus.active.sqlList)
                      AND (gitSource::jsonb ->> 'ref') IS NOT DISTINCT FROM \(build.gitSource?.ref)
                      AND ((gitSource::jsonb ->> 'commit') = \(commit) OR (\(commit)::text IS NULL
                        AND (gitSource::jsonb ->> 'commit') IS NULL))
                    ORDER BY id LIMIT 1
                    """, logger: logger
                ).collect().first
                if let active {
                    outcome = .alreadyActive(try BuildRecord(postgres: active.makeRandomAccess()).build())
                } else {
                    try await connection.query(
                        PostgresQuery(unsafeSQL: BuildRecord.insertSQL, binds: record.postgresBindings),
                        logger: logger)
                    outcome = .queued(build)
                }
            }
            let (statusCode, response) = try answer(outcome)
            try await connection.query(
                """
                INSERT INTO webhookDelivery (triggerId, deliveryId, receivedAt, statusCode, response)
                VALUES (\(triggerID), \(deliveryID), \(date.timeIntervalSince1970), \(statusCode), \(response))
                """, logger: logger)
            // Deliveries are kept 8 days (forges redeliver within days); older ones go as new ones arrive.
            try await connection.query(
                "DELETE FROM webhookDelivery WHERE receivedAt < \(date.addingTimeInterval(-8 * 86_400).timeIntervalSince1970)",
                logger: logger)
            let queued: Build? = if case .queued(let build) = outcome { build } else { nil }
            return RecordedDelivery(statusCode: statusCode, response: response, isRedelivery: false, queued: queued)
        }
    }
}

extension SQLiteTriggerStore.Row {
    init(postgres row: PostgresRandomAccessRow) throws {
        id = try row.value("id")
        tenantId = try row.value("tenantId")
        forge = try row.value("forge")
        repository = try row.value("repository")
        settings = try row.value("settings")
        sealedSecret = try row.value("sealedSecret")
        sealedCloneCredentials = try row.value("sealedCloneCredentials")
        sealedStatusToken = try row.value("sealedStatusToken")
        createdAt = try row.date("createdAt") ?? Date(timeIntervalSince1970: 0)
    }
}
