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

    package var engine: BuilderEngine
    package var port: Port
    package var capacity = 1
    package var networkMode: String?
    package var useBuildKit = false
    package var tls: BuilderEndpoint.TLSFiles?

    package init(engine: BuilderEngine, port: Port) {
        self.engine = engine
        self.port = port
    }

    /// The endpoint for one discovered builder.
    package func endpoint(name: String, host: String, port: Int, engine: BuilderEngine? = nil, capacity: Int? = nil)
        -> BuilderEndpoint
    {
        var endpoint = BuilderEndpoint(
            name: name, engine: engine ?? self.engine, address: .tcp(host: host, port: port),
            capacity: capacity ?? self.capacity,
            networkMode: networkMode)
        endpoint.useBuildKit = useBuildKit
        endpoint.tls = tls
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
                addresses.map { template.endpoint(name: "\(name)/\($0)", host: $0, port: port) }, from: source)
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
