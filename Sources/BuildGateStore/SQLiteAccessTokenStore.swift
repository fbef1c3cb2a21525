import BuildGateCore
import Foundation
import GRDB

/// API tokens and tenants in SQLite. Only sha256 of a token's secret is stored; lookups go by the token's id and
/// the secret is compared in constant time (`TokenSecret.matches`).
package struct SQLiteAccessTokenStore: AccessTokenRepository {
    private let database: BuildGateDatabase

    package init(database: BuildGateDatabase) {
        self.database = database
    }

    struct Row: Codable, FetchableRecord, PersistableRecord {
        static let databaseTableName = "accessToken"
        /// Dates are stored as Unix seconds (REAL), so SQL can compare them with the times it is given; GRDB reads
        /// both those and the text dates of rows written before.
        static func databaseDateEncodingStrategy(for column: String) -> DatabaseDateEncodingStrategy {
            .timeIntervalSince1970
        }
        var id: String
        var tenantId: String
        var name: String
        var secretHash: Data
        var scopes: String
        var buildId: String?
        var createdAt: Date
        var expiresAt: Date?
        var revokedAt: Date?
        var parentId: String?

        func token() throws -> AccessToken {
            guard let tenant = TenantID(tenantId) else {
                throw BuildGateError(.internalError, "token \(id) has a bad tenant")
            }
            let names = try JSONDecoder().decode([String].self, from: Data(scopes.utf8))
            return AccessToken(
                id: id, tenant: tenant, name: name, scopes: Set(names.compactMap(Scope.init(rawValue:))),
                buildID: buildId.flatMap(BuildID.init), createdAt: createdAt, expiresAt: expiresAt,
                revokedAt: revokedAt,
                parentID: parentId)
        }

        /// A new token's row (only sha256 of its secret) and the token string, shown once.
        static func new(
            tenant: TenantID, name: String, scopes: Set<Scope>, buildID: BuildID?, expiresAt: Date?,
            parentID: String?, at date: Date
        ) throws -> (token: String, row: Row) {
            let (token, id, hash) = TokenSecret.generate()
            let scopeNames = String(decoding: try JSONEncoder().encode(scopes.sorted().map(\.rawValue)), as: UTF8.self)
            return (
                token,
                Row(
                    id: id, tenantId: tenant.rawValue, name: name, secretHash: Data(hash), scopes: scopeNames,
                    buildId: buildID?.rawValue, createdAt: date, expiresAt: expiresAt, revokedAt: nil,
                    parentId: parentID)
            )
        }
    }

    package func createToken(
        tenant: TenantID, name: String, scopes: Set<Scope>, buildID: BuildID?, expiresAt: Date?, parentID: String?,
        at date: Date
    ) async throws -> (token: String, record: AccessToken) {
        let (token, row) = try Row.new(
            tenant: tenant, name: name, scopes: scopes, buildID: buildID, expiresAt: expiresAt, parentID: parentID,
            at: date)
        try await database.writer.write { db in
            try db.ensureTenant(tenant, at: date)
            try row.insert(db)
        }
        return (token, try row.token())
    }

    package func authenticate(_ token: String, at date: Date) async throws -> Principal? {
        guard let (id, secret) = TokenSecret.parse(token) else { return nil }
        let (row, parent) = try await database.writer.read { db in
            let row = try Row.fetchOne(db, key: id)
            return (row, try row?.parentId.flatMap { try Row.fetchOne(db, key: $0) })
        }
        return try Self.principal(row: row, parent: parent, secret: secret, at: date)
    }

    /// The principal a token row stands for at `date`, when `secret` is its secret and it (and the token it was
    /// derived from, `parent`) is neither revoked nor expired.
    static func principal(row: Row?, parent: Row?, secret: String, at date: Date) throws -> Principal? {
        guard let row, TokenSecret.matches(secret, hash: Array(row.secretHash)) else { return nil }
        let stored = try row.token()
        func valid(_ token: AccessToken) -> Bool {
            token.revokedAt == nil && (token.expiresAt.map { $0 > date } ?? true)
        }
        guard valid(stored) else { return nil }
        // A derived token lives no longer than its parent (a vanished parent counts as revoked).
        var expiresAt = stored.expiresAt
        if row.parentId != nil {
            guard let parent = try parent?.token(), valid(parent) else { return nil }
            expiresAt = [expiresAt, parent.expiresAt].compactMap { $0 }.min()
        }
        return Principal(
            tenant: stored.tenant, scopes: stored.scopes, buildID: stored.buildID, tokenID: stored.id,
            expiresAt: expiresAt)
    }

    package func tokens(of tenant: TenantID?) async throws -> [AccessToken] {
        try await database.writer.read { db in
            var request = Row.filter(sql: "buildId IS NULL").order(Column("createdAt"))
            if let tenant { request = request.filter(Column("tenantId") == tenant.rawValue) }
            return try request.fetchAll(db).map { try $0.token() }
        }
    }

    package func revokeToken(id: String, at date: Date) async throws -> Bool {
        try await database.writer.write { db in
            try db.execute(
                sql: "UPDATE accessToken SET revokedAt = coalesce(revokedAt, ?) WHERE id = ?",
                arguments: [date.timeIntervalSince1970, id])
            return db.changesCount == 1
        }
    }

    package func tokenCount() async throws -> Int {
        try await database.writer.read { db in try Row.fetchCount(db) }
    }
}
