import Foundation
import Logging
import ServiceLifecycle

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// How the builders of one discovered pool are reached: everything but their addresses, which discovery finds.
package struct BuilderTemplate: Sendable, Equatable {
    package enum Port: Sendable, Equatable {
        case number(Int)
        /// A named container port (Kubernetes).
        case named(String)
    }

    /// What a discovered builder says of itself (a Kubernetes pod's `buildgate.dev/…` labels and annotations), over
    /// the template's settings. Nil keeps the template's.
    package struct Overrides: Sendable, Equatable {
        package var engine: BuilderEngine?
        package var capacity: Int?
        /// Docker only: run builds with BuildKit (`version=2`).
        package var useBuildKit: Bool?
        /// False: this builder speaks plain HTTP although the pool has TLS material.
        package var tls: Bool?
        /// The name in this builder's server certificate; turns TLS on with the pool's CA and client certificate.
        package var tlsServerName: String?

        package init(
            engine: BuilderEngine? = nil, capacity: Int? = nil, useBuildKit: Bool? = nil, tls: Bool? = nil,
            tlsServerName: String? = nil
        ) {
            self.engine = engine
            self.capacity = capacity
            self.useBuildKit = useBuildKit
            self.tls = tls
            self.tlsServerName = tlsServerName
        }
    }

    /// The engine of every builder; nil when each builder names its own (a pool of mixed Kubernetes pods).
    package var engine: BuilderEngine?
    package var port: Port
    package var capacity = 1
    package var networkMode: String?
    package var useBuildKit = false
    /// The CA (and client certificate) for builders reached over TLS.
    package var tls: BuilderEndpoint.TLSFiles?

    package init(engine: BuilderEngine?, port: Port) {
        self.engine = engine
        self.port = port
    }

    /// The endpoint for one discovered builder.
    ///
    /// - Throws: `invalidParameter` when neither the builder nor the template names an engine, or the builder asks
    ///   for TLS in a pool without a CA: such a builder is left out of the pool, never reached some other way.
    package func endpoint(name: String, host: String, port: Int, overrides: Overrides = .init()) throws(BuildGateError)
        -> BuilderEndpoint
    {
        guard let engine = overrides.engine ?? engine else {
            throw BuildGateError(.invalidParameter, "it names no engine (buildgate.dev/engine) and its pool gives none")
        }
        var endpoint = BuilderEndpoint(
            name: name, engine: engine, address: .tcp(host: host, port: port),
            capacity: overrides.capacity ?? capacity, networkMode: networkMode)
        endpoint.useBuildKit = engine == .docker && (overrides.useBuildKit ?? useBuildKit)
        if let serverName = overrides.tlsServerName {
            guard var files = tls else {
                throw BuildGateError(
                    .invalidParameter, "it asks for TLS (buildgate.dev/tls-server-name) but its pool has no tlscacert")
            }
            files.serverName = serverName
            endpoint.tls = files
        } else {
            endpoint.tls = overrides.tls == false ? nil : tls
        }
        return endpoint
    }
}

/// Keeps the pool's builders from DNS: every A/AAAA record of `name` (a headless Service) is a builder, re-resolved
/// every `interval`. A failed lookup keeps the last answer: a DNS hiccup never empties the pool.
package struct DNSBuilderDiscovery: Service {
    private let name: String
    private let template: BuilderTemplate
    private let pool: BuilderPool
    private let interval: Duration
    private let logger: Logger

    package init(
        name: String, template: BuilderTemplate, pool: BuilderPool, interval: Duration = .seconds(10), logger: Logger
    ) {
        self.name = name
        self.template = template
        self.pool = pool
        self.interval = interval
        self.logger = logger
    }

    package var source: String { "dns:\(name)" }

    package func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                resolveOnce()
                try? await Task.sleep(for: interval)
            }
        }
    }

    /// One lookup, applied to the pool (or logged and skipped when it fails).
    package func resolveOnce() {
        guard case .number(let port) = template.port else { return }
        do {
            let addresses = try Self.resolve(name)
            pool.update(
                addresses.compactMap { try? template.endpoint(name: "\(name)/\($0)", host: $0, port: port) },
                from: source)
        } catch {
            logger.warning(
                "resolving builders failed; keeping the last answer",
                metadata: ["buildgate.dns.name": "\(name)", "buildgate.error": "\(error)"])
        }
    }

    /// The IPv4 and IPv6 addresses of `name`, sorted, without duplicates.
    static func resolve(_ name: String) throws -> [String] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Glibc)
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
            hints.ai_socktype = SOCK_STREAM
        #endif
        var result: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(name, nil, &hints, &result)
        guard status == 0 else {
            throw BuildGateError(.internalError, "cannot resolve \(name): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(result) }
        var addresses: Set<String> = []
        var cursor = result
        while let info = cursor {
            var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            if getnameinfo(
                info.pointee.ai_addr, info.pointee.ai_addrlen, &host, socklen_t(host.count), nil, 0, NI_NUMERICHOST)
                == 0
            {
                addresses.insert(String(cString: host))
            }
            cursor = info.pointee.ai_next
        }
        return addresses.sorted()
    }
}
