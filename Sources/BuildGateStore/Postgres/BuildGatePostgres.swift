import BuildGateCore
import Foundation
import Logging
import NIOSSL
import PostgresNIO
import ServiceLifecycle

/// The gateway's PostgreSQL database, shared by every replica: a connection pool (postgres-nio's `PostgresClient`)
/// and the migrator for `migrations/postgres`.
///
/// The pool runs from `init` until the service shuts down, so migrations run before the other services start and
/// settlements made during shutdown still reach the database; list it first in the service group, so it stops last.
package final class BuildGatePostgres: Service, Sendable {
    package let client: PostgresClient
    package let logger: Logger
    private let pool: Task<Void, Never>

    /// Connects to `url` (`postgres://user[:password]@host[:port]/database[?sslmode=…&sslrootcert=…]`) and applies
    /// the pending migrations of `migrationsDirectory`. `password`, when given, wins over the URL's.
    package init(url: String, password: String? = nil, migrationsDirectory: String, logger: Logger) async throws {
        var configuration = try Self.configuration(url: url, password: password)
        configuration.options.maximumConnections = 20
        configuration.options.connectionIdleTimeout = .seconds(60)
        let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        self.client = client
        self.logger = logger
        pool = Task { await client.run() }
        do {
            try await migrate(directory: migrationsDirectory)
        } catch {
            pool.cancel()
            throw error
        }
    }

    deinit { pool.cancel() }

    /// Closes the pool now (tests; a gateway closes it by shutting the service down).
    package func close() { pool.cancel() }

    package func run() async throws {
        try? await gracefulShutdown()
        // Whatever the other services still write during their shutdown went first (they stop before this one).
        pool.cancel()
    }

    /// Whether a write transaction can start and commit now: the readiness check.
    package func isWritable() async -> Bool {
        do {
            try await client.withTransaction(logger: logger) { connection in
                try await connection.query("SELECT 1 FROM schemaMigration LIMIT 1 FOR UPDATE", logger: logger)
            }
            return true
        } catch {
            return false
        }
    }

    /// One transaction on one pooled connection; rolled back if `body` throws. Errors thrown by `body` are rethrown
    /// as they are (not wrapped in postgres-nio's transaction error), so callers see their own `BuildGateError`s.
    package func transaction<Result: Sendable>(
        _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        do {
            return try await client.withConnection { connection in
                try await connection.withTransaction(logger: logger) { connection in try await body(connection) }
            }
        } catch let error as PostgresTransactionError {
            throw error.closureError ?? error
        }
    }

    /// The rows of one statement outside an explicit transaction (a read, or a single-statement write).
    package func rows(_ query: PostgresQuery) async throws -> [PostgresRandomAccessRow] {
        try await client.query(query, logger: logger).collect().map { $0.makeRandomAccess() }
    }

    // MARK: - Migrations

    /// The migrations applied, in order (their file names without `.sql`).
    package func appliedMigrations() async throws -> [String] {
        try await rows("SELECT name FROM schemaMigration ORDER BY name").map { try $0["name"].decode(String.self) }
    }

    /// Applies every `NNNN_name.sql` file of `directory` not applied yet, in numeric order, each in its own
    /// transaction. Gateways starting together take turns (a session advisory lock), so each file runs once.
    private func migrate(directory: String) async throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: directory)
            .filter { $0.hasSuffix(".sql") }
            .sorted { (Int($0.prefix(while: \.isNumber)) ?? .max) < (Int($1.prefix(while: \.isNumber)) ?? .max) }
        guard !files.isEmpty else { throw BuildGateError(.internalError, "no migrations found in \(directory)") }
        try await client.withConnection { connection in
            try await connection.query("SELECT pg_advisory_lock(\(Self.migrationLock))", logger: logger)
            do {
                try await connection.query(
                    """
                    CREATE TABLE IF NOT EXISTS schemaMigration (
                        name text PRIMARY KEY, appliedAt double precision NOT NULL)
                    """, logger: logger)
                let applied = Set(
                    try await connection.query("SELECT name FROM schemaMigration", logger: logger).collect().map {
                        try $0.decode(String.self)
                    })
                for file in files where !applied.contains(String(file.dropLast(".sql".count))) {
                    guard file.first?.isNumber == true else {
                        throw BuildGateError(
                            .internalError, "migration \(file) must start with its number, e.g. 0001_…")
                    }
                    let name = String(file.dropLast(".sql".count))
                    let sql = try String(contentsOfFile: "\(directory)/\(file)", encoding: .utf8)
                    try await connection.withTransaction(logger: logger) { connection in
                        for statement in SQLStatements.split(sql) {
                            try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                        }
                        try await connection.query(
                            "INSERT INTO schemaMigration (name, appliedAt) VALUES (\(name), \(Date().timeIntervalSince1970))",
                            logger: logger)
                    }
                    logger.info("applied migration", metadata: ["buildgate.migration": "\(name)"])
                }
            } catch {
                _ = try? await connection.query("SELECT pg_advisory_unlock(\(Self.migrationLock))", logger: logger)
                throw error
            }
            try await connection.query("SELECT pg_advisory_unlock(\(Self.migrationLock))", logger: logger)
        }
    }

    /// Advisory lock keys (one namespace for the gateway's locks).
    static let migrationLock: Int64 = 0x6275_696c_6467_0001
    /// The key `claim_build` (migration 0002) holds for the length of a claim: claims are serialized, so builder
    /// capacity, tenant running limits and `serial` run keys hold across gateways. (0x6275_696c_6467_0003 is held
    /// around numbering a build event, by `build_event` in 0001.)
    package static let claimLock: Int64 = 0x6275_696c_6467_0002

    // MARK: - Configuration

    /// postgres-nio's configuration for a `postgres://` URL. `sslmode` is libpq's: `disable`, `prefer` (the
    /// default), `require` (encrypted, not verified), `verify-full` (verified against `sslrootcert`, or the system's
    /// roots).
    package static func configuration(url: String, password: String?) throws -> PostgresClient.Configuration {
        guard let components = URLComponents(string: url),
            components.scheme == "postgres" || components.scheme == "postgresql",
            let host = components.host, !host.isEmpty
        else {
            throw BuildGateError(
                .invalidParameter, "the database URL must look like postgres://user@host:5432/database")
        }
        let query = Dictionary(
            (components.queryItems ?? []).map { ($0.name, $0.value ?? "") }, uniquingKeysWith: { _, last in last })
        var tls = TLSConfiguration.makeClientConfiguration()
        let mode: PostgresClient.Configuration.TLS
        switch query["sslmode"] ?? "prefer" {
        case "disable":
            mode = .disable
        case "prefer", "allow":
            tls.certificateVerification = .none
            mode = .prefer(tls)
        case "require":
            tls.certificateVerification = .none
            mode = .require(tls)
        case "verify-full", "verify-ca":
            if let root = query["sslrootcert"] { tls.trustRoots = .file(root) }
            tls.certificateVerification = query["sslmode"] == "verify-ca" ? .noHostnameVerification : .fullVerification
            mode = .require(tls)
        case let other:
            throw BuildGateError(
                .invalidParameter,
                "the database URL's sslmode=\(other) is not one of disable, prefer, require, verify-ca, verify-full")
        }
        let database = String(components.path.drop(while: { $0 == "/" }))
        return PostgresClient.Configuration(
            host: host, port: components.port ?? 5432,
            username: components.user?.removingPercentEncoding ?? "postgres",
            password: password ?? components.password?.removingPercentEncoding,
            database: database.isEmpty ? nil : database, tls: mode)
    }
}

/// A SQL file cut into its statements at top-level semicolons (not inside quotes, dollar quotes or comments): the
/// extended protocol runs one statement at a time.
enum SQLStatements {
    static func split(_ sql: String) -> [String] {
        var statements: [String] = []
        var current = ""
        var index = sql.startIndex
        func rest(_ prefix: String) -> Bool { sql[index...].hasPrefix(prefix) }
        while index < sql.endIndex {
            if rest("--") {
                let end = sql[index...].firstIndex(of: "\n") ?? sql.endIndex
                index = end
                continue
            }
            let character = sql[index]
            if character == "'" {
                let close = sql[sql.index(after: index)...].firstIndex(of: "'") ?? sql.index(before: sql.endIndex)
                current += sql[index...close]
                index = sql.index(after: close)
                continue
            }
            if character == "$", let tagEnd = sql[sql.index(after: index)...].firstIndex(of: "$"),
                sql[sql.index(after: index)..<tagEnd].allSatisfy({ $0.isLetter || $0 == "_" })
            {
                let tag = String(sql[index...tagEnd])
                let bodyStart = sql.index(after: tagEnd)
                let close = sql[bodyStart...].range(of: tag)?.upperBound ?? sql.endIndex
                current += sql[index..<close]
                index = close
                continue
            }
            if character == ";" {
                let statement = current.trimmingCharacters(in: .whitespacesAndNewlines)
                if !statement.isEmpty { statements.append(statement) }
                current = ""
            } else {
                current.append(character)
            }
            index = sql.index(after: index)
        }
        let statement = current.trimmingCharacters(in: .whitespacesAndNewlines)
        if !statement.isEmpty { statements.append(statement) }
        return statements
    }
}

extension PostgresRandomAccessRow {
    /// The column named as in the SQLite schema (camelCase); PostgreSQL folded it to lower case.
    package func value<Value: PostgresDecodable>(_ column: String, as type: Value.Type = Value.self) throws -> Value {
        try self[column.lowercased()].decode(Value.self)
    }

    /// A Unix-seconds column as a date.
    func date(_ column: String) throws -> Date? {
        try value(column, as: Double?.self).map(Date.init(timeIntervalSince1970:))
    }
}
