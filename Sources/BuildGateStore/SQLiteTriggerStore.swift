import BuildGateCore
import Foundation
import GRDB

/// Triggers and webhook deliveries in SQLite. Webhook secrets and clone credentials are sealed with `SecretBox`
/// (bound to the trigger id) and never leave this type except to verify a delivery or fetch a source.
package struct SQLiteTriggerStore: TriggerRepository {
    private let database: BuildGateDatabase
    private let box: SecretBox

    package init(database: BuildGateDatabase, box: SecretBox) {
        self.database = database
        self.box = box
    }

    struct Row: Codable, FetchableRecord, PersistableRecord {
        static let databaseTableName = "trigger"
        /// Dates are stored as Unix seconds (REAL), so SQL can compare them with the times it is given; GRDB reads
        /// both those and the text dates of rows written before.
        static func databaseDateEncodingStrategy(for column: String) -> DatabaseDateEncodingStrategy {
            .timeIntervalSince1970
        }
        var id: String
        var tenantId: String
        var forge: String
        var repository: String
        var settings: String
        var sealedSecret: Data
        var sealedCloneCredentials: Data?
        var sealedStatusToken: Data?
        var createdAt: Date

        func trigger() throws -> Trigger {
            guard let tenant = TenantID(tenantId) else {
                throw BuildGateError(.internalError, "trigger \(id) has a bad tenant")
            }
            return Trigger(
                id: id, tenant: tenant, forge: forge, repository: repository,
                settings: try JSONDecoder().decode(TriggerSettings.self, from: Data(settings.utf8)),
                createdAt: createdAt)
        }
    }

    package func createTrigger(
        _ trigger: Trigger, secret: String, cloneCredential: GitCredential?, statusToken: String?
    ) async throws {
        let row = Row(
            id: trigger.id, tenantId: trigger.tenant.rawValue, forge: trigger.forge, repository: trigger.repository,
            settings: String(decoding: try JSONEncoder.sorted.encode(trigger.settings), as: UTF8.self),
            sealedSecret: try box.seal(Data(secret.utf8), context: "trigger-secret:\(trigger.id)"),
            sealedCloneCredentials: try cloneCredential.map {
                try box.seal(try JSONEncoder().encode($0), context: "trigger-clone:\(trigger.id)")
            },
            sealedStatusToken: try statusToken.map {
                try box.seal(Data($0.utf8), context: "trigger-status:\(trigger.id)")
            },
            createdAt: trigger.createdAt)
        try await database.writer.write { db in
            try db.ensureTenant(trigger.tenant, at: trigger.createdAt)
            try row.insert(db)
        }
    }

    package func trigger(_ id: String) async throws -> Trigger? {
        try await database.writer.read { db in try Row.fetchOne(db, key: id)?.trigger() }
    }

    package func triggers(of tenant: TenantID) async throws -> [Trigger] {
        try await database.writer.read { db in
            try Row.filter(Column("tenantId") == tenant.rawValue).order(Column("id")).fetchAll(db).map {
                try $0.trigger()
            }
        }
    }

    package func deleteTrigger(_ id: String, tenant: TenantID) async throws -> Bool {
        try await database.writer.write { db in
            try db.execute(sql: "DELETE FROM trigger WHERE id = ? AND tenantId = ?", arguments: [id, tenant.rawValue])
            return db.changesCount == 1
        }
    }

    package func triggersWithSecrets(forge: String) async throws -> [(trigger: Trigger, secret: String)] {
        let rows = try await database.writer.read { db in try Row.filter(Column("forge") == forge).fetchAll(db) }
        return try rows.map { try ($0.trigger(), secret(of: $0)) }
    }

    package func triggerWithSecret(_ id: String) async throws -> (trigger: Trigger, secret: String)? {
        guard let row = try await database.writer.read({ db in try Row.fetchOne(db, key: id) }) else { return nil }
        return (try row.trigger(), try secret(of: row))
    }

    package func cloneCredential(forTrigger id: String) async throws -> GitCredential? {
        guard
            let sealed = try await database.writer.read({ db in try Row.fetchOne(db, key: id)?.sealedCloneCredentials })
        else { return nil }
        return try JSONDecoder().decode(GitCredential.self, from: try box.open(sealed, context: "trigger-clone:\(id)"))
    }

    package func statusToken(forTrigger id: String) async throws -> String? {
        guard let sealed = try await database.writer.read({ db in try Row.fetchOne(db, key: id)?.sealedStatusToken })
        else { return nil }
        return String(decoding: try box.open(sealed, context: "trigger-status:\(id)"), as: UTF8.self)
    }

    private func secret(of row: Row) throws -> String {
        String(decoding: try box.open(row.sealedSecret, context: "trigger-secret:\(row.id)"), as: UTF8.self)
    }

    package func recentDeliveries(forTrigger id: String, limit: Int) async throws -> [DeliveryRecord] {
        try await database.writer.read { db in
            try GRDB.Row.fetchAll(
                db,
                sql: """
                    SELECT deliveryId, receivedAt, statusCode, response FROM webhookDelivery
                    WHERE triggerId = ? ORDER BY receivedAt DESC LIMIT ?
                    """,
                arguments: [id, limit]
            ).map {
                DeliveryRecord(
                    deliveryID: $0["deliveryId"], receivedAt: Date(timeIntervalSince1970: $0["receivedAt"]),
                    statusCode: $0["statusCode"], response: $0["response"])
            }
        }
    }

    package func recordDelivery(
        triggerID: String, deliveryID: String, build: Build?, at date: Date,
        answer: @escaping @Sendable (DeliveryOutcome) throws -> (statusCode: Int, response: String)
    ) async throws -> RecordedDelivery {
        let record = try build.map(BuildRecord.init)
        // Deliveries arriving together are committed together (one fsync), each in its own savepoint. Every
        // statement is prepared once per connection (`cachedStatement`), not at every delivery.
        return try await database.batchedWrite { db in
            if let stored = try Row_Delivery.fetchOne(
                db.cachedStatement(
                    sql: "SELECT statusCode, response FROM webhookDelivery WHERE triggerId = ? AND deliveryId = ?"),
                arguments: [triggerID, deliveryID])
            {
                return RecordedDelivery(
                    statusCode: stored.statusCode, response: stored.response, isRedelivery: true, queued: nil)
            }
            var outcome = DeliveryOutcome.nothing
            if let build, let record {
                // The signature covers only the body: a captured push replayed under a new delivery id must not
                // build the same commit again while it is being built. Found through build_on_triggerId_commit
                // (migration 0010), whatever the queue's length.
                let active = try BuildRecord.fetchOne(
                    db.cachedStatement(
                        sql: """
                            SELECT * FROM build
                            WHERE triggerId = ? AND status IN \(BuildStatus.active.sqlList)
                              AND json_extract(gitSource, '$.ref') IS ? AND json_extract(gitSource, '$.commit') IS ?
                            ORDER BY id LIMIT 1
                            """),
                    arguments: [triggerID, build.gitSource?.ref, build.gitSource?.commit])
                if let active {
                    outcome = .alreadyActive(try active.build())
                } else {
                    try record.insert(db)
                    outcome = .queued(build)
                }
            }
            let (statusCode, response) = try answer(outcome)
            try db.cachedStatement(
                sql: """
                    INSERT INTO webhookDelivery (triggerId, deliveryId, receivedAt, statusCode, response)
                    VALUES (?, ?, ?, ?, ?)
                    """
            ).execute(arguments: [triggerID, deliveryID, date.timeIntervalSince1970, statusCode, response])
            // Deliveries are kept 8 days (forges redeliver within days); older ones go as new ones arrive.
            try db.cachedStatement(sql: "DELETE FROM webhookDelivery WHERE receivedAt < ?").execute(
                arguments: [date.addingTimeInterval(-8 * 86_400).timeIntervalSince1970])
            let queued: Build? = if case .queued(let build) = outcome { build } else { nil }
            return RecordedDelivery(statusCode: statusCode, response: response, isRedelivery: false, queued: queued)
        }
    }

    private struct Row_Delivery: Decodable, FetchableRecord {
        var statusCode: Int
        var response: String
    }
}
