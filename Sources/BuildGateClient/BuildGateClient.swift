import AsyncHTTPClient
import BuildGateCore
import Foundation
import NIOCore
import NIOHTTP1

/// The gateway's public HTTP API, as the `buildgate` command line uses it: nothing here knows the server's internals,
/// only `openapi.yaml` (of `BuildGateCore` it uses the percent-encoder alone). Every call has a timeout; a refusal comes back as `BuildGateClientError.refused` with the
/// server's error code and message.
package struct BuildGateClient: Sendable {
    /// The gateway's base URL, without a trailing `/` (`http://127.0.0.1:8080`).
    package let baseURL: String
    package let token: String?
    private let http: HTTPClient

    /// An HTTP client for a command-line run: a gateway that refuses the connection is reported at once (the shared
    /// client keeps trying to connect until the request's deadline, 90 s were seen), and a connection takes at most
    /// 10 s. Shut it down when done.
    package static func makeHTTPClient() -> HTTPClient {
        var configuration = HTTPClient.Configuration()
        configuration.timeout.connect = .seconds(10)
        configuration.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }

    package init(baseURL: String, token: String?, http: HTTPClient = .shared) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.token = token
        self.http = http
    }

    /// Uploads a build context (a tar, gzip-compressed when `compressed`) and queues its build; `query` holds the
    /// build's parameters as `POST /v1/builds` takes them.
    package func submit(context: HTTPClientRequest.Body, compressed: Bool, query: [(String, String)]) async throws
        -> ClientBuild
    {
        var request = request("/v1/builds" + URLQuery.encode(query), method: .POST)
        request.headers.add(name: "Content-Type", value: compressed ? "application/gzip" : "application/x-tar")
        request.body = context
        return try await decode(ClientBuild.self, try await execute(request, timeout: .hours(24)))
    }

    /// Whether this tenant may build the stored context `digest` (`sha256:<hex>`) without sending it again.
    package func hasContext(_ digest: String) async throws -> Bool {
        do {
            _ = try await execute(request("/v1/contexts/\(digest)", method: .HEAD), timeout: .seconds(60))
            return true
        } catch BuildGateClientError.refused(status: 404, _, _) {
            return false
        }
    }

    /// Queues a build of a context the gateway already keeps for this tenant (nothing is uploaded).
    package func submit(storedContext digest: String, query: [(String, String)]) async throws -> ClientBuild {
        let request = request("/v1/builds" + URLQuery.encode(query + [("context", digest)]), method: .POST)
        return try await decode(ClientBuild.self, try await execute(request, timeout: .seconds(120)))
    }

    package func build(_ id: String) async throws -> ClientBuild {
        try await decode(ClientBuild.self, try await execute(request("/v1/builds/\(id)"), timeout: .seconds(60)))
    }

    /// The build's JSON exactly as the gateway sends it.
    package func buildJSON(_ id: String) async throws -> Data {
        let response = try await execute(request("/v1/builds/\(id)"), timeout: .seconds(60))
        return Data(try await response.body.collect(upTo: 16 << 20).readableBytesView)
    }

    package func cancel(_ id: String) async throws -> ClientBuild {
        try await decode(
            ClientBuild.self,
            try await execute(request("/v1/builds/\(id)/cancel", method: .POST), timeout: .seconds(60)))
    }

    package func rerun(_ id: String) async throws -> ClientBuild {
        try await decode(
            ClientBuild.self, try await execute(request("/v1/builds/\(id)/rerun", method: .POST), timeout: .seconds(60))
        )
    }

    /// The newest builds first, at most `limit`, of one status or all.
    package func builds(status: String?, limit: Int) async throws -> [ClientBuild] {
        var query = [("limit", String(limit))]
        if let status { query.append(("status", status)) }
        struct Page: Decodable { var builds: [ClientBuild] }
        let response = try await execute(request("/v1/builds" + URLQuery.encode(query)), timeout: .seconds(60))
        return try await decode(Page.self, response).builds
    }

    /// Follows a build's log from `offset` until the build is over and every byte is read, handing each piece to
    /// `body` as it arrives. Returns the offset after the last byte.
    @discardableResult
    package func followLog(_ id: String, from offset: Int64 = 0, _ body: (ByteBuffer) async throws -> Void)
        async throws -> Int64
    {
        let response = try await execute(
            request("/v1/builds/\(id)/logs?follow=true&offset=\(offset)"), timeout: .hours(24))
        var next = offset
        for try await piece in response.body {
            next += Int64(piece.readableBytes)
            try await body(piece)
        }
        return next
    }

    /// The log as it is now.
    package func log(_ id: String) async throws -> ByteBuffer {
        let response = try await execute(request("/v1/builds/\(id)/logs"), timeout: .seconds(120))
        return try await response.body.collect(upTo: 1 << 30)
    }

    // MARK: - HTTP

    private func request(_ path: String, method: HTTPMethod = .GET) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        request.headers.add(name: "User-Agent", value: "buildgate-cli")
        return request
    }

    /// Runs `request`; an answer of 400 or more is thrown as the server's error, a connection that cannot be made
    /// as `unreachable`.
    private func execute(_ request: HTTPClientRequest, timeout: TimeAmount) async throws -> HTTPClientResponse {
        let response: HTTPClientResponse
        do {
            response = try await http.execute(request, timeout: timeout)
        } catch let error as HTTPClientError where error == .cancelled {
            throw CancellationError()
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw BuildGateClientError.unreachable("\(baseURL): \(error)")
        }
        guard response.status.code >= 400 else { return response }
        let body = try? await response.body.collect(upTo: 1 << 20)
        struct Envelope: Decodable {
            struct Detail: Decodable { var code: String; var message: String }
            var error: Detail
        }
        let detail = body.flatMap { try? JSONDecoder().decode(Envelope.self, from: Data($0.readableBytesView)) }
        throw BuildGateClientError.refused(
            status: Int(response.status.code), code: detail?.error.code ?? "httpError",
            message: detail?.error.message ?? response.status.reasonPhrase)
    }

    private func decode<T: Decodable>(_ type: T.Type, _ response: HTTPClientResponse) async throws -> T {
        let body = try await response.body.collect(upTo: 16 << 20)
        do {
            return try JSONDecoder().decode(T.self, from: Data(body.readableBytesView))
        } catch {
            throw BuildGateClientError.unexpectedAnswer("the gateway's answer is not the JSON expected: \(error)")
        }
    }
}

/// Why a call to the gateway did not give what was asked.
package enum BuildGateClientError: Error, CustomStringConvertible {
    /// The gateway answered with an error: its status, code and message.
    case refused(status: Int, code: String, message: String)
    /// No connection could be made, or it broke.
    case unreachable(String)
    /// The gateway answered something this client cannot read.
    case unexpectedAnswer(String)

    package var description: String {
        switch self {
        case .refused(let status, let code, let message): "the gateway refused (\(status) \(code)): \(message)"
        case .unreachable(let detail): "the gateway cannot be reached: \(detail)"
        case .unexpectedAnswer(let detail): detail
        }
    }
}

/// A build as `GET /v1/builds/{id}` describes it (the fields the command line shows).
package struct ClientBuild: Decodable, Sendable, Equatable {
    package struct Context: Decodable, Sendable, Equatable {
        package var digest: String
        package var size: Int64
    }
    package struct Image: Decodable, Sendable, Equatable {
        package var reference: String
        package var digest: String?
    }
    package struct Queue: Decodable, Sendable, Equatable {
        package var position: Int
        package var reason: String?
    }
    package var id: String
    package var status: String
    package var reason: String?
    package var message: String?
    package var createdAt: String
    package var startedAt: String?
    package var finishedAt: String?
    package var context: Context?
    package var images: [Image]
    package var queue: Queue?

    /// Whether the build is over.
    package var isFinished: Bool {
        ["succeeded", "failed", "cancelled", "timedOut", "expired"].contains(status)
    }
}
