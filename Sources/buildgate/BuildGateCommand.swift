import ArgumentParser
import BuildGateApp
import Foundation
import Hummingbird
import Logging

@main
struct BuildGateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "buildgate",
        abstract: "A build gateway: upload a Docker build context, get an image pushed, follow its logs.",
        subcommands: [Serve.self],
        defaultSubcommand: Serve.self)
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the gateway (HTTP API, queue, dispatcher).",
        discussion: """
            Settings come from flags, then BUILDGATE_* environment variables, then the JSON config file, then \
            defaults. With no --builder, the gateway starts its own `podman system service` in the data directory.
            """)

    @Option(help: "JSON config file (also BUILDGATE_CONFIG).") var config: String?
    @Option(help: "HOST:PORT to listen on (default 127.0.0.1:8080).") var listen: String?
    @Option(name: .customLong("data-dir"), help: "Data directory: database, contexts, logs.") var dataDirectory: String?
    @Option(name: .customLong("builder"), help: "ENGINE=ADDRESS[,capacity=N][,name=NAME], repeatable.")
    var builders: [String] = []
    @Option(help: "Docker config.json-style file with registry credentials.") var registryAuthFile: String?
    @Option(name: .customLong("insecure-registry"), help: "Registry host reached without TLS verification, repeatable.")
    var insecureRegistries: [String] = []
    @Option(help: "Largest context upload in bytes.") var maxContextSize: Int64?
    @Option(help: "Most entries in a context archive.") var maxContextEntries: Int?
    @Option(help: "Default build timeout in seconds.") var buildTimeout: Int?
    @Option(help: "Dispatcher lease in seconds.") var leaseSeconds: Int?
    @Option(help: "podman executable for the embedded builder.") var podman: String?
    @Option(help: "Global podman arguments for the embedded builder (one string).") var podmanArgs: String?
    @Option(help: "Directory of the numbered .sql migrations.") var migrations: String?
    @Option(help: "Log level: trace, debug, info, notice, warning, error.") var logLevel: Logger.Level = .info

    func run() async throws {
        var flags = BuildGateConfiguration.Layer()
        flags.listen = listen
        flags.dataDirectory = dataDirectory
        flags.builders = builders.isEmpty ? nil : builders
        flags.registryAuthFile = registryAuthFile
        flags.insecureRegistries = insecureRegistries.isEmpty ? nil : insecureRegistries
        flags.maxContextSize = maxContextSize
        flags.maxContextEntries = maxContextEntries
        flags.buildTimeout = buildTimeout
        flags.leaseSeconds = leaseSeconds
        flags.podman = podman
        flags.podmanArguments = podmanArgs.map { $0.split(separator: " ").map(String.init) }
        flags.migrationsDirectory = migrations

        let environment = ProcessInfo.processInfo.environment
        var layers = [flags, try BuildGateConfiguration.Layer(environment: environment)]
        if let file = config ?? environment["BUILDGATE_CONFIG"] {
            layers.append(try BuildGateConfiguration.Layer(file: file))
        }
        let configuration = try BuildGateConfiguration.resolve(layers, environment: environment)

        var logger = Logger(label: "buildgate")
        logger.logLevel = logLevel
        let app = try await buildApplication(configuration, logger: logger) { port in
            let line = "buildgate listening on http://\(configuration.host):\(port) (data: \(configuration.dataDirectory))\n"
            FileHandle.standardOutput.write(Data(line.utf8))
        }
        try await app.runService()
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
