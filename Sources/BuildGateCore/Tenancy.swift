import Crypto
import Foundation

/// A tenant: lowercase letters, digits and dashes, 1 to 63 characters.
package struct TenantID: Hashable, Sendable, StringCodable {
    package let rawValue: String

    package init?(_ text: String) {
        guard (1...63).contains(text.count),
            text.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-") })
        else { return nil }
        rawValue = text
    }

    package var description: String { rawValue }
    package static let `default` = TenantID("default")!
}

/// What a token may do.
package enum Scope: String, Sendable, Codable, CaseIterable, Comparable {
    /// Create and cancel builds.
    case buildsWrite = "builds:write"
    /// Read builds and their logs.
    case buildsRead = "builds:read"
    /// Create, list and delete triggers.
    case triggersAdmin = "triggers:admin"
    /// Everything in the tenant, including registry credentials.
    case admin = "admin"
    /// Read one build's status and logs (log-read tokens only).
    case logsRead = "logs:read"

    package static func < (lhs: Scope, rhs: Scope) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// Who is calling: the tenant a valid token belongs to and what it may do.
package struct Principal: Sendable, Equatable {
    package var tenant: TenantID
    package var scopes: Set<Scope>
    /// For a log-read token: the only build it may see.
    package var buildID: BuildID?
    /// The id of the token presented (nil for principals made without one, in tests).
    package var tokenID: String?
    /// When the presented token (or a token it derives from) stops working; nil: never.
    package var expiresAt: Date?

    package init(
        tenant: TenantID, scopes: Set<Scope>, buildID: BuildID? = nil, tokenID: String? = nil, expiresAt: Date? = nil
    ) {
        self.tenant = tenant
        self.scopes = scopes
        self.buildID = buildID
        self.tokenID = tokenID
        self.expiresAt = expiresAt
    }

    /// Whether this principal may mint a log-read token for one of its builds: only a token with a build scope of
    /// its own, never a build-bound (log-read) token, so a leaked log link cannot be turned into lasting access.
    package var mayMintLogTokens: Bool { buildID == nil && allows(.buildsRead) }

    /// Whether this principal may use `scope`. `admin` implies every tenant scope; a log-read token may only
    /// read its own build.
    package func allows(_ scope: Scope, build: BuildID? = nil) -> Bool {
        if let only = buildID {
            return (scope == .buildsRead || scope == .logsRead) && build == only && scopes.contains(.logsRead)
        }
        return scopes.contains(scope) || (scopes.contains(.admin) && scope != .logsRead)
            || (scope == .logsRead && allows(.buildsRead))
    }
}

/// A token as stored and listed; the secret itself exists only in the string handed out once.
package struct AccessToken: Sendable, Equatable {
    package var id: String
    package var tenant: TenantID
    package var name: String
    package var scopes: Set<Scope>
    package var buildID: BuildID?
    package var createdAt: Date
    package var expiresAt: Date?
    package var revokedAt: Date?
    /// The token that minted this one (log-read tokens): this one stops working when that one does.
    package var parentID: String?

    package init(
        id: String, tenant: TenantID, name: String, scopes: Set<Scope>, buildID: BuildID? = nil, createdAt: Date,
        expiresAt: Date? = nil, revokedAt: Date? = nil, parentID: String? = nil
    ) {
        self.id = id
        self.tenant = tenant
        self.name = name
        self.scopes = scopes
        self.buildID = buildID
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.revokedAt = revokedAt
        self.parentID = parentID
    }
}

/// The secret part of tokens: `bgt_<id>_<secret>` with 12 random characters of id and 43 of secret (256 bits).
package enum TokenSecret {
    /// A new token string, its id, and the hash to store.
    package static func generate() -> (token: String, id: String, hash: [UInt8]) {
        let id = randomString(count: 12)
        let secret = randomString(count: 43)
        return ("bgt_\(id)_\(secret)", id, hash(secret))
    }

    /// Splits a presented token into id and secret, or nil if it does not have the shape.
    package static func parse(_ token: String) -> (id: String, secret: String)? {
        let parts = token.split(separator: "_", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "bgt", parts[1].count == 12, parts[2].count == 43 else { return nil }
        return (String(parts[1]), String(parts[2]))
    }

    package static func hash(_ secret: String) -> [UInt8] {
        Array(SHA256.hash(data: Data(secret.utf8)))
    }

    /// Whether a presented secret has the stored hash, compared in constant time (swift-crypto's digest equality).
    package static func matches(_ secret: String, hash stored: [UInt8]) -> Bool {
        SHA256.hash(data: Data(secret.utf8)) == stored
    }

    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")

    private static func randomString(count: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        return String((0..<count).map { _ in alphabet[Int(generator.next(upperBound: UInt32(alphabet.count)))] })
    }
}

/// Tokens and tenants. Every call is one durable transaction; safe from any task.
package protocol AccessTokenRepository: Sendable {
    /// Stores a new token (creating its tenant if needed) and returns it with the token string, shown only now.
    /// A token with a `parentID` stops working when its parent is revoked or expires.
    func createToken(
        tenant: TenantID, name: String, scopes: Set<Scope>, buildID: BuildID?, expiresAt: Date?, parentID: String?,
        at date: Date
    ) async throws -> (token: String, record: AccessToken)

    /// The principal of a presented token string, or nil when it (or its parent) is unknown, revoked, expired or
    /// malformed.
    func authenticate(_ token: String, at date: Date) async throws -> Principal?

    /// Tokens of `tenant` (all tenants when nil), without log-read tokens.
    func tokens(of tenant: TenantID?) async throws -> [AccessToken]

    /// Revokes a token by id; returns false when there is no such token.
    func revokeToken(id: String, at date: Date) async throws -> Bool

    /// How many tokens exist at all (for bootstrapping the first admin token).
    func tokenCount() async throws -> Int
}

extension AccessTokenRepository {
    /// A token minted by nobody (API tokens made by an operator).
    package func createToken(
        tenant: TenantID, name: String, scopes: Set<Scope>, buildID: BuildID?, expiresAt: Date?, at date: Date
    ) async throws -> (token: String, record: AccessToken) {
        try await createToken(
            tenant: tenant, name: name, scopes: scopes, buildID: buildID, expiresAt: expiresAt, parentID: nil, at: date)
    }
}

/// A tenant's limits; nil fields fall back to the gateway's defaults.
package struct TenantLimits: Sendable, Equatable {
    /// Builds of the tenant running at once (enforced when claiming).
    package var maxRunningBuilds: Int?
    /// Builds of the tenant waiting in the queue (429 at intake beyond).
    package var maxQueuedBuilds: Int?
    /// Authenticated API requests per minute (429 beyond).
    package var requestsPerMinute: Int?

    package init(maxRunningBuilds: Int? = nil, maxQueuedBuilds: Int? = nil, requestsPerMinute: Int? = nil) {
        self.maxRunningBuilds = maxRunningBuilds
        self.maxQueuedBuilds = maxQueuedBuilds
        self.requestsPerMinute = requestsPerMinute
    }

    /// These limits with every nil filled from `defaults`.
    package func over(_ defaults: TenantLimits) -> TenantLimits {
        TenantLimits(
            maxRunningBuilds: maxRunningBuilds ?? defaults.maxRunningBuilds,
            maxQueuedBuilds: maxQueuedBuilds ?? defaults.maxQueuedBuilds,
            requestsPerMinute: requestsPerMinute ?? defaults.requestsPerMinute)
    }
}

/// Per-tenant limits as stored (the `tenant` table).
package protocol TenantLimitsRepository: Sendable {
    func limits(of tenant: TenantID) async throws -> TenantLimits
    func setLimits(_ limits: TenantLimits, for tenant: TenantID, at date: Date) async throws
    /// The tenant's builds in `queued`, counted up to `limit` (the answer is at most `limit`): what intake asks at
    /// every new build costs no more than the tenant's limit, however long the queue.
    func queuedBuildCount(of tenant: TenantID, upTo limit: Int) async throws -> Int
}
