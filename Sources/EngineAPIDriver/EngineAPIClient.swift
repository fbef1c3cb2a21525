import AsyncHTTPClient
import BuildGateCore
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL

/// A thin client for one Engine API endpoint (unix socket or TCP): URLs, the `Host` header, error text.
struct EngineAPIClient: Sendable {
    let endpoint: BuilderEndpoint
    let httpClient: HTTPClient

    private var baseURL: String {
        switch endpoint.address {
        case .unix(let path):
            // AsyncHTTPClient takes the socket path percent-encoded in the host part.
            "http+unix://\(URLQuery.percentEncoded(path))"
        case .tcp(let host, let port):
            "\(endpoint.tls == nil ? "http" : "https")://\(host.contains(":") ? "[\(host)]" : host):\(port)"
        }
    }

    /// Mutual TLS as dockerd's `--tlsverify` expects it: the engine's CA, and the gateway's certificate and key.
    /// The files are read per connection, so rotated certificates are picked up without a restart.
    ///
    /// A `serverName` means the address is one the certificate cannot name (a pod IP): the chain is still checked
    /// against the pool's own CA, the host name is not (AsyncHTTPClient cannot check another name than the URL's).
    static func tlsConfiguration(_ files: BuilderEndpoint.TLSFiles) throws -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .file(files.caCertificate)
        if files.serverName != nil { tls.certificateVerification = .noHostnameVerification }
        if let certificate = files.clientCertificate, let key = files.clientKey {
            tls.certificateChain = try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) }
            tls.privateKey = .file(key)
        }
        return tls
    }

    /// The largest request head sent in front of a streamed body. AsyncHTTPClient 1.37 stops the process
    /// (`HTTPRequestStateMachine`: "request body producing can not start before we have successfully send the
    /// header") when a head fills the channel past its 64 KiB write watermark and the channel turns writable again
    /// before the head is written; a head well under the watermark never does.
    static let maxHeadBeforeBody = 32 * 1024

    /// A request refused here, before anything is sent: its head would be too large (see `maxHeadBeforeBody`).
    struct RequestHeadTooLarge: Error, CustomStringConvertible {
        var bytes: Int
        var description: String {
            "the build's parameters make an Engine API request head of \(bytes) bytes, over the \(EngineAPIClient.maxHeadBeforeBody) "
                + "the gateway sends to an engine; use fewer or shorter build arguments and labels"
        }
    }

    func execute(
        _ method: HTTPMethod,
        _ path: String,
        query: [(String, String)] = [],
        headers: HTTPHeaders = [:],
        body: HTTPClientRequest.Body?,
        timeout: TimeAmount
    ) async throws -> HTTPClientResponse {
        let target = path + URLQuery.encode(query)
        if body != nil {
            // Request line, headers as "name: value\r\n", Host, and room for what AsyncHTTPClient adds (length, …).
            let bytes =
                target.utf8.count + headers.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count + 4 } + 256
            guard bytes <= Self.maxHeadBeforeBody else { throw RequestHeadTooLarge(bytes: bytes) }
        }
        var request = HTTPClientRequest(url: baseURL + target)
        request.method = method
        request.headers = headers
        // Over a unix socket AsyncHTTPClient sends no Host header, and Podman answers 400 without one.
        request.headers.replaceOrAdd(name: "Host", value: "localhost")
        request.body = body
        if let files = endpoint.tls {
            request.tlsConfiguration = try Self.tlsConfiguration(files)
        }
        return try await httpClient.execute(request, timeout: timeout)
    }

    /// "Podman Engine 4.3.1 (API 1.41) at unix:///…", from the headers of `/_ping` alone: what a build's log header
    /// needs, without `/version` (Podman spends about 270 ms there asking runc, conmon and dpkg for theirs, which
    /// once made a quarter of a second of every build's start).
    func ping() async throws -> String {
        let ping = try await execute(.GET, "/_ping", body: nil, timeout: .seconds(10))
        _ = try await ping.body.collect(upTo: 1 << 10)
        guard ping.status == .ok else {
            throw BuildGateError(.internalError, "GET /_ping answered \(ping.status.code)")
        }
        // `Server: Libpod/4.3.1 (linux)` or `Server: Docker/20.10.24+dfsg1 (linux)`.
        let server = ping.headers.first(name: "Server")?.split(separator: " ").first?.split(
            separator: "/", maxSplits: 1)
        let name =
            switch server?.first {
            case "Libpod": "Podman Engine"
            case "Docker": "Docker Engine"
            case let other?: String(other)
            case nil: "Engine"
            }
        let version = server.flatMap { $0.count == 2 ? String($0[1]) : nil } ?? "?"
        let api = ping.headers.first(name: "Api-Version") ?? "?"
        return "\(name) \(version) (API \(api)) at \(endpoint.address)"
    }

    /// The engine's own platform, from `/version` (the slow call: see `ping`).
    func platforms() async throws -> [Platform] {
        struct Version: Decodable {
            enum CodingKeys: String, CodingKey {
                case os = "Os"
                case arch = "Arch"
            }
            var os: String?
            var arch: String?
        }
        let response = try await execute(.GET, "/version", body: nil, timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 1 << 20)
        guard response.status == .ok else {
            throw BuildGateError(.internalError, "GET /version answered \(response.status.code)")
        }
        let version = try JSONDecoder().decode(Version.self, from: Data(body.readableBytesView))
        let platform = version.os.flatMap { os in version.arch.flatMap { try? Platform(parsing: "\(os)/\($0)") } }
        return platform.map { [$0] } ?? []
    }

    /// Podman's build (working) containers, which `podman ps --external` lists.
    func buildContainers() async throws -> Set<String> {
        struct Container: Decodable {
            enum CodingKeys: String, CodingKey { case id = "Id" }
            var id: String
        }
        let response = try await execute(
            .GET, "/v4.0.0/libpod/containers/json", query: [("all", "true"), ("external", "true")], body: nil,
            timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 16 << 20)
        guard response.status == .ok else {
            throw BuildGateError(.internalError, "listing containers answered \(response.status.code)")
        }
        return Set(try JSONDecoder().decode([Container].self, from: Data(body.readableBytesView)).map(\.id))
    }

    /// The `message` (or `cause`) of an engine's JSON error body, or the body's text.
    static func errorMessage(of response: HTTPClientResponse) async throws -> String {
        struct ErrorBody: Decodable { var message: String?; var cause: String? }
        let body = try await response.body.collect(upTo: 1 << 20)
        let data = Data(body.readableBytesView)
        if let decoded = try? JSONDecoder().decode(ErrorBody.self, from: data),
            let message = decoded.message ?? decoded.cause
        {
            return message
        }
        return String(decoding: data.prefix(1000), as: UTF8.self)
    }

    static func explain(_ error: any Error) -> String {
        if let error = error as? BuildGateError { return error.message }
        return "\(error)"
    }

}
