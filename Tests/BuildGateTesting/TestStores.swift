import BuildGateCore
import BuildGateStore
import Foundation
import Logging
import PostgresNIO
import Testing

/// The databases the store tests run on: one parameterised suite, every test on both.
package enum StoreEngine: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case postgres

    package var testDescription: String { rawValue }
}

/// Every store over one fresh database of `engine`: a SQLite file in a temporary directory, or a database created
/// for the test on the PostgreSQL `scripts/test-services` started (`BUILDGATE_TEST_POSTGRES_URL`) and dropped after.
package struct TestStores: Sendable {
    package let engine: StoreEngine
    package let builds: any BuildRepository & BuildQueue & BuildRetentionStore
    package let tokens: any AccessTokenRepository
    package let triggers: any TriggerRepository
    package let tenantLimits: any TenantLimitsRepository
    package let secrets: any BuildSecretRepository
    package let registryCredentials: any RegistryCredentialRepository
    package let events: any BuildEventFeed
    /// PostgreSQL's pool and LISTEN connections, for tests that exercise them (nil on SQLite).
    package let postgres: (database: BuildGatePostgres, notifications: PostgresNotifications)?
    /// A second set of stores on the same database: another gateway (PostgreSQL only; nil on SQLite).
    package let otherGateway: (@Sendable () async throws -> TestStores)?
    private let close: @Sendable () async -> Void

    /// The PostgreSQL server's URL with another database name.
    static func url(_ base: String, database: String) -> String {
        guard var components = URLComponents(string: base) else { return base }
        components.path = "/\(database)"
        return components.string ?? base
    }

    /// Runs `body` with fresh stores of `engine`, then removes the database. On PostgreSQL without a server: fails
    /// under CI, else records that the case was skipped and returns.
    package static func with(
        _ engine: StoreEngine, _ body: (TestStores) async throws -> Void
    ) async throws {
        guard let stores = try await open(engine) else { return }
        do {
            try await body(stores)
        } catch {
            await stores.close()
            throw error
        }
        await stores.close()
    }

    static let postgresURL = ProcessInfo.processInfo.environment["BUILDGATE_TEST_POSTGRES_URL"]

    package static func open(_ engine: StoreEngine) async throws -> TestStores? {
        let box = SecretBox(key: .init(size: .bits256))
        switch engine {
        case .sqlite:
            let directory = try TemporaryDirectory("store")
            let database = try BuildGateDatabase(
                path: "\(directory.path)/db.sqlite", migrationsDirectory: migrationsDirectory)
            return TestStores(
                engine: engine, builds: SQLiteBuildStore(database: database),
                tokens: SQLiteAccessTokenStore(database: database),
                triggers: SQLiteTriggerStore(database: database, box: box),
                tenantLimits: SQLiteTenantLimitsStore(database: database),
                secrets: SQLiteBuildSecretStore(database: database, box: box),
                registryCredentials: SQLiteRegistryCredentialStore(database: database, box: box),
                events: try SQLiteBuildEventFeed(database: database), postgres: nil, otherGateway: nil,
                close: { directory.remove() })
        case .postgres:
            guard let database = try await freshPostgresDatabase() else { return nil }
            return try await postgres(url: database.url, box: box, onClose: database.drop)
        }
    }

    /// A new, empty database on the test PostgreSQL server, and how to drop it. Nil (after recording an issue
    /// under CI, or printing why outside it) when no server was started.
    package static func freshPostgresDatabase() async throws
        -> (url: String, drop: @Sendable () async -> Void)?
    {
        guard let base = postgresURL else {
            if RealEngines.isCI {
                Issue.record("BUILDGATE_TEST_POSTGRES_URL is not set: CI runs these tests on PostgreSQL too")
            } else {
                print("skipped on PostgreSQL: no BUILDGATE_TEST_POSTGRES_URL (scripts/test-services starts one)")
            }
            return nil
        }
        let name = "t_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        try await administer(base, "CREATE DATABASE \(name)")
        return (
            url(base, database: name), { try? await administer(base, "DROP DATABASE IF EXISTS \(name) WITH (FORCE)") }
        )
    }

    /// Stores on an existing PostgreSQL database, as one gateway opens them.
    static func postgres(url: String, box: SecretBox, onClose: @escaping @Sendable () async -> Void) async throws
        -> TestStores
    {
        var logger = Logger(label: "test-postgres")
        logger.logLevel = .warning
        let database = try await BuildGatePostgres(
            url: url, migrationsDirectory: "\(migrationsDirectory)/postgres", logger: logger)
        let notifications = PostgresNotifications(database: database)
        let events = try await PostgresBuildEventFeed(database: database, notifications: notifications)
        let listening = Task { try await notifications.run() }
        return TestStores(
            engine: .postgres, builds: PostgresBuildStore(database: database),
            tokens: PostgresAccessTokenStore(database: database),
            triggers: PostgresTriggerStore(database: database, box: box),
            tenantLimits: PostgresTenantLimitsStore(database: database),
            secrets: PostgresBuildSecretStore(database: database, box: box),
            registryCredentials: PostgresRegistryCredentialStore(database: database, box: box),
            events: events, postgres: (database, notifications),
            otherGateway: { try await postgres(url: url, box: box, onClose: {}) },
            close: {
                listening.cancel()
                database.close()
                await onClose()
            })
    }

    /// Runs one statement on the server's `postgres` database (creating and dropping test databases).
    static func administer(_ base: String, _ sql: String) async throws {
        let configuration = try BuildGatePostgres.configuration(url: url(base, database: "postgres"), password: nil)
        let client = PostgresClient(configuration: configuration)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            defer { group.cancelAll() }
            try await client.query(PostgresQuery(unsafeSQL: sql))
        }
    }

    /// Ends what `open` started (the other gateways' stores a test opened are its own to close).
    package func closeAll() async { await close() }
}
