import BuildGateAPI
import BuildGateCore
import Foundation

/// Everything `buildgate serve` can be told, typed. Resolved from layers: flags > environment > config file > defaults.
///
/// | key (config file) | environment | flag | default |
/// |---|---|---|---|
/// | `listen` | `BUILDGATE_LISTEN` | `--listen` | `127.0.0.1:8080` |
/// | `dataDirectory` | `BUILDGATE_DATA_DIR` | `--data-dir` | `$XDG_DATA_HOME/buildgate` or `~/.local/share/buildgate` |
/// | `builders` | `BUILDGATE_BUILDERS` (space-separated) | `--builder` (repeatable) | embedded Podman |
/// | `pools` | `BUILDGATE_POOLS` (space-separated) | `--pool` (repeatable) | none |
/// | `kubeconfig` | `BUILDGATE_KUBECONFIG` | `--kubeconfig` | the pod's service account |
/// | `registryAuthFile` | `BUILDGATE_REGISTRY_AUTH_FILE` | `--registry-auth-file` | none |
/// | `insecureRegistries` | `BUILDGATE_INSECURE_REGISTRIES` (comma-separated) | `--insecure-registry` | none |
/// | `maxContextSize` | `BUILDGATE_MAX_CONTEXT_SIZE` | `--max-context-size` | 2147483648 (2 GiB) |
/// | `maxContextEntries` | `BUILDGATE_MAX_CONTEXT_ENTRIES` | `--max-context-entries` | 100000 |
/// | `maxExpandedContextSize` | `BUILDGATE_MAX_EXPANDED_CONTEXT_SIZE` | `--max-expanded-context-size` | twice `maxContextSize` |
/// | `requestHeadTimeout` | `BUILDGATE_REQUEST_HEAD_TIMEOUT` | `--request-head-timeout` | 30 (seconds to send a request head) |
/// | `requestBodyTimeout` | `BUILDGATE_REQUEST_BODY_TIMEOUT` | `--request-body-timeout` | 60 (seconds a body may stall) |
/// | `requestBodyMinRate` | `BUILDGATE_REQUEST_BODY_MIN_RATE` | `--request-body-min-rate` | 1024 (bytes/s on average; 0: none) |
/// | `buildTimeout` | `BUILDGATE_BUILD_TIMEOUT` | `--build-timeout` | 3600 (seconds) |
/// | `queueTTL` | `BUILDGATE_QUEUE_TTL` | `--queue-ttl` | 3600 (seconds a build may wait queued before it ends `expired`) |
/// | `shutdownGrace` | `BUILDGATE_SHUTDOWN_GRACE` | `--shutdown-grace` | 240 (seconds running builds get on SIGTERM) |
/// | `uploadGrace` | `BUILDGATE_UPLOAD_GRACE` | `--upload-grace` | 30 (seconds an upload in flight gets on SIGTERM) |
/// | `minFreeDisk` | `BUILDGATE_MIN_FREE_DISK` | `--min-free-disk` | 1073741824 (bytes; uploads get 507 below it) |
/// | `contextRetentionDays` | `BUILDGATE_CONTEXT_RETENTION_DAYS` | `--context-retention-days` | 0 (deleted once its builds ended) |
/// | `logRetentionDays` | `BUILDGATE_LOG_RETENTION_DAYS` | `--log-retention-days` | 30 |
/// | `buildRetentionDays` | `BUILDGATE_BUILD_RETENTION_DAYS` | `--build-retention-days` | 90 |
/// | `leaseSeconds` | `BUILDGATE_LEASE_SECONDS` | `--lease-seconds` | 15 |
/// | `podman` | `BUILDGATE_PODMAN` | `--podman` | `podman` (on `PATH`) |
/// | `buildctl` | `BUILDGATE_BUILDCTL` | `--buildctl` | `buildctl` (on `PATH`), for `buildkit=` builders |
/// | `podmanArguments` | `BUILDGATE_PODMAN_ARGS` (space-separated) | `--podman-args` | `--runtime runc --cgroup-manager cgroupfs` |
/// | `migrationsDirectory` | `BUILDGATE_MIGRATIONS` | `--migrations` | `./migrations`, else `/usr/share/buildgate/migrations` |
/// | `secretKeyFile` | `BUILDGATE_SECRET_KEY_FILE` | `--secret-key-file` | `<data>/secret.key`, created on first start |
/// | `allowedGitHosts` | `BUILDGATE_ALLOWED_GIT_HOSTS` (comma-separated) | `--allowed-git-host` | any host |
/// | `publicURL` | `BUILDGATE_PUBLIC_URL` | `--public-url` | none (links in commit statuses need it) |
/// | `tenantMaxRunningBuilds` | `BUILDGATE_TENANT_MAX_RUNNING_BUILDS` | `--tenant-max-running-builds` | no limit |
/// | `tenantMaxQueuedBuilds` | `BUILDGATE_TENANT_MAX_QUEUED_BUILDS` | `--tenant-max-queued-builds` | 1000 |
/// | `tenantRequestsPerMinute` | `BUILDGATE_TENANT_REQUESTS_PER_MINUTE` | `--tenant-requests-per-minute` | 600 |
/// (per-tenant values set with `buildgate tenant limits` win over these defaults)
///
/// A builder is `ENGINE=ADDRESS[,capacity=N][,name=NAME][,network=host|none|bridge]`, e.g. `podman=unix:///run/podman/podman.sock` or
/// `podman=tcp://10.0.0.5:8888,capacity=2`. ENGINE is `podman`, `docker` (add `buildkit=true` for dockerd's BuildKit
/// builder) or `buildkit` (buildkitd, driven with `buildctl`). A `tcp://` address takes mutual TLS with
/// `tlscacert=FILE,tlscert=FILE,tlskey=FILE[,tlsservername=NAME]`, the docker and buildctl flag names. The config file (`--config` or `BUILDGATE_CONFIG`) is JSON with the
/// keys above; `builders` and `insecureRegistries` are arrays of strings there.
package struct BuildGateConfiguration: Sendable {
    package var host = "127.0.0.1"
    package var port = 8080
    package var dataDirectory: String
    /// Explicit builders; with no builders and no pools, the gateway starts and uses an embedded Podman service.
    package var builders: [BuilderEndpoint] = []
    /// Discovered pools of builders (DNS names, Kubernetes pods).
    package var pools: [BuilderPoolSpec] = []
    /// A JSON kubeconfig for Kubernetes pools outside the cluster; nil: the pod's service account.
    package var kubeconfig: String?
    /// A Docker `config.json`-style file with registry credentials (`{"auths":{"host":{"auth":"base64(user:pass)"}}}`).
    package var registryAuthFile: String?
    package var insecureRegistries: Set<String> = []
    package var limits = BuildGateAPILimits()
    package var leaseDuration: Duration = .seconds(15)
    package var retention = RetentionPolicy()
    /// On SIGTERM, how long running builds may take before they are settled as `interrupted`.
    package var shutdownGrace: Duration = .seconds(240)
    /// How long a client may take to send a request's head and body.
    package var requestTimeouts = RequestTimeouts()
    package var podmanExecutable = "podman"
    package var podmanArguments = ["--runtime", "runc", "--cgroup-manager", "cgroupfs"]
    package var buildctlExecutable = "buildctl"
    package var migrationsDirectory: String
    /// The gateway's external URL (`https://gate.example.com`), for links in commit statuses and callbacks.
    package var publicURL: String?
    /// A file holding the base64 of the 32-byte AES key that seals secrets at rest; nil: `<data>/secret.key`.
    package var secretKeyFile: String?

    package init(dataDirectory: String, migrationsDirectory: String) {
        self.dataDirectory = dataDirectory
        self.migrationsDirectory = migrationsDirectory
    }

    /// One source of settings; every key optional. Later layers are overridden by earlier ones in `resolve`.
    package struct Layer: Sendable, Decodable {
        package var listen: String?
        package var dataDirectory: String?
        package var builders: [String]?
        package var pools: [String]?
        package var kubeconfig: String?
        package var registryAuthFile: String?
        package var insecureRegistries: [String]?
        package var maxContextSize: Int64?
        package var maxContextEntries: Int?
        package var maxExpandedContextSize: Int64?
        package var requestHeadTimeout: Int?
        package var requestBodyTimeout: Int?
        package var requestBodyMinRate: Int?
        package var buildTimeout: Int?
        package var leaseSeconds: Int?
        package var queueTTL: Int?
        package var shutdownGrace: Int?
        package var uploadGrace: Int?
        package var minFreeDisk: Int64?
        package var contextRetentionDays: Int?
        package var logRetentionDays: Int?
        package var buildRetentionDays: Int?
        package var podman: String?
        package var podmanArguments: [String]?
        package var buildctl: String?
        package var migrationsDirectory: String?
        package var secretKeyFile: String?
        package var allowedGitHosts: [String]?
        package var tenantMaxRunningBuilds: Int?
        package var publicURL: String?
        package var tenantMaxQueuedBuilds: Int?
        package var tenantRequestsPerMinute: Int?

        package init() {}

        /// The `BUILDGATE_*` variables of `environment`.
        package init(environment: [String: String]) throws {
            func words(_ key: String, separator: Character = " ") -> [String]? {
                environment[key].map { $0.split(separator: separator).map { $0.trimmingCharacters(in: .whitespaces) } }
            }
            func number<T: LosslessStringConvertible>(_ key: String) throws -> T? {
                guard let text = environment[key] else { return nil }
                guard let value = T(text) else {
                    throw BuildGateError(.invalidParameter, "\(key) must be a number, got '\(text)'")
                }
                return value
            }
            listen = environment["BUILDGATE_LISTEN"]
            dataDirectory = environment["BUILDGATE_DATA_DIR"]
            builders = words("BUILDGATE_BUILDERS")
            pools = words("BUILDGATE_POOLS")
            kubeconfig = environment["BUILDGATE_KUBECONFIG"]
            registryAuthFile = environment["BUILDGATE_REGISTRY_AUTH_FILE"]
            insecureRegistries = words("BUILDGATE_INSECURE_REGISTRIES", separator: ",")
            maxContextSize = try number("BUILDGATE_MAX_CONTEXT_SIZE")
            maxContextEntries = try number("BUILDGATE_MAX_CONTEXT_ENTRIES")
            maxExpandedContextSize = try number("BUILDGATE_MAX_EXPANDED_CONTEXT_SIZE")
            requestHeadTimeout = try number("BUILDGATE_REQUEST_HEAD_TIMEOUT")
            requestBodyTimeout = try number("BUILDGATE_REQUEST_BODY_TIMEOUT")
            requestBodyMinRate = try number("BUILDGATE_REQUEST_BODY_MIN_RATE")
            buildTimeout = try number("BUILDGATE_BUILD_TIMEOUT")
            leaseSeconds = try number("BUILDGATE_LEASE_SECONDS")
            queueTTL = try number("BUILDGATE_QUEUE_TTL")
            shutdownGrace = try number("BUILDGATE_SHUTDOWN_GRACE")
            uploadGrace = try number("BUILDGATE_UPLOAD_GRACE")
            minFreeDisk = try number("BUILDGATE_MIN_FREE_DISK")
            contextRetentionDays = try number("BUILDGATE_CONTEXT_RETENTION_DAYS")
            logRetentionDays = try number("BUILDGATE_LOG_RETENTION_DAYS")
            buildRetentionDays = try number("BUILDGATE_BUILD_RETENTION_DAYS")
            podman = environment["BUILDGATE_PODMAN"]
            podmanArguments = words("BUILDGATE_PODMAN_ARGS")
            buildctl = environment["BUILDGATE_BUILDCTL"]
            migrationsDirectory = environment["BUILDGATE_MIGRATIONS"]
            secretKeyFile = environment["BUILDGATE_SECRET_KEY_FILE"]
            allowedGitHosts = words("BUILDGATE_ALLOWED_GIT_HOSTS", separator: ",")
            tenantMaxRunningBuilds = try number("BUILDGATE_TENANT_MAX_RUNNING_BUILDS")
            publicURL = environment["BUILDGATE_PUBLIC_URL"]
            tenantMaxQueuedBuilds = try number("BUILDGATE_TENANT_MAX_QUEUED_BUILDS")
            tenantRequestsPerMinute = try number("BUILDGATE_TENANT_REQUESTS_PER_MINUTE")
        }

        /// A JSON config file.
        package init(file path: String) throws {
            do {
                self = try JSONDecoder().decode(Layer.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
            } catch {
                throw BuildGateError(.invalidParameter, "cannot read config file \(path): \(error)")
            }
        }
    }

    /// Merges layers, most important first, over the defaults, and checks every value.
    package static func resolve(_ layers: [Layer], environment: [String: String]) throws -> BuildGateConfiguration {
        func first<T>(_ key: KeyPath<Layer, T?>) -> T? { layers.lazy.compactMap { $0[keyPath: key] }.first }

        let home = environment["HOME"] ?? "/root"
        let defaultData = environment["XDG_DATA_HOME"].map { "\($0)/buildgate" } ?? "\(home)/.local/share/buildgate"
        let defaultMigrations =
            FileManager.default.fileExists(atPath: "migrations") ? "migrations" : "/usr/share/buildgate/migrations"
        var configuration = BuildGateConfiguration(
            dataDirectory: first(\.dataDirectory) ?? defaultData,
            migrationsDirectory: first(\.migrationsDirectory) ?? defaultMigrations)
        if let listen = first(\.listen) {
            guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]),
                (0...65535).contains(port)
            else { throw BuildGateError(.invalidParameter, "listen address must be HOST:PORT, got '\(listen)'") }
            configuration.host = String(listen[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
            configuration.port = port
        }
        configuration.builders = try (first(\.builders) ?? []).enumerated().map { index, text in
            try parseBuilder(text, index: index)
        }
        guard Set(configuration.builders.map(\.name)).count == configuration.builders.count else {
            throw BuildGateError(.invalidParameter, "two builders have the same name; give each a name=…")
        }
        configuration.pools = try (first(\.pools) ?? []).map(parsePool)
        configuration.kubeconfig = first(\.kubeconfig)
        configuration.registryAuthFile = first(\.registryAuthFile)
        configuration.insecureRegistries = Set(first(\.insecureRegistries) ?? [])
        if let size = first(\.maxContextSize) {
            guard size > 0 else { throw BuildGateError(.invalidParameter, "maxContextSize must be positive") }
            configuration.limits.maxContextSize = size
        }
        // Twice the upload limit unless set: a gzip bomb is refused as soon as it expands past it.
        configuration.limits.maxExpandedContextSize = configuration.limits.maxContextSize * 2
        if let size = first(\.maxExpandedContextSize) {
            guard size > 0 else { throw BuildGateError(.invalidParameter, "maxExpandedContextSize must be positive") }
            configuration.limits.maxExpandedContextSize = size
        }
        if let seconds = first(\.requestHeadTimeout) {
            guard seconds > 0 else { throw BuildGateError(.invalidParameter, "requestHeadTimeout must be positive") }
            configuration.requestTimeouts.head = .seconds(seconds)
        }
        if let seconds = first(\.requestBodyTimeout) {
            guard seconds > 0 else { throw BuildGateError(.invalidParameter, "requestBodyTimeout must be positive") }
            configuration.requestTimeouts.bodyIdle = .seconds(seconds)
        }
        if let rate = first(\.requestBodyMinRate) {
            guard rate >= 0 else { throw BuildGateError(.invalidParameter, "requestBodyMinRate must not be negative") }
            configuration.requestTimeouts.bodyMinRate = rate
        }
        if let entries = first(\.maxContextEntries) {
            guard entries > 0 else { throw BuildGateError(.invalidParameter, "maxContextEntries must be positive") }
            configuration.limits.maxContextEntries = entries
        }
        if let timeout = first(\.buildTimeout) {
            guard timeout > 0 else { throw BuildGateError(.invalidParameter, "buildTimeout must be positive") }
            configuration.limits.defaultBuildTimeout = timeout
            configuration.limits.maxBuildTimeout = max(configuration.limits.maxBuildTimeout, timeout)
        }
        if let ttl = first(\.queueTTL) {
            guard ttl > 0 else { throw BuildGateError(.invalidParameter, "queueTTL must be positive") }
            configuration.limits.defaultQueueTTL = ttl
            configuration.limits.maxQueueTTL = max(configuration.limits.maxQueueTTL, ttl)
        }
        if let bytes = first(\.minFreeDisk) {
            guard bytes >= 0 else { throw BuildGateError(.invalidParameter, "minFreeDisk must not be negative") }
            configuration.limits.minFreeDiskBytes = bytes
        }
        func days(_ value: Int?, _ key: String) throws -> Duration? {
            guard let value else { return nil }
            guard value >= 0 else { throw BuildGateError(.invalidParameter, "\(key) must not be negative") }
            return .seconds(value * 86_400)
        }
        if let keep = try days(first(\.contextRetentionDays), "contextRetentionDays") { configuration.retention.contexts = keep }
        if let keep = try days(first(\.logRetentionDays), "logRetentionDays") { configuration.retention.logs = keep }
        if let keep = try days(first(\.buildRetentionDays), "buildRetentionDays") { configuration.retention.builds = keep }
        guard configuration.retention.logs <= configuration.retention.builds else {
            throw BuildGateError(.invalidParameter, "logRetentionDays must not exceed buildRetentionDays")
        }
        if let grace = first(\.shutdownGrace) {
            guard grace >= 0 else { throw BuildGateError(.invalidParameter, "shutdownGrace must not be negative") }
            configuration.shutdownGrace = .seconds(grace)
        }
        if let grace = first(\.uploadGrace) {
            guard grace >= 0 else { throw BuildGateError(.invalidParameter, "uploadGrace must not be negative") }
            configuration.limits.uploadShutdownGrace = .seconds(grace)
        }
        if let lease = first(\.leaseSeconds) {
            guard lease >= 2 else { throw BuildGateError(.invalidParameter, "leaseSeconds must be at least 2") }
            configuration.leaseDuration = .seconds(lease)
        }
        configuration.podmanExecutable = first(\.podman) ?? configuration.podmanExecutable
        configuration.podmanArguments = first(\.podmanArguments) ?? configuration.podmanArguments
        configuration.buildctlExecutable = first(\.buildctl) ?? configuration.buildctlExecutable
        configuration.secretKeyFile = first(\.secretKeyFile)
        configuration.limits.allowedGitHosts = first(\.allowedGitHosts) ?? []
        configuration.publicURL = first(\.publicURL).map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        let defaults = configuration.limits.tenantDefaults
        configuration.limits.tenantDefaults = TenantLimits(
            maxRunningBuilds: first(\.tenantMaxRunningBuilds) ?? defaults.maxRunningBuilds,
            maxQueuedBuilds: first(\.tenantMaxQueuedBuilds) ?? defaults.maxQueuedBuilds,
            requestsPerMinute: first(\.tenantRequestsPerMinute) ?? defaults.requestsPerMinute)
        return configuration
    }

    /// `ENGINE=ADDRESS[,capacity=N][,name=NAME][,network=MODE][,buildkit=true][,tlscacert=F,tlscert=F,tlskey=F[,tlsservername=N]]`
    package static func parseBuilder(_ text: String, index: Int) throws -> BuilderEndpoint {
        let fields = text.split(separator: ",").map(String.init)
        guard let main = fields.first, let equals = main.firstIndex(of: "="),
            let engine = BuilderEngine(rawValue: String(main[..<equals]))
        else {
            throw BuildGateError(
                .invalidParameter,
                "builder '\(text)' must be ENGINE=ADDRESS[,capacity=N][,name=NAME][,network=MODE] with ENGINE one of "
                    + BuilderEngine.allCases.map(\.rawValue).joined(separator: ", "))
        }
        var endpoint = BuilderEndpoint(
            name: "\(engine.rawValue)-\(index + 1)", engine: engine,
            address: try BuilderEndpoint.Address(parsing: String(main[main.index(after: equals)...])))
        var template = BuilderTemplate(engine: engine, port: .number(0))
        var name: String?
        for option in fields.dropFirst() {
            let parts = option.split(separator: "=", maxSplits: 1).map(String.init)
            if parts.first == "name", parts.count == 2, !parts[1].isEmpty {
                name = parts[1]
            } else {
                try applyOption(option, to: &template, text: text)
            }
        }
        try finishTLS(&template, text: text, address: endpoint.address)
        endpoint.name = name ?? endpoint.name
        endpoint.capacity = template.capacity
        endpoint.networkMode = template.networkMode
        endpoint.useBuildKit = template.useBuildKit
        endpoint.tls = template.tls
        return endpoint
    }

    /// `dns:NAME:PORT,engine=E[,capacity=N][,…]` or `kubernetes:NAMESPACE/LABEL=VALUE[+LABEL=VALUE…],engine=E,port=NAME|NUMBER[,…]`,
    /// with the same options as a builder.
    package static func parsePool(_ text: String) throws -> BuilderPoolSpec {
        let fields = text.split(separator: ",").map(String.init)
        var options = fields.dropFirst().map { $0 }
        func take(_ key: String) -> String? {
            guard let index = options.firstIndex(where: { $0.hasPrefix("\(key)=") }) else { return nil }
            return String(options.remove(at: index).dropFirst(key.count + 1))
        }
        guard let engineName = take("engine"), let engine = BuilderEngine(rawValue: engineName) else {
            throw BuildGateError(.invalidParameter, "pool '\(text)' needs engine=podman|docker|buildkit")
        }
        let head = fields.first ?? ""
        var template = BuilderTemplate(engine: engine, port: .number(0))
        if let port = take("port") { template.port = Int(port).map { .number($0) } ?? .named(port) }
        for option in options { try applyOption(option, to: &template, text: text) }
        if head.hasPrefix("dns:") {
            let target = head.dropFirst("dns:".count)
            guard let colon = target.lastIndex(of: ":"), let port = Int(target[target.index(after: colon)...]),
                (1...65535).contains(port), colon > target.startIndex
            else { throw BuildGateError(.invalidParameter, "pool '\(text)': expected dns:NAME:PORT") }
            template.port = .number(port)
            try finishTLS(&template, text: text, address: .tcp(host: "pool", port: port))
            return .dns(name: String(target[..<colon]), template: template)
        }
        if head.hasPrefix("kubernetes:") {
            let target = head.dropFirst("kubernetes:".count)
            guard let slash = target.firstIndex(of: "/"), slash > target.startIndex, target.index(after: slash) < target.endIndex
            else { throw BuildGateError(.invalidParameter, "pool '\(text)': expected kubernetes:NAMESPACE/LABEL=VALUE[+LABEL=VALUE]") }
            if case .number(0) = template.port {
                throw BuildGateError(.invalidParameter, "pool '\(text)': give port=NUMBER or port=CONTAINER-PORT-NAME")
            }
            try finishTLS(&template, text: text, address: .tcp(host: "pool", port: 1))
            let selector = target[target.index(after: slash)...].replacingOccurrences(of: "+", with: ",")
            return .kubernetes(namespace: String(target[..<slash]), labelSelector: selector, template: template)
        }
        throw BuildGateError(.invalidParameter, "pool '\(text)' must start with dns: or kubernetes:")
    }

    private static func applyOption(_ option: String, to template: inout BuilderTemplate, text: String) throws {
        let parts = option.split(separator: "=", maxSplits: 1).map(String.init)
        let engine = template.engine
        switch (parts.first, parts.count) {
        case ("capacity", 2):
            guard let capacity = Int(parts[1]), capacity >= 1 else {
                throw BuildGateError(.invalidParameter, "'\(text)': capacity must be 1 or more")
            }
            template.capacity = capacity
        case ("network", 2) where (engine == .buildkit ? ["host", "none"] : ["host", "none", "bridge", "default"]).contains(parts[1]):
            template.networkMode = parts[1]
        case ("buildkit", 2) where engine == .docker && ["true", "false"].contains(parts[1]):
            template.useBuildKit = parts[1] == "true"
        case ("tlscacert", 2), ("tlscert", 2), ("tlskey", 2), ("tlsservername", 2):
            var files = template.tls ?? BuilderEndpoint.TLSFiles(caCertificate: "")
            switch parts[0] {
            case "tlscacert": files.caCertificate = parts[1]
            case "tlscert": files.clientCertificate = parts[1]
            case "tlskey": files.clientKey = parts[1]
            default: files.serverName = parts[1]
            }
            template.tls = files
        default:
            throw BuildGateError(.invalidParameter, "'\(text)': unknown option '\(option)'")
        }
    }

    /// Checks the TLS options gathered from a builder or pool: a tcp:// address, a CA, a certificate with its key,
    /// files that can be read.
    private static func finishTLS(_ template: inout BuilderTemplate, text: String, address: BuilderEndpoint.Address) throws {
        guard let files = template.tls else { return }
        guard case .tcp = address else {
            throw BuildGateError(.invalidParameter, "builder '\(text)': TLS options need a tcp:// address")
        }
        guard !files.caCertificate.isEmpty else {
            throw BuildGateError(.invalidParameter, "builder '\(text)': TLS needs tlscacert=FILE (the CA of the engine's certificate)")
        }
        guard (files.clientCertificate == nil) == (files.clientKey == nil) else {
            throw BuildGateError(.invalidParameter, "builder '\(text)': tlscert and tlskey go together")
        }
        for (key, file) in [("tlscacert", files.caCertificate), ("tlscert", files.clientCertificate), ("tlskey", files.clientKey)] {
            if let file, !FileManager.default.isReadableFile(atPath: file) {
                throw BuildGateError(.invalidParameter, "builder '\(text)': \(key) file '\(file)' cannot be read")
            }
        }
    }
}

/// A discovered pool of builders.
package enum BuilderPoolSpec: Sendable, Equatable {
    /// Every address of a DNS name (a headless Service), re-resolved periodically.
    case dns(name: String, template: BuilderTemplate)
    /// Ready pods matching a label selector, listed and watched through the Kubernetes API.
    case kubernetes(namespace: String, labelSelector: String, template: BuilderTemplate)
}
