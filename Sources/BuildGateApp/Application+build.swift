import AsyncHTTPClient
import BuildGateAPI
import BuildGateCore
import BuildGateDashboard
import BuildGateStore
import BuildKitDriver
import BuildNotifications
import EngineAPIDriver
import Foundation
import GitCLI
import Hummingbird
import KubernetesDiscovery
import Logging
import Metrics
import Prometheus
import ServiceLifecycle

/// Builds the whole gateway from its configuration: stores, drivers, dispatcher, reaper, HTTP server.
/// The executable and the tests call this same function. Nothing else reads the environment.
package func buildApplication(
    _ configuration: BuildGateConfiguration,
    logger: Logger,
    onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
) async throws -> some ApplicationProtocol {
    let dataDirectory = configuration.dataDirectory
    // Configuration that can be refused is read before anything is created (the database, the admin token).
    let kubernetes = try kubernetesCredentials(configuration)
    try FileManager.default.createDirectory(
        atPath: dataDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    let box = try loadSecretBox(configuration)
    let stores = try await GatewayStores.open(configuration, box: box, logger: logger)
    let store = stores.builds
    let tenantLimits = stores.tenantLimits
    let tokens = stores.tokens
    let triggers = stores.triggers
    let registryCredentials = stores.registryCredentials
    let secrets = stores.secrets
    try await bootstrapAdminToken(tokens, dataDirectory: dataDirectory)
    let logs = try FileBuildLogStore(dataDirectory: dataDirectory)
    let contexts = try FileContextStore(dataDirectory: dataDirectory)
    // Shared with other gateways, an upload is another's while it is being written (a stalled one is cut off
    // within minutes by the request deadlines).
    let shared = configuration.databaseURL != nil
    for leftover in contexts.leftoverUploads(notModifiedSince: shared ? Date() - 15 * 60 : nil) {
        contexts.discard(upload: leftover)
    }
    let credentials = try configuration.registryAuthFile.map(RegistryCredentials.init(file:)) ?? RegistryCredentials()

    var services: [any Service] = stores.services
    let pool = BuilderPool()
    var endpoints = configuration.builders
    if endpoints.isEmpty && configuration.pools.isEmpty {
        let podman = PodmanServiceSupervisor(
            dataDirectory: dataDirectory, executable: configuration.podmanExecutable,
            arguments: configuration.podmanArguments, insecureRegistries: configuration.insecureRegistries,
            logger: logger)
        try await podman.start()
        services.append(podman)
        endpoints = [BuilderEndpoint(name: "podman-embedded", engine: .podman, address: .unix(path: podman.socketPath))]
    }

    var driverConfiguration = EngineAPIDriver.Configuration()
    driverConfiguration.insecureRegistries = configuration.insecureRegistries
    let engineDriver = EngineAPIDriver(httpClient: .shared, configuration: driverConfiguration, logger: logger)
    // Work directories (BuildKit workspaces, git clones) are this process's own: per host when shared.
    let workDirectory = shared ? "\(dataDirectory)/tmp/\(ProcessInfo.processInfo.hostName)" : "\(dataDirectory)/tmp"
    try FileManager.default.createDirectory(
        atPath: workDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    var buildKitConfiguration = BuildKitDriver.Configuration(workDirectory: workDirectory)
    buildKitConfiguration.buildctl = configuration.buildctlExecutable
    buildKitConfiguration.insecureRegistries = configuration.insecureRegistries
    let buildKitDriver = BuildKitDriver(configuration: buildKitConfiguration, logger: logger)
    buildKitDriver.removeLeftoverWorkspaces()

    let drivers: [BuilderEngine: any BuilderDriver] = [
        .podman: engineDriver, .docker: engineDriver, .buildkit: buildKitDriver,
    ]
    pool.update(endpoints, from: "static")
    services += discoveryServices(configuration, kubernetes: kubernetes, pool: pool, logger: logger)
    // Its first round starts with the services; builds wait (saying why) until a builder answers, and the
    // dispatcher looks again as soon as one does. A dead builder never delays start-up.
    services.append(BuilderHealthMonitor(pool: pool, drivers: drivers, logger: logger))

    let notifier = BuildStatusNotifier(
        triggers: triggers, httpClient: .shared, publicURL: configuration.publicURL, logger: logger)
    services.append(notifier)

    // Every terminal status of this process goes through this one settler (dispatcher, reaper, API).
    let settler = BuildSettler(store: store, logs: logs, observer: notifier, logger: logger)
    var dispatcherConfiguration = BuildDispatcher.Configuration()
    dispatcherConfiguration.leaseDuration = configuration.leaseDuration
    dispatcherConfiguration.maxAttempts = configuration.maxAttempts
    dispatcherConfiguration.shutdownGracePeriod = configuration.shutdownGrace
    let dispatcher = BuildDispatcher(
        queue: store, logs: logs, contexts: contexts, pool: pool,
        drivers: drivers,
        // A tenant's own credentials first; the operator's file serves the default tenant only.
        credentials: { tenant, host in
            if let own = try? await registryCredentials.credential(tenant: tenant, host: host) { return own }
            return tenant == .default ? credentials.byHost[host] : nil
        },
        secrets: { tenant, names in try await secrets.secrets(tenant: tenant, names: names) },
        sourceFetcher: GitCLISourceFetcher(
            contexts: contexts, workDirectory: workDirectory,
            configuration: gitConfiguration(configuration)),
        cloneCredentials: { build in
            guard let trigger = build.triggerID else { return nil }
            return try? await triggers.cloneCredential(forTrigger: trigger)
        },
        observer: notifier, settler: settler,
        configuration: dispatcherConfiguration, logger: logger)
    stores.connect(logs, dispatcher)
    let sweeper = RetentionSweeper(
        store: store, contexts: contexts, logs: logs, policy: configuration.retention, logger: logger)
    services.append(sweeper)
    let reaper = LeaseReaper(
        queue: store, logs: logs, interval: configuration.leaseDuration / 3, queueReasons: dispatcher.queueReasons,
        observer: notifier, onRequeue: dispatcher.wake, settler: settler,
        maxAttempts: dispatcherConfiguration.maxAttempts, retryQueueTTL: dispatcherConfiguration.retryQueueTTL,
        logger: logger)
    try await reaper.settleExpiredLeases(now: Date())
    try await reaper.expireQueuedBuilds(now: Date())
    services.append(contentsOf: [dispatcher, reaper] as [any Service])

    let sessions = SessionCookie(box: box, secure: configuration.publicURL?.hasPrefix("https://") == true)
    let router = buildRouter(
        context: BuildGateRequestContext.self,
        dependencies: BuildGateAPIDependencies(
            repository: store, logs: logs, contexts: contexts, tokens: tokens, triggers: triggers,
            registryCredentials: registryCredentials, tenantLimits: tenantLimits, secrets: secrets,
            pool: pool, queueReasons: dispatcher.queueReasons, events: stores.events,
            sessions: sessions,
            readiness: {
                var failing: [String] = []
                if await !stores.isWritable() { failing.append("the database is not writable") }
                // The same floor as uploads: a gateway that would refuse uploads with 507 is not ready.
                let floor = configuration.limits.minFreeDiskBytes
                if let free = freeBytes(dataDirectory), free < floor {
                    failing.append("the data directory has \(free >> 20) MiB free (under \(floor >> 20) MiB)")
                }
                if !pool.members.contains(where: { $0.isAvailable }) { failing.append("no builder is healthy") }
                return failing
            },
            freeDiskBytes: { freeBytes(dataDirectory) },
            metrics: { metricsRegistry.emitToString() },
            observer: notifier,
            settler: settler,
            onQueued: dispatcher.wake),
        limits: configuration.limits,
        logger: logger)

    // The dashboard calls the API in process, through a responder made before its own routes are added.
    try Dashboard(api: router.buildResponder(), sessions: sessions).addRoutes(to: router.group("ui"))

    for endpoint in endpoints {
        logger.info(
            "builder",
            metadata: [
                "buildgate.builder.endpoint": "\(endpoint)", "buildgate.builder.capacity": "\(endpoint.capacity)",
            ])
    }
    return Application(
        router: router,
        server: buildGateHTTPServer(timeouts: configuration.requestTimeouts),
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "buildgate"),
        services: services,
        onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? configuration.port) },
        logger: logger)
}

/// The Prometheus registry behind swift-metrics, for `GET /metrics`.
package let metricsRegistry = PrometheusCollectorRegistry()

/// Routes swift-metrics to `metricsRegistry`. Call once per process (`buildgate serve` does; tests do it once).
package func bootstrapMetrics() {
    var factory = PrometheusMetricsFactory(registry: metricsRegistry)
    factory.defaultDurationHistogramBuckets = [
        .milliseconds(100), .milliseconds(500), .seconds(1), .seconds(5), .seconds(15), .seconds(30), .seconds(60),
        .seconds(300), .seconds(900), .seconds(1800), .seconds(3600),
    ]
    MetricsSystem.bootstrap(factory)
}

/// Free bytes for unprivileged users on the file system holding `path`.
func freeBytes(_ path: String) -> Int64? {
    var stats = statvfs()
    guard statvfs(path, &stats) == 0 else { return nil }
    return Int64(stats.f_bavail) * Int64(stats.f_frsize)
}

/// The Kubernetes API credentials for `kubernetes:` pools: the kubeconfig given, else the pod's service account;
/// nil when no pool needs them.
func kubernetesCredentials(_ configuration: BuildGateConfiguration) throws -> KubernetesCredentials? {
    guard configuration.pools.contains(where: { if case .kubernetes = $0 { true } else { false } }) else { return nil }
    if let file = configuration.kubeconfig { return try KubernetesCredentials.kubeconfig(file: file) }
    guard let credentials = KubernetesCredentials.inCluster() else {
        throw BuildGateError(
            .invalidParameter,
            "a kubernetes: pool needs the pod's service account (KUBERNETES_SERVICE_HOST) or --kubeconfig FILE")
    }
    return credentials
}

/// A discovery service per configured pool. DNS pools resolve once here, so their builders are probed before the
/// first claim; Kubernetes pools list on start.
func discoveryServices(
    _ configuration: BuildGateConfiguration, kubernetes: KubernetesCredentials?, pool: BuilderPool, logger: Logger
) -> [any Service] {
    configuration.pools.compactMap { spec -> (any Service)? in
        switch spec {
        case .dns(let name, let template):
            let discovery = DNSBuilderDiscovery(name: name, template: template, pool: pool, logger: logger)
            discovery.resolveOnce()
            return discovery
        case .kubernetes(let namespace, let labelSelector, let template):
            // `kubernetesCredentials` found them, or refused to start, for any kubernetes: pool.
            guard let kubernetes else { return nil }
            return KubernetesBuilderDiscovery(
                credentials: kubernetes, selection: .init(namespace: namespace, labelSelector: labelSelector),
                template: template, pool: pool, logger: logger)
        }
    }
}

/// On first start (no token at all), creates an admin token for the `default` tenant, prints it once and writes it
/// to `<data>/admin-token` (mode 0600), so the quick start works with curl. Later starts do nothing.
func bootstrapAdminToken(_ tokens: any AccessTokenRepository, dataDirectory: String) async throws {
    guard try await tokens.tokenCount() == 0 else { return }
    let (token, _) = try await tokens.createToken(
        tenant: .default, name: "bootstrap admin", scopes: [.admin], buildID: nil, expiresAt: nil, at: Date())
    let path = "\(dataDirectory)/admin-token"
    unlink(path)
    let descriptor = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600)
    guard descriptor >= 0 else { throw BuildGateError(.internalError, "cannot write \(path)") }
    defer { close(descriptor) }
    let bytes = Array("\(token)\n".utf8)
    guard write(descriptor, bytes, bytes.count) == bytes.count else {
        throw BuildGateError(.internalError, "cannot write \(path)")
    }
    FileHandle.standardOutput.write(
        Data(
            """
            Created the first admin token (tenant 'default'); it is shown only now and kept in \(path):
            \(token)

            """.utf8))
}

/// The data directory (created 0700 if missing) and its database, migrated.
func openDatabase(_ configuration: BuildGateConfiguration) throws -> BuildGateDatabase {
    try FileManager.default.createDirectory(
        atPath: configuration.dataDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    return try BuildGateDatabase(
        path: "\(configuration.dataDirectory)/buildgate.sqlite", migrationsDirectory: configuration.migrationsDirectory)
}

/// `buildgate migrate`: opens the configured database, which applies every pending migration, and lists them.
package func migrateDatabase(_ configuration: BuildGateConfiguration, logger: Logger) async throws -> [String] {
    guard let url = configuration.databaseURL else { return try openDatabase(configuration).appliedMigrations() }
    let database = try await BuildGatePostgres(
        url: url, password: try databasePassword(configuration),
        migrationsDirectory: "\(configuration.migrationsDirectory)/postgres", logger: logger)
    return try await database.appliedMigrations()
}

/// `buildgate backup FILE`: a consistent copy of the SQLite database (migrations applied first). PostgreSQL has
/// its own tools (`pg_dump`), and this refuses.
package func backupDatabase(_ configuration: BuildGateConfiguration, to destination: String) throws {
    guard configuration.databaseURL == nil else {
        throw BuildGateError(.invalidParameter, "backup copies the SQLite database; back PostgreSQL up with pg_dump")
    }
    try openDatabase(configuration).backup(to: destination)
}

/// The token store of the configured database, for `buildgate token …`.
package func openAccessTokens(_ configuration: BuildGateConfiguration, logger: Logger) async throws
    -> any AccessTokenRepository
{
    try await GatewayStores.open(configuration, box: nil, logger: logger).tokens
}

/// The PostgreSQL password from `databasePasswordFile` (its last newline dropped), or nil.
func databasePassword(_ configuration: BuildGateConfiguration) throws -> String? {
    try configuration.databasePasswordFile.map { file in
        try String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .newlines)
    }
}

private func gitConfiguration(_ configuration: BuildGateConfiguration) -> GitCLISourceFetcher.Configuration {
    var git = GitCLISourceFetcher.Configuration()
    git.allowedHosts = configuration.limits.allowedGitHosts
    git.archiveLimits.maxEntries = configuration.limits.maxContextEntries
    git.archiveLimits.maxExpandedSize = configuration.limits.maxExpandedContextSize
    return git
}

/// The key that seals secrets at rest: from `secretKeyFile`, else `<data>/secret.key`, created (0600) on first
/// start. Losing it makes stored trigger secrets and credentials unreadable, so back it up with the database.
func loadSecretBox(_ configuration: BuildGateConfiguration) throws -> SecretBox {
    let path = configuration.secretKeyFile ?? "\(configuration.dataDirectory)/secret.key"
    if configuration.secretKeyFile == nil && !FileManager.default.fileExists(atPath: path) {
        var generator = SystemRandomNumberGenerator()
        let key = Data((0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }).base64EncodedString()
        // Written whole under another name, then linked into place, which fails if a gateway starting at the same
        // time on a shared data directory was first: every gateway then reads the one key that won.
        let draft = "\(path).\(UUID().uuidString.lowercased())"
        guard
            FileManager.default.createFile(
                atPath: draft, contents: Data(key.utf8), attributes: [.posixPermissions: 0o600])
        else {
            throw BuildGateError(.internalError, "cannot create \(path)")
        }
        defer { unlink(draft) }
        guard link(draft, path) == 0 || errno == EEXIST else {
            throw BuildGateError(.internalError, "cannot create \(path)")
        }
    }
    guard let text = try? String(contentsOfFile: path, encoding: .utf8), let box = SecretBox(base64Key: text) else {
        throw BuildGateError(
            .invalidParameter, "\(path) must hold the base64 of 32 random bytes (openssl rand -base64 32)")
    }
    return box
}

/// The tenant limits of the configured database, for `buildgate tenant limits`.
package func openTenantLimits(_ configuration: BuildGateConfiguration, logger: Logger) async throws
    -> any TenantLimitsRepository
{
    try await GatewayStores.open(configuration, box: nil, logger: logger).tenantLimits
}
