import ArgumentParser
import BuildGateApp
import BuildGateCore
import Foundation
import Hummingbird
import Logging

@main
struct BuildGateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "buildgate",
        abstract: "A build gateway: upload a Docker build context, get an image pushed, follow its logs.",
        subcommands: [Serve.self, Token.self, Tenant.self, Migrate.self, Backup.self],
        defaultSubcommand: Serve.self)
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the gateway (HTTP API, queue, dispatcher).",
        discussion: """
            Settings come from flags, then BUILDGATE_* environment variables, then the JSON config file, then \
            defaults. With no --builder and no --pool, the gateway starts its own `podman system service` in the data
            directory.
            """)

    @Option(help: "JSON config file (also BUILDGATE_CONFIG).") var config: String?
    @Option(help: "HOST:PORT to listen on (default 127.0.0.1:8080).") var listen: String?
    @Option(name: .customLong("data-dir"), help: "Data directory: database, contexts, logs.") var dataDirectory: String?
    @Option(name: .customLong("builder"), help: "ENGINE=ADDRESS[,capacity=N][,name=NAME], repeatable.")
    var builders: [String] = []
    @Option(
        name: .customLong("pool"),
        help: "dns:NAME:PORT,engine=E[,…] or kubernetes:NAMESPACE/LABEL=VALUE,engine=E,port=P[,…], repeatable.")
    var pools: [String] = []
    @Option(help: "A JSON kubeconfig (kubectl config view --minify --flatten -o json) for kubernetes: pools.") var kubeconfig: String?
    @Option(help: "Docker config.json-style file with registry credentials.") var registryAuthFile: String?
    @Option(name: .customLong("insecure-registry"), help: "Registry host reached without TLS verification, repeatable.")
    var insecureRegistries: [String] = []
    @Option(help: "Largest context upload in bytes.") var maxContextSize: Int64?
    @Option(help: "Most entries in a context archive.") var maxContextEntries: Int?
    @Option(help: "Most bytes a context may expand to, decompressed (default twice --max-context-size).")
    var maxExpandedContextSize: Int64?
    @Option(help: "Seconds a client may take to send a request head (default 30).") var requestHeadTimeout: Int?
    @Option(help: "Seconds a request body may stall (default 60).") var requestBodyTimeout: Int?
    @Option(help: "Slowest average request body rate in bytes/s, after --request-body-timeout (default 1024; 0: none).")
    var requestBodyMinRate: Int?
    @Option(help: "Default build timeout in seconds.") var buildTimeout: Int?
    @Option(help: "Dispatcher lease in seconds.") var leaseSeconds: Int?
    @Option(help: "Seconds a build may wait in the queue before it ends expired (default 3600).") var queueTtl: Int?
    @Option(help: "Seconds running builds get to finish on SIGTERM before they end interrupted (default 240).")
    var shutdownGrace: Int?
    @Option(help: "Seconds an upload in flight gets to finish on SIGTERM before it is answered 503 (default 30).")
    var uploadGrace: Int?
    @Option(help: "Bytes kept free in the data directory: uploads get 507 below it (default 1 GiB).") var minFreeDisk: Int64?
    @Option(help: "Days a context is kept after its last build ended (default 0).") var contextRetentionDays: Int?
    @Option(help: "Days a build log is kept after the build ended (default 30).") var logRetentionDays: Int?
    @Option(help: "Days a build is kept after it ended (default 90).") var buildRetentionDays: Int?
    @Option(help: "podman executable for the embedded builder.") var podman: String?
    @Option(help: "Global podman arguments for the embedded builder (one string).") var podmanArgs: String?
    @Option(help: "buildctl executable, for buildkit= builders.") var buildctl: String?
    @Option(help: "Directory of the numbered .sql migrations.") var migrations: String?
    @Option(help: "File with the base64 AES-256 key that seals secrets at rest.") var secretKeyFile: String?
    @Option(name: .customLong("allowed-git-host"), help: "Host git sources may come from (glob), repeatable.")
    var allowedGitHosts: [String] = []
    @Option(help: "The gateway's external URL, for links in commit statuses.") var publicURL: String?
    @Option(help: "Default running builds per tenant.") var tenantMaxRunningBuilds: Int?
    @Option(help: "Default queued builds per tenant.") var tenantMaxQueuedBuilds: Int?
    @Option(help: "Default API requests per minute per tenant.") var tenantRequestsPerMinute: Int?
    @Option(help: "Log level: trace, debug, info, notice, warning, error.") var logLevel: Logger.Level = .info
    @Option(help: "Log format: text, or json (one object per line, for log collectors). Also BUILDGATE_LOG_FORMAT.")
    var logFormat: String?

    func run() async throws {
        var flags = BuildGateConfiguration.Layer()
        flags.listen = listen
        flags.dataDirectory = dataDirectory
        flags.builders = builders.isEmpty ? nil : builders
        flags.pools = pools.isEmpty ? nil : pools
        flags.kubeconfig = kubeconfig
        flags.registryAuthFile = registryAuthFile
        flags.insecureRegistries = insecureRegistries.isEmpty ? nil : insecureRegistries
        flags.maxContextSize = maxContextSize
        flags.maxContextEntries = maxContextEntries
        flags.maxExpandedContextSize = maxExpandedContextSize
        flags.requestHeadTimeout = requestHeadTimeout
        flags.requestBodyTimeout = requestBodyTimeout
        flags.requestBodyMinRate = requestBodyMinRate
        flags.buildTimeout = buildTimeout
        flags.leaseSeconds = leaseSeconds
        flags.queueTTL = queueTtl
        flags.shutdownGrace = shutdownGrace
        flags.uploadGrace = uploadGrace
        flags.minFreeDisk = minFreeDisk
        flags.contextRetentionDays = contextRetentionDays
        flags.logRetentionDays = logRetentionDays
        flags.buildRetentionDays = buildRetentionDays
        flags.podman = podman
        flags.podmanArguments = podmanArgs.map { $0.split(separator: " ").map(String.init) }
        flags.buildctl = buildctl
        flags.migrationsDirectory = migrations
        flags.secretKeyFile = secretKeyFile
        flags.allowedGitHosts = allowedGitHosts.isEmpty ? nil : allowedGitHosts
        flags.tenantMaxRunningBuilds = tenantMaxRunningBuilds
        flags.publicURL = publicURL
        flags.tenantMaxQueuedBuilds = tenantMaxQueuedBuilds
        flags.tenantRequestsPerMinute = tenantRequestsPerMinute

        let environment = ProcessInfo.processInfo.environment
        var layers = [flags, try BuildGateConfiguration.Layer(environment: environment)]
        if let file = config ?? environment["BUILDGATE_CONFIG"] {
            layers.append(try BuildGateConfiguration.Layer(file: file))
        }
        let configuration = try BuildGateConfiguration.resolve(layers, environment: environment)

        switch logFormat ?? ProcessInfo.processInfo.environment["BUILDGATE_LOG_FORMAT"] ?? "text" {
        case "json": LoggingSystem.bootstrap { JSONLogHandler(label: $0) }
        case "text": break
        case let other: throw ValidationError("--log-format must be text or json, got '\(other)'")
        }
        bootstrapMetrics()
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

/// Where the database is, for commands that open it directly.
struct StorageOptions: ParsableArguments {
    @Option(help: "JSON config file (also BUILDGATE_CONFIG).") var config: String?
    @Option(name: .customLong("data-dir"), help: "Data directory.") var dataDirectory: String?
    @Option(help: "Directory of the numbered .sql migrations.") var migrations: String?

    func configuration() throws -> BuildGateConfiguration {
        var flags = BuildGateConfiguration.Layer()
        flags.dataDirectory = dataDirectory
        flags.migrationsDirectory = migrations
        let environment = ProcessInfo.processInfo.environment
        var layers = [flags, try BuildGateConfiguration.Layer(environment: environment)]
        if let file = config ?? environment["BUILDGATE_CONFIG"] { layers.append(try .init(file: file)) }
        return try BuildGateConfiguration.resolve(layers, environment: environment)
    }
}

struct Token: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage API tokens (works on the data directory directly).",
        subcommands: [Create.self, List.self, Revoke.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a token; it is printed once.")
        @OptionGroup var storage: StorageOptions
        @Option(help: "Tenant the token belongs to (created if new).") var tenant: String = "default"
        @Option(help: "A name to recognise the token by.") var name: String
        @Option(name: .customLong("scope"), help: "builds:write, builds:read, triggers:admin or admin; repeatable.")
        var scopes: [String] = []
        @Option(help: "Lifetime in seconds (default: no expiry).") var expiresIn: Int?

        func run() async throws {
            guard let tenant = TenantID(tenant) else {
                throw ValidationError("tenant must be 1-63 lowercase letters, digits or dashes")
            }
            let parsed = try scopes.map { text in
                guard let scope = Scope(rawValue: text), scope != .logsRead else {
                    throw ValidationError("unknown scope '\(text)': builds:write, builds:read, triggers:admin, admin")
                }
                return scope
            }
            guard !parsed.isEmpty else { throw ValidationError("give at least one --scope") }
            let tokens = try openAccessTokens(try storage.configuration())
            let (token, record) = try await tokens.createToken(
                tenant: tenant, name: name, scopes: Set(parsed), buildID: nil,
                expiresAt: expiresIn.map { Date().addingTimeInterval(Double($0)) }, at: Date())
            print("id: \(record.id)  tenant: \(record.tenant)  scopes: \(record.scopes.sorted().map(\.rawValue).joined(separator: ","))")
            print(token)
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List tokens (never their secrets).")
        @OptionGroup var storage: StorageOptions
        @Option(help: "Only this tenant's tokens.") var tenant: String?

        func run() async throws {
            let tokens = try openAccessTokens(try storage.configuration())
            for token in try await tokens.tokens(of: tenant.flatMap(TenantID.init)) {
                let state = token.revokedAt != nil ? "revoked" : (token.expiresAt.map { $0 <= Date() } == true ? "expired" : "active")
                print("\(token.id)\t\(token.tenant)\t\(token.scopes.sorted().map(\.rawValue).joined(separator: ","))\t\(state)\t\(token.name)")
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a token by id.")
        @OptionGroup var storage: StorageOptions
        @Argument(help: "The token id (the part after bgt_ and before the next _).") var id: String

        func run() async throws {
            let tokens = try openAccessTokens(try storage.configuration())
            guard try await tokens.revokeToken(id: id, at: Date()) else { throw ValidationError("no token \(id)") }
            print("revoked \(id)")
        }
    }
}

struct Tenant: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage tenants (works on the data directory directly).", subcommands: [Limits.self])

    struct Limits: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Set a tenant's limits (omitted ones fall back to the gateway's defaults).")
        @OptionGroup var storage: StorageOptions
        @Option(help: "The tenant.") var tenant: String
        @Option(help: "Builds running at once.") var maxRunningBuilds: Int?
        @Option(help: "Builds waiting in the queue.") var maxQueuedBuilds: Int?
        @Option(help: "API requests per minute.") var requestsPerMinute: Int?

        func run() async throws {
            guard let tenant = TenantID(tenant) else { throw ValidationError("bad tenant name") }
            let limits = TenantLimits(
                maxRunningBuilds: maxRunningBuilds, maxQueuedBuilds: maxQueuedBuilds, requestsPerMinute: requestsPerMinute)
            try await openTenantLimits(try storage.configuration()).setLimits(limits, for: tenant, at: Date())
            print("limits of \(tenant): running \(maxRunningBuilds.map(String.init) ?? "default"), queued \(maxQueuedBuilds.map(String.init) ?? "default"), requests/min \(requestsPerMinute.map(String.init) ?? "default")")
        }
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply pending database migrations (serve does it too) and list the applied ones.")
    @OptionGroup var storage: StorageOptions

    func run() async throws {
        for migration in try migrateDatabase(try storage.configuration()) { print(migration) }
    }
}

struct Backup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a consistent copy of the database (VACUUM INTO), safe while the gateway runs.",
        discussion: "Back up the secret key (<data>/secret.key) too: without it, sealed secrets cannot be opened.")
    @OptionGroup var storage: StorageOptions
    @Argument(help: "The file to write; it must not exist.") var destination: String

    func run() async throws {
        try backupDatabase(try storage.configuration(), to: destination)
        print("backed up to \(destination)")
    }
}
