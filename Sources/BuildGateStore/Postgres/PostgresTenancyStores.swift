import BuildGateCore
import Foundation
import PostgresNIO

/// API tokens in PostgreSQL; the same rows and rules as `SQLiteAccessTokenStore` (only sha256 of a secret stored).
package struct PostgresAccessTokenStore: AccessTokenRepository {
    private let database: BuildGatePostgres

    package init(database: BuildGatePostgres) {
        self.database = database
    }

    private typealias Row = SQLiteAccessTokenStore.Row

    package func createToken(
        tenant: TenantID, name: String, scopes: Set<Scope>, buildID: BuildID?, expiresAt: Date?, parentID: String?,
        at date: Date
    ) async throws -> (token: String, record: AccessToken) {
        let (token, row) = try Row.new(
            tenant: tenant, name: name, scopes: scopes, buildID: buildID, expiresAt: expiresAt, parentID: parentID,
            at: date)
        try await database.transaction { connection in
            try await connection.ensureTenant(tenant, at: date, logger: database.logger)
            try await connection.query(
                """
                INSERT INTO accessToken (id, tenantId, name, secretHash, scopes, buildId, createdAt, expiresAt, parentId)
                VALUES (\(row.id), \(row.tenantId), \(row.name), \(row.secretHash), \(row.scopes), \(row.buildId),
                    \(date.timeIntervalSince1970), \(expiresAt?.timeIntervalSince1970), \(parentID))
                """, logger: database.logger)
        }
        return (token, try row.token())
    }

    private func row(_ id: String) async throws -> Row? {
        try await database.rows("SELECT * FROM accessToken WHERE id = \(id)").first.map(Row.init(postgres:))
    }

    package func authenticate(_ token: String, at date: Date) async throws -> Principal? {
        guard let (id, secret) = TokenSecret.parse(token) else { return nil }
        let row = try await row(id)
        let parent = try await row?.parentId.asyncMap { try await self.row($0) } ?? nil
        return try SQLiteAccessTokenStore.principal(row: row, parent: parent, secret: secret, at: date)
    }

    package func tokens(of tenant: TenantID?) async throws -> [AccessToken] {
        try await database.rows(
            """
            SELECT * FROM accessToken WHERE buildId IS NULL
              AND (\(tenant?.rawValue)::text IS NULL OR tenantId = \(tenant?.rawValue))
            ORDER BY createdAt
            """
        ).map { try Row(postgres: $0).token() }
    }

    package func revokeToken(id: String, at date: Date) async throws -> Bool {
        try await !database.rows(
            """
            UPDATE accessToken SET revokedAt = coalesce(revokedAt, \(date.timeIntervalSince1970)) WHERE id = \(id)
            RETURNING id
            """
        ).isEmpty
    }

    package func tokenCount() async throws -> Int {
        try await database.rows("SELECT count(*) AS n FROM accessToken").first?.value("n") ?? 0
    }
}

extension SQLiteAccessTokenStore.Row {
    init(postgres row: PostgresRandomAccessRow) throws {
        id = try row.value("id")
        tenantId = try row.value("tenantId")
        name = try row.value("name")
        secretHash = try row.value("secretHash")
        scopes = try row.value("scopes")
        buildId = try row.value("buildId")
        createdAt = try row.date("createdAt") ?? Date(timeIntervalSince1970: 0)
        expiresAt = try row.date("expiresAt")
        revokedAt = try row.date("revokedAt")
        parentId = try row.value("parentId")
    }
}

extension Optional {
    fileprivate func asyncMap<T>(_ transform: (Wrapped) async throws -> T) async rethrows -> T? {
        guard let self else { return nil }
        return try await transform(self)
    }
}

/// Tenant limits in PostgreSQL's `tenant` table.
package struct PostgresTenantLimitsStore: TenantLimitsRepository {
    private let database: BuildGatePostgres

    package init(database: BuildGatePostgres) {
        self.database = database
    }

    package func limits(of tenant: TenantID) async throws -> TenantLimits {
        guard
            let row = try await database.rows(
                """
                SELECT maxRunningBuilds, maxQueuedBuilds, requestsPerMinute FROM tenant WHERE id = \(tenant.rawValue)
                """
            ).first
        else { return TenantLimits() }
        return TenantLimits(
            maxRunningBuilds: try row.value("maxRunningBuilds"), maxQueuedBuilds: try row.value("maxQueuedBuilds"),
            requestsPerMinute: try row.value("requestsPerMinute"))
    }

    package func setLimits(_ limits: TenantLimits, for tenant: TenantID, at date: Date) async throws {
        _ = try await database.rows(
            """
            INSERT INTO tenant (id, createdAt, maxRunningBuilds, maxQueuedBuilds, requestsPerMinute)
            VALUES (\(tenant.rawValue), \(date.timeIntervalSince1970), \(limits.maxRunningBuilds),
                \(limits.maxQueuedBuilds), \(limits.requestsPerMinute))
            ON CONFLICT (id) DO UPDATE SET maxRunningBuilds = excluded.maxRunningBuilds,
                maxQueuedBuilds = excluded.maxQueuedBuilds, requestsPerMinute = excluded.requestsPerMinute
            """)
    }

    package func queuedBuildCount(of tenant: TenantID, upTo limit: Int) async throws -> Int {
        // Kept by a trigger (migration 0004): one row, however long the queue.
        let queued: Int =
            try await database.rows("SELECT queuedBuilds FROM tenant WHERE id = \(tenant.rawValue)").first?.value(
                "queuedBuilds") ?? 0
        return min(limit, queued)
    }
}

/// Build secrets per tenant in PostgreSQL, sealed as in `SQLiteBuildSecretStore` (bound to `tenant/name`).
package struct PostgresBuildSecretStore: BuildSecretRepository {
    private let database: BuildGatePostgres
    private let box: SecretBox

    package init(database: BuildGatePostgres, box: SecretBox) {
        self.database = database
        self.box = box
    }

    private static func context(_ tenant: TenantID, _ name: String) -> String { "secret:\(tenant)/\(name)" }

    package func setSecret(_ value: SecretValue, tenant: TenantID, name: String, at date: Date) async throws {
        let sealed = try box.seal(Data(value.bytes), context: Self.context(tenant, name))
        try await database.transaction { connection in
            try await connection.ensureTenant(tenant, at: date, logger: database.logger)
            try await connection.query(
                """
                INSERT INTO buildSecret (tenantId, name, sealedValue, updatedAt)
                VALUES (\(tenant.rawValue), \(name), \(sealed), \(date.timeIntervalSince1970))
                ON CONFLICT (tenantId, name) DO UPDATE SET sealedValue = excluded.sealedValue,
                    updatedAt = excluded.updatedAt
                """, logger: database.logger)
        }
    }

    package func secrets(tenant: TenantID, names: [String]) async throws -> [String: SecretValue] {
        guard !names.isEmpty else { return [:] }
        var values: [String: SecretValue] = [:]
        for row in try await database.rows(
            """
            SELECT name, sealedValue FROM buildSecret WHERE tenantId = \(tenant.rawValue) AND name = ANY(\(names))
            """)
        {
            let name: String = try row.value("name")
            let sealed: Data = try row.value("sealedValue")
            values[name] = SecretValue(Array(try box.open(sealed, context: Self.context(tenant, name))))
        }
        return values
    }

    package func names(of tenant: TenantID) async throws -> [(name: String, updatedAt: Date)] {
        try await database.rows(
            "SELECT name, updatedAt FROM buildSecret WHERE tenantId = \(tenant.rawValue) ORDER BY name"
        ).map { (try $0.value("name"), try $0.date("updatedAt") ?? Date(timeIntervalSince1970: 0)) }
    }

    package func deleteSecret(tenant: TenantID, name: String) async throws -> Bool {
        try await !database.rows(
            "DELETE FROM buildSecret WHERE tenantId = \(tenant.rawValue) AND name = \(name) RETURNING name"
        ).isEmpty
    }
}

/// Registry credentials per tenant in PostgreSQL, sealed as in `SQLiteRegistryCredentialStore`.
package struct PostgresRegistryCredentialStore: RegistryCredentialRepository {
    private let database: BuildGatePostgres
    private let box: SecretBox

    package init(database: BuildGatePostgres, box: SecretBox) {
        self.database = database
        self.box = box
    }

    private static func context(_ tenant: TenantID, _ host: String) -> String { "registry:\(tenant)/\(host)" }

    package func setCredential(_ credential: RegistryCredential, tenant: TenantID, host: String, at date: Date)
        async throws
    {
        let sealed = try box.seal(
            try JSONEncoder().encode(SQLiteRegistryCredentialStore.Sealed(credential)),
            context: Self.context(tenant, host))
        try await database.transaction { connection in
            try await connection.ensureTenant(tenant, at: date, logger: database.logger)
            try await connection.query(
                """
                INSERT INTO registryCredential (tenantId, host, sealedCredential, updatedAt)
                VALUES (\(tenant.rawValue), \(host), \(sealed), \(date.timeIntervalSince1970))
                ON CONFLICT (tenantId, host) DO UPDATE SET sealedCredential = excluded.sealedCredential,
                    updatedAt = excluded.updatedAt
                """, logger: database.logger)
        }
    }

    package func credential(tenant: TenantID, host: String) async throws -> RegistryCredential? {
        guard
            let sealed: Data = try await database.rows(
                """
                SELECT sealedCredential FROM registryCredential WHERE tenantId = \(tenant.rawValue) AND host = \(host)
                """
            ).first?.value("sealedCredential")
        else { return nil }
        return try JSONDecoder().decode(
            SQLiteRegistryCredentialStore.Sealed.self, from: try box.open(sealed, context: Self.context(tenant, host))
        ).credential
    }

    package func hosts(of tenant: TenantID) async throws -> [(host: String, updatedAt: Date)] {
        try await database.rows(
            "SELECT host, updatedAt FROM registryCredential WHERE tenantId = \(tenant.rawValue) ORDER BY host"
        ).map { (try $0.value("host"), try $0.date("updatedAt") ?? Date(timeIntervalSince1970: 0)) }
    }

    package func deleteCredential(tenant: TenantID, host: String) async throws -> Bool {
        try await !database.rows(
            "DELETE FROM registryCredential WHERE tenantId = \(tenant.rawValue) AND host = \(host) RETURNING host"
        ).isEmpty
    }
}
