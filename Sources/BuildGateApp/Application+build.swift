import AsyncHTTPClient
import BuildGateAPI
import BuildGateCore
import BuildGateStore
import EngineAPIDriver
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle

/// Builds the whole gateway from its configuration: stores, drivers, dispatcher, reaper, HTTP server.
/// The executable and the tests call this same function. Nothing else reads the environment.
package func buildApplication(
    _ configuration: BuildGateConfiguration,
    logger: Logger,
    onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
) async throws -> some ApplicationProtocol {
    let dataDirectory = configuration.dataDirectory
    try FileManager.default.createDirectory(
        atPath: dataDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])

    let database = try BuildGateDatabase(
        path: "\(dataDirectory)/buildgate.sqlite", migrationsDirectory: configuration.migrationsDirectory)
    let store = SQLiteBuildStore(database: database)
    let tokens = SQLiteAccessTokenStore(database: database)
    try await bootstrapAdminToken(tokens, dataDirectory: dataDirectory)
    let logs = try FileBuildLogStore(dataDirectory: dataDirectory)
    let contexts = try FileContextStore(dataDirectory: dataDirectory)
    for leftover in contexts.leftoverUploads() {
        contexts.discard(upload: leftover)
    }
    let credentials = try configuration.registryAuthFile.map(RegistryCredentials.init(file:)) ?? RegistryCredentials()

    var services: [any Service] = []
    var endpoints = configuration.builders
    if endpoints.isEmpty {
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

    var dispatcherConfiguration = BuildDispatcher.Configuration()
    dispatcherConfiguration.leaseDuration = configuration.leaseDuration
    let dispatcher = BuildDispatcher(
        queue: store, logs: logs, contexts: contexts, endpoints: endpoints,
        drivers: [.podman: engineDriver, .docker: engineDriver],
        credentials: { host in credentials.byHost[host] },
        configuration: dispatcherConfiguration, logger: logger)
    let reaper = LeaseReaper(
        queue: store, logs: logs, interval: configuration.leaseDuration / 3, onRequeue: dispatcher.wake, logger: logger)
    try await reaper.settleExpiredLeases(now: Date())
    services.append(contentsOf: [dispatcher, reaper] as [any Service])

    let router = buildRouter(
        context: BuildGateRequestContext.self,
        dependencies: BuildGateAPIDependencies(
            repository: store, logs: logs, contexts: contexts, tokens: tokens, onQueued: dispatcher.wake),
        limits: configuration.limits,
        logger: logger)

    for endpoint in endpoints {
        logger.info("builder", metadata: ["buildgate.builder.endpoint": "\(endpoint)", "buildgate.builder.capacity": "\(endpoint.capacity)"])
    }
    return Application(
        router: router,
        server: buildGateHTTPServer(),
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "buildgate"),
        services: services,
        onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? configuration.port) },
        logger: logger)
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
    FileHandle.standardOutput.write(Data("""
        Created the first admin token (tenant 'default'); it is shown only now and kept in \(path):
        \(token)

        """.utf8))
}

/// The token store of a data directory, for `buildgate token …` (runs the migrations if needed).
package func openAccessTokens(_ configuration: BuildGateConfiguration) throws -> any AccessTokenRepository {
    try FileManager.default.createDirectory(
        atPath: configuration.dataDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    let database = try BuildGateDatabase(
        path: "\(configuration.dataDirectory)/buildgate.sqlite", migrationsDirectory: configuration.migrationsDirectory)
    return SQLiteAccessTokenStore(database: database)
}
