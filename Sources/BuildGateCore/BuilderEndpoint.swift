/// The engines the gateway can drive.
package enum BuilderEngine: String, Sendable, Codable, CaseIterable {
    case podman
    case docker
    case buildkit
}

/// One builder the gateway can send builds to, e.g. `podman=unix:///run/podman.sock`.
package struct BuilderEndpoint: Hashable, Sendable, CustomStringConvertible {
    package enum Address: Hashable, Sendable, CustomStringConvertible {
        case unix(path: String)
        case tcp(host: String, port: Int)

        package var description: String {
            switch self {
            case .unix(let path): "unix://\(path)"
            case .tcp(let host, let port): "tcp://\(host):\(port)"
            }
        }

        /// Parses `unix:///path` or `tcp://host:port`.
        package init(parsing text: String) throws(BuildGateError) {
            if text.hasPrefix("unix://") {
                let path = String(text.dropFirst("unix://".count))
                guard path.hasPrefix("/") else {
                    throw BuildGateError(.invalidParameter, "'\(text)': a unix socket address needs an absolute path")
                }
                self = .unix(path: path)
            } else if text.hasPrefix("tcp://") {
                let hostPort = text.dropFirst("tcp://".count)
                guard let colon = hostPort.lastIndex(of: ":"),
                    let port = Int(hostPort[hostPort.index(after: colon)...]),
                    (1...65535).contains(port), colon > hostPort.startIndex
                else { throw BuildGateError(.invalidParameter, "'\(text)': expected tcp://host:port") }
                self = .tcp(host: String(hostPort[..<colon]), port: port)
            } else {
                throw BuildGateError(.invalidParameter, "'\(text)': expected unix:///path or tcp://host:port")
            }
        }
    }

    /// A stable name, used in logs, the build JSON and the queue's `builder` column.
    package var name: String
    package var engine: BuilderEngine
    package var address: Address
    /// How many builds it may run at once.
    package var capacity: Int
    /// The network `RUN` steps use (`networkmode`), e.g. `host` for a dockerd started without a bridge; nil
    /// leaves the engine's default.
    package var networkMode: String?
    /// For dockerd: build with its BuildKit builder (`version=2`) instead of the classic one.
    package var useBuildKit = false
    /// Mutual TLS for a `tcp://` address (dockerd's `--tlsverify`, buildkitd's `--tlscacert`…); nil: plain TCP.
    package var tls: TLSFiles?

    /// PEM files for mutual TLS, named as the docker and buildctl flags name them.
    package struct TLSFiles: Hashable, Sendable {
        /// The CA that signed the engine's server certificate.
        package var caCertificate: String
        /// The gateway's client certificate and key; nil when the engine does not ask for one.
        package var clientCertificate: String?
        package var clientKey: String?
        /// The name to expect in the server certificate, when it differs from the address's host.
        package var serverName: String?

        package init(
            caCertificate: String, clientCertificate: String? = nil, clientKey: String? = nil, serverName: String? = nil
        ) {
            self.caCertificate = caCertificate
            self.clientCertificate = clientCertificate
            self.clientKey = clientKey
            self.serverName = serverName
        }
    }

    package init(name: String, engine: BuilderEngine, address: Address, capacity: Int = 1, networkMode: String? = nil) {
        self.name = name
        self.engine = engine
        self.address = address
        self.capacity = capacity
        self.networkMode = networkMode
    }

    package var description: String { "\(name) (\(engine.rawValue), \(address)\(tls == nil ? "" : ", TLS"))" }
}
