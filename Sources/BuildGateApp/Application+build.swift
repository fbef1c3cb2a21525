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
        context: BasicRequestContext.self,
        dependencies: BuildGateAPIDependencies(
            repository: store, logs: logs, contexts: contexts, onQueued: dispatcher.wake),
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
