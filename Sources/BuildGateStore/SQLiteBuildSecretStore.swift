import BuildGateCore
import Foundation
import GRDB

/// Build secrets per tenant, sealed with `SecretBox` and bound to `tenant/name`, so a sealed value copied to
/// another row does not open.
package struct SQLiteBuildSecretStore: BuildSecretRepository {
    private let database: BuildGateDatabase
    private let box: SecretBox

    package init(database: BuildGateDatabase, box: SecretBox) {
        self.database = database
        self.box = box
    }

    private static func context(_ tenant: TenantID, _ name: String) -> String { "secret:\(tenant)/\(name)" }

    package func setSecret(_ value: SecretValue, tenant: TenantID, name: String, at date: Date) async throws {
        let sealed = try box.seal(Data(value.bytes), context: Self.context(tenant, name))
        try await database.writer.write { db in
            try db.ensureTenant(tenant, at: date)
            try db.execute(
                sql: """
                    INSERT INTO buildSecret (tenantId, name, sealedValue, updatedAt) VALUES (?, ?, ?, ?)
                    ON CONFLICT (tenantId, name) DO UPDATE SET sealedValue = excluded.sealedValue,
                        updatedAt = excluded.updatedAt
                    """,
                arguments: [tenant.rawValue, name, sealed, date.timeIntervalSince1970])
        }
    }

    package func secrets(tenant: TenantID, names: [String]) async throws -> [String: SecretValue] {
        guard !names.isEmpty else { return [:] }
        let rows = try await database.writer.read { db in
            try Row.fetchAll(
                db,
                sql:
                    "SELECT name, sealedValue FROM buildSecret WHERE tenantId = ? AND name IN (SELECT value FROM json_each(?))",
                arguments: [tenant.rawValue, String(decoding: try JSONEncoder().encode(names), as: UTF8.self)])
        }
        var values: [String: SecretValue] = [:]
        for row in rows {
            let name: String = row["name"]
            values[name] = SecretValue(Array(try box.open(row["sealedValue"], context: Self.context(tenant, name))))
        }
        return values
    }

    package func names(of tenant: TenantID) async throws -> [(name: String, updatedAt: Date)] {
        try await database.writer.read { db in
            try Row.fetchAll(
                db, sql: "SELECT name, updatedAt FROM buildSecret WHERE tenantId = ? ORDER BY name",
                arguments: [tenant.rawValue]
            ).map { ($0["name"], Date(timeIntervalSince1970: $0["updatedAt"])) }
        }
    }

    package func deleteSecret(tenant: TenantID, name: String) async throws -> Bool {
        try await database.writer.write { db in
            try db.execute(
                sql: "DELETE FROM buildSecret WHERE tenantId = ? AND name = ?", arguments: [tenant.rawValue, name])
            return db.changesCount == 1
        }
    }
}
