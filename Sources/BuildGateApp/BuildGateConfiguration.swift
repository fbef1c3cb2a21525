import BuildGateAPI
import BuildGateCore
import Foundation

/// Everything `buildgate serve` can be told, typed. Resolved from layers: flags > environment > config file >
/// defaults; every setting is declared once, in `BuildGateConfiguration.settings` (key, environment variable, flag,
/// default, help, and how it is checked and applied), and the flags, the environment, the file, `--help` and the
/// README's table all come from that list.
///
/// A builder is `ENGINE=ADDRESS[,capacity=N][,name=NAME][,network=host|none|bridge]`, e.g. `podman=unix:///run/podman/podman.sock` or
/// `podman=tcp://10.0.0.5:8888,capacity=2`. ENGINE is `podman`, `docker` (add `buildkit=true` for dockerd's BuildKit
/// builder) or `buildkit` (buildkitd, driven with `buildctl`). A `tcp://` address takes mutual TLS with
/// `tlscacert=FILE,tlscert=FILE,tlskey=FILE[,tlsservername=NAME]`, the docker and buildctl flag names. The config file
/// (`--config` or `BUILDGATE_CONFIG`) is JSON with the settings' keys; list settings are arrays of strings there.
package struct BuildGateConfiguration: Sendable {
    package var host = "127.0.0.1"
    package var port = 8080
    package var dataDirectory: String
    /// Explicit builders; with no builders and no pools, the gateway starts and uses an embedded Podman service.
    package var builders: [BuilderEndpoint] = []
    /// Discovered pools of builders (DNS names, Kubernetes pods).
    package var pools: [BuilderPoolSpec] = []
    /// A kubeconfig (YAML or JSON) for Kubernetes pools outside the cluster; nil: the pod's service account.
    package var kubeconfig: String?
    /// A Docker `config.json`-style file with registry credentials (`{"auths":{"host":{"auth":"base64(user:pass)"}}}`).
    package var registryAuthFile: String?
    package var insecureRegistries: Set<String> = []
    package var limits = BuildGateAPILimits()
    package var leaseDuration: Duration = .seconds(15)
    /// Tries per build when its builder or the gateway running it goes away before a result.
    package var maxAttempts = 3
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
    /// `postgres://…` when several gateways share one PostgreSQL database; nil: SQLite in the data directory.
    package var databaseURL: String?
    package var databasePasswordFile: String?

    package init(dataDirectory: String, migrationsDirectory: String) {
        self.dataDirectory = dataDirectory
        self.migrationsDirectory = migrationsDirectory
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
        let head = fields.first ?? ""
        let engine = take("engine")
        guard engine.map({ BuilderEngine(rawValue: $0) != nil }) ?? head.hasPrefix("kubernetes:") else {
            throw BuildGateError(.invalidParameter, "pool '\(text)' needs engine=podman|docker|buildkit")
        }
        var template = BuilderTemplate(engine: engine.flatMap(BuilderEngine.init(rawValue:)), port: .number(0))
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
            guard let slash = target.firstIndex(of: "/"), slash > target.startIndex,
                target.index(after: slash) < target.endIndex
            else {
                throw BuildGateError(
                    .invalidParameter, "pool '\(text)': expected kubernetes:NAMESPACE/LABEL=VALUE[+LABEL=VALUE]")
            }
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
        case ("network", 2)
        where (engine == .buildkit || engine == nil ? ["host", "none"] : ["host", "none", "bridge", "default"])
            .contains(parts[1]):
            template.networkMode = parts[1]
        case ("buildkit", 2) where engine != .podman && engine != .buildkit && ["true", "false"].contains(parts[1]):
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
    private static func finishTLS(_ template: inout BuilderTemplate, text: String, address: BuilderEndpoint.Address)
        throws
    {
        guard let files = template.tls else { return }
        guard case .tcp = address else {
            throw BuildGateError(.invalidParameter, "builder '\(text)': TLS options need a tcp:// address")
        }
        guard !files.caCertificate.isEmpty else {
            throw BuildGateError(
                .invalidParameter, "builder '\(text)': TLS needs tlscacert=FILE (the CA of the engine's certificate)")
        }
        guard (files.clientCertificate == nil) == (files.clientKey == nil) else {
            throw BuildGateError(.invalidParameter, "builder '\(text)': tlscert and tlskey go together")
        }
        for (key, file) in [
            ("tlscacert", files.caCertificate), ("tlscert", files.clientCertificate), ("tlskey", files.clientKey),
        ] {
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
