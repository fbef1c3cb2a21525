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
        subcommands: [
            Serve.self, Token.self, Tenant.self, Migrate.self, Backup.self, Login.self, Submit.self, Logs.self,
            Status.self, Cancel.self, Builds.self, Rerun.self,
        ],
        defaultSubcommand: Serve.self)

    /// As ArgumentParser runs commands, but a usage error exits 2 (the client's documented code), not 64.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asynchronous = command as? any AsyncParsableCommand {
                try await asynchronous.run()
            } else {
                try command.run()
            }
        } catch {
            let code = exitCode(for: error)
            guard code == .validationFailure else { exit(withError: error) }
            FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
            Foundation.exit(ClientExit.refused.rawValue)
        }
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the gateway (HTTP API, queue, dispatcher).",
        discussion: """
            Settings come from flags, then BUILDGATE_* environment variables, then the JSON config file, then \
            defaults. With no --builder and no --pool, the gateway starts its own `podman system service` in the data
            directory. The settings:

            """ + BuildGateConfiguration.settingsHelp)

    @Option(help: "JSON config file (also BUILDGATE_CONFIG).") var config: String?
    @Option(help: "Log level: trace, debug, info, notice, warning, error.") var logLevel: Logger.Level = .info
    @Option(help: "Log format: text, or json (one object per line, for log collectors). Also BUILDGATE_LOG_FORMAT.")
    var logFormat: String?
    /// Every other flag is a setting of `BuildGateConfiguration.settings` (listed in the discussion).
    @Argument(parsing: .allUnrecognized, help: .hidden) var settings: [String] = []

    func run() async throws {
        let flags = try BuildGateConfiguration.Layer(arguments: settings)
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
            let line =
                "buildgate listening on http://\(configuration.host):\(port) (data: \(configuration.dataDirectory))\n"
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
    @Option(help: "PostgreSQL URL, when gateways share one (also BUILDGATE_DATABASE_URL).") var database: String?

    var logger: Logger { Logger(label: "buildgate") }

    func configuration() throws -> BuildGateConfiguration {
        var flags = BuildGateConfiguration.Layer()
        flags.values["dataDirectory"] = dataDirectory.map { .text($0) }
        flags.values["databaseURL"] = database.map { .text($0) }
        flags.values["migrationsDirectory"] = migrations.map { .text($0) }
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
            let tokens = try await openAccessTokens(try storage.configuration(), logger: storage.logger)
            let (token, record) = try await tokens.createToken(
                tenant: tenant, name: name, scopes: Set(parsed), buildID: nil,
                expiresAt: expiresIn.map { Date().addingTimeInterval(Double($0)) }, at: Date())
            print(
                "id: \(record.id)  tenant: \(record.tenant)  scopes: \(record.scopes.sorted().map(\.rawValue).joined(separator: ","))"
            )
            print(token)
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List tokens (never their secrets).")
        @OptionGroup var storage: StorageOptions
        @Option(help: "Only this tenant's tokens.") var tenant: String?

        func run() async throws {
            let tokens = try await openAccessTokens(try storage.configuration(), logger: storage.logger)
            for token in try await tokens.tokens(of: tenant.flatMap(TenantID.init)) {
                let state =
                    token.revokedAt != nil
                    ? "revoked" : (token.expiresAt.map { $0 <= Date() } == true ? "expired" : "active")
                print(
                    "\(token.id)\t\(token.tenant)\t\(token.scopes.sorted().map(\.rawValue).joined(separator: ","))\t\(state)\t\(token.name)"
                )
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a token by id.")
        @OptionGroup var storage: StorageOptions
        @Argument(help: "The token id (the part after bgt_ and before the next _).") var id: String

        func run() async throws {
            let tokens = try await openAccessTokens(try storage.configuration(), logger: storage.logger)
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
                maxRunningBuilds: maxRunningBuilds, maxQueuedBuilds: maxQueuedBuilds,
                requestsPerMinute: requestsPerMinute)
            try await openTenantLimits(try storage.configuration(), logger: storage.logger).setLimits(
                limits, for: tenant, at: Date())
            print(
                "limits of \(tenant): running \(maxRunningBuilds.map(String.init) ?? "default"), queued \(maxQueuedBuilds.map(String.init) ?? "default"), requests/min \(requestsPerMinute.map(String.init) ?? "default")"
            )
        }
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply pending database migrations (serve does it too) and list the applied ones.")
    @OptionGroup var storage: StorageOptions

    func run() async throws {
        for migration in try await migrateDatabase(try storage.configuration(), logger: storage.logger) {
            print(migration)
        }
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
