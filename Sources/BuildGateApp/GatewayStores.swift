import BuildGateCore
import BuildGateStore
import Foundation
import Logging
import ServiceLifecycle

/// The gateway's stores over one database: SQLite in the data directory (one gateway), or PostgreSQL shared by
/// several (`databaseURL`). Everything above them sees only the Core ports.
struct GatewayStores {
    typealias Builds = BuildRepository & BuildQueue & BuildRetentionStore

    let builds: any Builds
    let tenantLimits: any TenantLimitsRepository
    let tokens: any AccessTokenRepository
    let triggers: any TriggerRepository
    let registryCredentials: any RegistryCredentialRepository
    let secrets: any BuildSecretRepository
    let events: any BuildEventFeed
    /// Whether a write transaction can start now (readiness).
    let isWritable: @Sendable () async -> Bool
    /// Services the stores need running (PostgreSQL's pool and its LISTEN connections); first in the group, so they
    /// stop last.
    let services: [any Service]
    /// Connects a log store and a dispatcher to the other gateways: log appends and queued builds announced
    /// elsewhere reach them here. Nothing to do with SQLite (one gateway).
    let connect: @Sendable (FileBuildLogStore, BuildDispatcher) -> Void

    /// Opens the configured database, migrated. `box` seals secrets at rest; without one, sealed values are not
    /// readable through these stores.
    static func open(_ configuration: BuildGateConfiguration, box: SecretBox?, logger: Logger) async throws
        -> GatewayStores
    {
        try FileManager.default.createDirectory(
            atPath: configuration.dataDirectory, withIntermediateDirectories: true,
            attributes: [.posixPermissions: 0o700])
        let maxRunning = configuration.limits.tenantDefaults.maxRunningBuilds
        // Commands that never open a sealed value (tokens, limits) need no key: one that seals nothing they read.
        let box = box ?? SecretBox.throwaway()
        guard let url = configuration.databaseURL else {
            let database = try openDatabase(configuration)
            return GatewayStores(
                builds: SQLiteBuildStore(database: database, defaultMaxRunningPerTenant: maxRunning),
                tenantLimits: SQLiteTenantLimitsStore(database: database),
                tokens: SQLiteAccessTokenStore(database: database),
                triggers: SQLiteTriggerStore(database: database, box: box),
                registryCredentials: SQLiteRegistryCredentialStore(database: database, box: box),
                secrets: SQLiteBuildSecretStore(database: database, box: box),
                events: try SQLiteBuildEventFeed(database: database),
                isWritable: { await database.isWritable() },
                services: [],
                connect: { _, _ in })
        }
        let database = try await BuildGatePostgres(
            url: url, password: try databasePassword(configuration),
            migrationsDirectory: "\(configuration.migrationsDirectory)/postgres",
            logger: logger)
        let notifications = PostgresNotifications(database: database)
        return GatewayStores(
            builds: PostgresBuildStore(database: database, defaultMaxRunningPerTenant: maxRunning),
            tenantLimits: PostgresTenantLimitsStore(database: database),
            tokens: PostgresAccessTokenStore(database: database),
            triggers: PostgresTriggerStore(database: database, box: box),
            registryCredentials: PostgresRegistryCredentialStore(database: database, box: box),
            secrets: PostgresBuildSecretStore(database: database, box: box),
            events: try await PostgresBuildEventFeed(database: database, notifications: notifications),
            isWritable: { await database.isWritable() },
            services: [database, notifications],
            connect: { logs, dispatcher in
                notifications.shareLogs(of: logs)
                // A build queued, requeued or settled by any gateway may let this one claim.
                notifications.subscribe(PostgresNotifications.events) { payload in
                    let status = payload?.split(separator: " ").last
                    if status != "starting" && status != "running" { dispatcher.wake() }
                }
            })
    }
}

extension SecretBox {
    /// A box with a random key, for stores whose sealed values are never read.
    fileprivate static func throwaway() -> SecretBox {
        var generator = SystemRandomNumberGenerator()
        let key = Data((0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) })
        // 32 random bytes always make a key.
        return SecretBox(base64Key: key.base64EncodedString())!
    }
}
