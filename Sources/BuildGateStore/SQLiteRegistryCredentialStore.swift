import BuildGateCore
import Foundation
import GRDB

/// Registry credentials per tenant, sealed with `SecretBox` and bound to `tenant/host`.
package struct SQLiteRegistryCredentialStore: RegistryCredentialRepository {
    private let database: BuildGateDatabase
    private let box: SecretBox

    package init(database: BuildGateDatabase, box: SecretBox) {
        self.database = database
        self.box = box
    }

    /// What a credential's sealed bytes hold (JSON).
    struct Sealed: Codable {
        var username: String
        var password: String

        init(_ credential: RegistryCredential) {
            username = credential.username
            password = credential.password
        }

        var credential: RegistryCredential { RegistryCredential(username: username, password: password) }
    }

    private static func context(_ tenant: TenantID, _ host: String) -> String { "registry:\(tenant)/\(host)" }

    package func setCredential(_ credential: RegistryCredential, tenant: TenantID, host: String, at date: Date)
        async throws
    {
        let sealed = try box.seal(
            try JSONEncoder().encode(Sealed(credential)),
            context: Self.context(tenant, host))
        try await database.writer.write { db in
            try db.ensureTenant(tenant, at: date)
            try db.execute(
                sql: """
                    INSERT INTO registryCredential (tenantId, host, sealedCredential, updatedAt) VALUES (?, ?, ?, ?)
                    ON CONFLICT (tenantId, host) DO UPDATE SET sealedCredential = excluded.sealedCredential,
                        updatedAt = excluded.updatedAt
                    """,
                arguments: [tenant.rawValue, host, sealed, date.timeIntervalSince1970])
        }
    }

    package func credential(tenant: TenantID, host: String) async throws -> RegistryCredential? {
        guard
            let sealed = try await database.writer.read({ db in
                try Data.fetchOne(
                    db, sql: "SELECT sealedCredential FROM registryCredential WHERE tenantId = ? AND host = ?",
                    arguments: [tenant.rawValue, host])
            })
        else { return nil }
        return try JSONDecoder().decode(
            Sealed.self, from: try box.open(sealed, context: Self.context(tenant, host))
        ).credential
    }

    package func hosts(of tenant: TenantID) async throws -> [(host: String, updatedAt: Date)] {
        try await database.writer.read { db in
            try Row.fetchAll(
                db, sql: "SELECT host, updatedAt FROM registryCredential WHERE tenantId = ? ORDER BY host",
                arguments: [tenant.rawValue]
            ).map { ($0["host"], Date(timeIntervalSince1970: $0["updatedAt"])) }
        }
    }

    package func deleteCredential(tenant: TenantID, host: String) async throws -> Bool {
        try await database.writer.write { db in
            try db.execute(
                sql: "DELETE FROM registryCredential WHERE tenantId = ? AND host = ?",
                arguments: [tenant.rawValue, host])
            return db.changesCount == 1
        }
    }
}
