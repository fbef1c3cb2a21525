import BuildGateAPI
import BuildGateCore
import Foundation

/// One setting of `buildgate serve`, declared once: its key in the config file, its environment variable and flag
/// (derived from the key unless given), its default as the documentation states it, its help, and how a value is
/// checked and applied. Adding a setting is one entry in `BuildGateConfiguration.settings` plus its use.
package struct BuildGateSetting: Sendable {
    /// How a value is written.
    package enum Kind: Sendable {
        case text
        case number
        /// Several values: a JSON array in the file, repeated flags, and in the environment one string split at
        /// `separator`.
        case list(separator: Character)
    }

    /// A value as given by one layer.
    package enum Value: Sendable, Equatable {
        case text(String)
        case number(Int64)
        case list([String])
    }

    package let key: String
    package let kind: Kind
    package let environment: String
    package let flag: String
    package let defaultText: String
    package let help: String
    let apply: @Sendable (inout BuildGateConfiguration, Value) throws -> Void

    init(
        _ key: String, _ kind: Kind, environment: String? = nil, flag: String? = nil, default defaultText: String,
        help: String, apply: @escaping @Sendable (inout BuildGateConfiguration, Value) throws -> Void
    ) {
        self.key = key
        self.kind = kind
        self.environment = environment ?? "BUILDGATE_" + Self.words(key).map { $0.uppercased() }.joined(separator: "_")
        self.flag = flag ?? "--" + Self.words(key).joined(separator: "-")
        self.defaultText = defaultText
        self.help = help
        self.apply = apply
    }

    /// `maxContextSize` → `["max", "context", "size"]`.
    private static func words(_ key: String) -> [String] {
        var words: [String] = []
        for character in key {
            if character.isUppercase || words.isEmpty { words.append("") }
            words[words.count - 1].append(character.lowercased())
        }
        return words
    }

    /// The value in `text`, as the environment or a flag spells it.
    func value(parsing text: String, from place: String) throws -> Value {
        switch kind {
        case .text:
            return .text(text)
        case .number:
            guard let number = Int64(text.trimmingCharacters(in: .whitespaces)) else {
                throw BuildGateError(.invalidParameter, "\(place) must be a number, got '\(text)'")
            }
            return .number(number)
        case .list(let separator):
            return .list(
                text.split(separator: separator).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
        }
    }
}

extension BuildGateSetting.Value {
    func text(_ key: String) throws -> String {
        switch self {
        case .text(let text): return text
        case .number(let number): return String(number)
        case .list: throw BuildGateError(.invalidParameter, "\(key) takes one value, not a list")
        }
    }

    func list(_ key: String) throws -> [String] {
        switch self {
        case .list(let values): return values
        case .text(let text): return [text]
        case .number: throw BuildGateError(.invalidParameter, "\(key) takes strings")
        }
    }

    /// A whole number within `range`, named in the error.
    func number(_ key: String, in range: ClosedRange<Int64>, _ rule: String) throws -> Int64 {
        let number: Int64
        switch self {
        case .number(let value): number = value
        case .text(let text):
            guard let value = Int64(text) else {
                throw BuildGateError(.invalidParameter, "\(key) must be a number, got '\(text)'")
            }
            number = value
        case .list: throw BuildGateError(.invalidParameter, "\(key) takes one number")
        }
        guard range.contains(number) else { throw BuildGateError(.invalidParameter, "\(key) must be \(rule)") }
        return number
    }

    func positive(_ key: String) throws -> Int64 { try number(key, in: 1...Int64.max, "positive") }
    func notNegative(_ key: String) throws -> Int64 { try number(key, in: 0...Int64.max, "not negative") }
    func seconds(_ key: String, atLeast minimum: Int64 = 0) throws -> Duration {
        .seconds(try number(key, in: minimum...Int64(Int32.max), minimum == 0 ? "not negative" : "at least \(minimum)"))
    }
}

extension BuildGateConfiguration {
    /// Every setting of `buildgate serve`, in the order the README lists them.
    package static let settings: [BuildGateSetting] = [
        .init("listen", .text, default: "`127.0.0.1:8080`", help: "HOST:PORT to listen on.") { configuration, value in
            let listen = try value.text("listen")
            guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]),
                (0...65535).contains(port)
            else { throw BuildGateError(.invalidParameter, "listen address must be HOST:PORT, got '\(listen)'") }
            configuration.host = String(listen[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
            configuration.port = port
        },
        .init(
            "dataDirectory", .text, environment: "BUILDGATE_DATA_DIR", flag: "--data-dir",
            default: "`$XDG_DATA_HOME/buildgate`, else `~/.local/share/buildgate`",
            help: "Data directory: database, contexts, logs."
        ) { configuration, value in configuration.dataDirectory = try value.text("dataDirectory") },
        .init(
            "builders", .list(separator: " "), flag: "--builder",
            default: "the embedded Podman service, when there are no pools either",
            help: "ENGINE=ADDRESS[,capacity=N][,name=NAME][,…], repeatable."
        ) { configuration, value in
            configuration.builders = try value.list("builders").enumerated().map { try parseBuilder($1, index: $0) }
            guard Set(configuration.builders.map(\.name)).count == configuration.builders.count else {
                throw BuildGateError(.invalidParameter, "two builders have the same name; give each a name=…")
            }
        },
        .init(
            "pools", .list(separator: " "), flag: "--pool", default: "none",
            help: "dns:NAME:PORT,engine=E[,…] or kubernetes:NAMESPACE/LABEL=VALUE,port=P[,engine=E][,…], repeatable."
        ) { configuration, value in configuration.pools = try value.list("pools").map(parsePool) },
        .init(
            "kubeconfig", .text, default: "the pod's service account",
            help: "A kubeconfig (YAML or JSON, as kubectl writes it), for kubernetes: pools."
        ) {
            configuration, value in configuration.kubeconfig = try value.text("kubeconfig")
        },
        .init(
            "registryAuthFile", .text, default: "none", help: "Docker config.json-style file with registry credentials."
        ) {
            configuration, value in configuration.registryAuthFile = try value.text("registryAuthFile")
        },
        .init(
            "insecureRegistries", .list(separator: ","), flag: "--insecure-registry", default: "none",
            help: "Registry host reached without TLS verification, repeatable."
        ) { configuration, value in configuration.insecureRegistries = Set(try value.list("insecureRegistries")) },
        .init("maxContextSize", .number, default: "2147483648 bytes", help: "Largest context upload in bytes.") {
            configuration, value in
            configuration.limits.maxContextSize = try value.positive("maxContextSize")
            // Follows the upload limit unless set itself (it comes later in this list).
            configuration.limits.maxExpandedContextSize = configuration.limits.maxContextSize * 2
        },
        .init(
            "maxExpandedContextSize", .number, default: "twice `maxContextSize` (4 GiB)",
            help: "Most bytes a context may expand to, decompressed."
        ) { configuration, value in
            configuration.limits.maxExpandedContextSize = try value.positive("maxExpandedContextSize")
        },
        .init("maxContextEntries", .number, default: "100000", help: "Most entries in a context archive.") {
            configuration, value in
            configuration.limits.maxContextEntries = Int(try value.positive("maxContextEntries"))
        },
        .init(
            "requestHeadTimeout", .number, default: "30 seconds",
            help: "Seconds a client may take to send a request head."
        ) {
            configuration, value in
            configuration.requestTimeouts.head = try value.seconds("requestHeadTimeout", atLeast: 1)
        },
        .init("requestBodyTimeout", .number, default: "60 seconds", help: "Seconds a request body may stall.") {
            configuration, value in
            configuration.requestTimeouts.bodyIdle = try value.seconds("requestBodyTimeout", atLeast: 1)
        },
        .init(
            "requestBodyMinRate", .number, default: "1024 bytes/s (0: none)",
            help: "Slowest average request body rate in bytes/s, after the body timeout."
        ) { configuration, value in
            configuration.requestTimeouts.bodyMinRate = Int(try value.notNegative("requestBodyMinRate"))
        },
        .init("buildTimeout", .number, default: "3600 seconds", help: "Default build timeout in seconds.") {
            configuration, value in
            let timeout = Int(try value.positive("buildTimeout"))
            configuration.limits.defaultBuildTimeout = timeout
            configuration.limits.maxBuildTimeout = max(configuration.limits.maxBuildTimeout, timeout)
        },
        .init(
            "queueTTL", .number, environment: "BUILDGATE_QUEUE_TTL", flag: "--queue-ttl", default: "3600 seconds",
            help: "Seconds a build may wait in the queue before it ends expired."
        ) { configuration, value in
            let ttl = Int(try value.positive("queueTTL"))
            configuration.limits.defaultQueueTTL = ttl
            configuration.limits.maxQueueTTL = max(configuration.limits.maxQueueTTL, ttl)
        },
        .init(
            "shutdownGrace", .number, default: "240 seconds",
            help: "Seconds running builds get to finish on SIGTERM before they end interrupted."
        ) { configuration, value in configuration.shutdownGrace = try value.seconds("shutdownGrace") },
        .init(
            "uploadGrace", .number, default: "30 seconds",
            help: "Seconds an upload in flight gets to finish on SIGTERM before it is answered 503."
        ) { configuration, value in configuration.limits.uploadShutdownGrace = try value.seconds("uploadGrace") },
        .init(
            "minFreeDisk", .number, default: "1073741824 bytes",
            help: "Bytes kept free in the data directory: uploads get 507 below it."
        ) { configuration, value in configuration.limits.minFreeDiskBytes = try value.notNegative("minFreeDisk") },
        .init("contextRetentionDays", .number, default: "0", help: "Days a context is kept after its last build ended.")
        {
            configuration, value in
            configuration.retention.contexts = .seconds(try value.notNegative("contextRetentionDays") * 86_400)
        },
        .init("logRetentionDays", .number, default: "30", help: "Days a build log is kept after the build ended.") {
            configuration, value in
            configuration.retention.logs = .seconds(try value.notNegative("logRetentionDays") * 86_400)
        },
        .init("buildRetentionDays", .number, default: "90", help: "Days a build is kept after it ended.") {
            configuration, value in
            configuration.retention.builds = .seconds(try value.notNegative("buildRetentionDays") * 86_400)
        },
        .init("leaseSeconds", .number, default: "15", help: "Dispatcher lease in seconds.") { configuration, value in
            configuration.leaseDuration = try value.seconds("leaseSeconds", atLeast: 2)
        },
        .init(
            "buildAttempts", .number, default: "3",
            help: "Tries per build when its builder or its gateway goes away before a result."
        ) { configuration, value in
            configuration.maxAttempts = Int(try value.positive("buildAttempts"))
        },
        .init("podman", .text, default: "`podman` on `PATH`", help: "podman executable for the embedded builder.") {
            configuration, value in configuration.podmanExecutable = try value.text("podman")
        },
        .init(
            "podmanArguments", .list(separator: " "), environment: "BUILDGATE_PODMAN_ARGS", flag: "--podman-args",
            default: "`--runtime runc --cgroup-manager cgroupfs`",
            help: "Global podman arguments for the embedded builder (one string: --podman-args='--root …')."
        ) { configuration, value in
            // Given as one string, the flag too: the arguments are words of it.
            configuration.podmanArguments = try value.list("podmanArguments").flatMap {
                $0.split(separator: " ").map(String.init)
            }
        },
        .init("buildctl", .text, default: "`buildctl` on `PATH`", help: "buildctl executable, for buildkit= builders.")
        {
            configuration, value in configuration.buildctlExecutable = try value.text("buildctl")
        },
        .init(
            "migrationsDirectory", .text, environment: "BUILDGATE_MIGRATIONS", flag: "--migrations",
            default: "`./migrations`, else `/usr/share/buildgate/migrations`",
            help: "Directory of the numbered .sql migrations."
        ) { configuration, value in configuration.migrationsDirectory = try value.text("migrationsDirectory") },
        .init(
            "databaseURL", .text, environment: "BUILDGATE_DATABASE_URL", flag: "--database",
            default: "SQLite in the data directory",
            help:
                "PostgreSQL for several gateways: postgres://user@host:5432/db?sslmode=verify-full&sslrootcert=ca.pem."
        ) { configuration, value in configuration.databaseURL = try value.text("databaseURL") },
        .init(
            "databasePasswordFile", .text, default: "the URL's password, if any",
            help: "File holding the PostgreSQL password (instead of one in the URL)."
        ) { configuration, value in configuration.databasePasswordFile = try value.text("databasePasswordFile") },
        .init(
            "secretKeyFile", .text, default: "`<data>/secret.key`, created on first start",
            help: "File with the base64 AES-256 key that seals secrets at rest."
        ) { configuration, value in configuration.secretKeyFile = try value.text("secretKeyFile") },
        .init(
            "allowedGitHosts", .list(separator: ","), flag: "--allowed-git-host", default: "any host",
            help: "Host git sources may come from (glob), repeatable."
        ) { configuration, value in configuration.limits.allowedGitHosts = try value.list("allowedGitHosts") },
        .init(
            "publicURL", .text, environment: "BUILDGATE_PUBLIC_URL", flag: "--public-url",
            default: "none (links in commit statuses need it)",
            help: "The gateway's external URL, for links in commit statuses."
        ) { configuration, value in
            let url = try value.text("publicURL")
            configuration.publicURL = url.hasSuffix("/") ? String(url.dropLast()) : url
        },
        .init("tenantMaxRunningBuilds", .number, default: "no limit", help: "Default running builds per tenant.") {
            configuration, value in
            configuration.limits.tenantDefaults.maxRunningBuilds = Int(try value.positive("tenantMaxRunningBuilds"))
        },
        .init("tenantMaxQueuedBuilds", .number, default: "1000", help: "Default queued builds per tenant.") {
            configuration, value in
            configuration.limits.tenantDefaults.maxQueuedBuilds = Int(try value.positive("tenantMaxQueuedBuilds"))
        },
        .init("tenantRequestsPerMinute", .number, default: "600", help: "Default API requests per minute per tenant.") {
            configuration, value in
            configuration.limits.tenantDefaults.requestsPerMinute = Int(try value.positive("tenantRequestsPerMinute"))
        },
    ]

    /// One source of settings, by key. Earlier layers win in `resolve`.
    package struct Layer: Sendable, Equatable {
        package var values: [String: BuildGateSetting.Value] = [:]

        package init(_ values: [String: BuildGateSetting.Value] = [:]) {
            self.values = values
        }

        /// The `BUILDGATE_*` variables of `environment`.
        package init(environment: [String: String]) throws {
            for setting in BuildGateConfiguration.settings {
                guard let text = environment[setting.environment] else { continue }
                values[setting.key] = try setting.value(parsing: text, from: setting.environment)
            }
        }

        /// A JSON config file: an object with the settings' keys (lists as arrays of strings).
        package init(file path: String) throws {
            let object: [String: Any]
            do {
                let parsed = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path)))
                guard let dictionary = parsed as? [String: Any] else {
                    throw BuildGateError(.invalidParameter, "not a JSON object")
                }
                object = dictionary
            } catch {
                throw BuildGateError(.invalidParameter, "cannot read config file \(path): \(error)")
            }
            let known = Dictionary(uniqueKeysWithValues: BuildGateConfiguration.settings.map { ($0.key, $0) })
            for (key, raw) in object {
                guard let setting = known[key] else {
                    throw BuildGateError(
                        .invalidParameter,
                        "config file \(path): unknown key '\(key)'; known: \(known.keys.sorted().joined(separator: ", "))"
                    )
                }
                switch (setting.kind, raw) {
                case (.list, let array as [Any]):
                    guard let strings = array as? [String] else {
                        throw BuildGateError(
                            .invalidParameter, "config file \(path): '\(key)' must be an array of strings")
                    }
                    values[key] = .list(strings)
                case (.number, let number as NSNumber) where !(raw is Bool):
                    values[key] = .number(number.int64Value)
                case (.text, let text as String):
                    values[key] = .text(text)
                default:
                    throw BuildGateError(.invalidParameter, "config file \(path): '\(key)' has the wrong type")
                }
            }
        }

        /// Command-line flags: `--flag VALUE` or `--flag=VALUE`; list flags may repeat.
        package init(arguments: [String]) throws {
            let byFlag = Dictionary(uniqueKeysWithValues: BuildGateConfiguration.settings.map { ($0.flag, $0) })
            var remaining = arguments[...]
            while let argument = remaining.popFirst() {
                let (flag, inline) =
                    argument.firstIndex(of: "=").map {
                        (String(argument[..<$0]), String(argument[argument.index(after: $0)...]) as String?)
                    } ?? (argument, nil)
                guard let setting = byFlag[flag] else {
                    throw BuildGateError(.invalidParameter, "unknown option '\(argument)'; see buildgate serve --help")
                }
                guard let text = inline ?? remaining.popFirst() else {
                    throw BuildGateError(.invalidParameter, "\(flag) needs a value")
                }
                if case .list = setting.kind, setting.key != "podmanArguments" {
                    let earlier = (try? values[setting.key]?.list(setting.key)) ?? []
                    values[setting.key] = .list(earlier + [text])
                } else {
                    values[setting.key] = try setting.value(parsing: text, from: flag)
                }
            }
        }
    }

    /// Merges layers, most important first, over the defaults, and checks every value.
    package static func resolve(_ layers: [Layer], environment: [String: String]) throws -> BuildGateConfiguration {
        let home = environment["HOME"] ?? "/root"
        let defaultData = environment["XDG_DATA_HOME"].map { "\($0)/buildgate" } ?? "\(home)/.local/share/buildgate"
        let defaultMigrations =
            FileManager.default.fileExists(atPath: "migrations") ? "migrations" : "/usr/share/buildgate/migrations"
        var configuration = BuildGateConfiguration(dataDirectory: defaultData, migrationsDirectory: defaultMigrations)
        for setting in settings {
            guard let value = layers.lazy.compactMap({ $0.values[setting.key] }).first else { continue }
            try setting.apply(&configuration, value)
        }
        guard configuration.retention.logs <= configuration.retention.builds else {
            throw BuildGateError(.invalidParameter, "logRetentionDays must not exceed buildRetentionDays")
        }
        return configuration
    }

    /// The README's table of settings, made from `settings`.
    package static var settingsTable: String {
        var lines = ["| config file key | environment | flag | default |", "|---|---|---|---|"]
        for setting in settings {
            var environment = "`\(setting.environment)`"
            var flag = "`\(setting.flag)`"
            if case .list(let separator) = setting.kind, setting.key != "podmanArguments" {
                environment += separator == " " ? " (space-separated)" : " (comma-separated)"
                flag += " (repeatable)"
            }
            lines.append("| `\(setting.key)` | \(environment) | \(flag) | \(setting.defaultText) |")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The settings for `buildgate serve --help`.
    package static var settingsHelp: String {
        settings.map {
            "  \($0.flag) VALUE\n      \($0.help) Default: \($0.defaultText.replacingOccurrences(of: "`", with: "")). Also \($0.environment)."
        }
        .joined(separator: "\n")
    }
}
