import BuildGateCore
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1

/// An error as a client sees it: a status and `{"error":{"code":…,"message":…}}`.
struct APIError: HTTPResponseError {
    var status: HTTPResponse.Status
    var code: String
    var message: String
    var headers: HTTPFields = [:]

    init(status: HTTPResponse.Status, code: String, message: String, headers: HTTPFields = [:]) {
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
    }

    /// The HTTP face of a `BuildGateError`. Unknown codes are internal errors and show nothing of their cause.
    init(_ error: BuildGateError) {
        let status: HTTPResponse.Status =
            switch error.code {
            case .invalidParameter, .corruptArchive: .badRequest
            case .contextTooLarge: .contentTooLarge
            case .unsupportedMediaType: .unsupportedMediaType
            case .invalidContext, .noCapableBuilder, .noSuchSecret: .unprocessableContent
            case .notFound: .notFound
            case .conflict: .conflict
            case .rangeNotSatisfiable: .rangeNotSatisfiable
            case .unauthorized: .unauthorized
            case .forbidden: .forbidden
            case .tooManyRequests: .tooManyRequests
            case .insufficientStorage: HTTPResponse.Status(code: 507, reasonPhrase: "Insufficient Storage")
            default: .internalServerError
            }
        let message = status == .internalServerError ? "internal error" : error.message
        var headers: HTTPFields = [:]
        if status == .unauthorized { headers[.wwwAuthenticate] = "Bearer" }
        self.init(
            status: status, code: status == .internalServerError ? "internalError" : error.code.rawValue,
            message: message, headers: headers)
    }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        let data = try JSONEncoder().encode(ErrorBody(error: .init(code: code, message: message)))
        var headers = self.headers
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

/// Turns every error a route throws into the API's error shape: `BuildGateError`s by their code, Hummingbird's
/// own (unknown route, wrong method) by their status, anything else into a 500 whose cause goes to the server log.
struct ErrorShapeMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            throw error
        } catch let error as BuildGateError {
            if APIError(error).status == .internalServerError {
                context.logger.error(
                    "request failed", metadata: ["buildgate.error": "\(error)", "http.path": "\(request.uri.path)"])
            }
            throw APIError(error)
        } catch let error as RequestTimeoutError {
            throw APIError(
                status: .requestTimeout, code: "requestTimeout", message: error.description,
                headers: [.connection: "close"])
        } catch let error as NIOTooManyBytesError {
            // A body collected with a limit (JSON, secrets, webhooks) that arrived without a Content-Length saying so.
            throw APIError(
                status: .contentTooLarge, code: "contextTooLarge",
                message:
                    "the request body is over this request's limit of \(error.maxBytes.map(String.init) ?? "?") bytes")
        } catch let error as HTTPParserError {
            // The body's framing broke (a chunk size that is not hex, a body shorter than its Content-Length…).
            throw APIError(
                status: .badRequest, code: "malformedRequest",
                message: "the request body is not valid HTTP/1.1 framing: \(error)",
                headers: [.connection: "close"])
        } catch let error as HTTPError {
            let code =
                switch error.status {
                case .notFound: "notFound"
                case .methodNotAllowed: "methodNotAllowed"
                case .contentTooLarge: "contextTooLarge"
                case .badRequest: "invalidParameter"
                default: "httpError"
                }
            throw APIError(
                status: error.status, code: code, message: error.body ?? error.status.reasonPhrase,
                headers: error.headers)
        } catch {
            context.logger.error(
                "request failed", metadata: ["buildgate.error": "\(error)", "http.path": "\(request.uri.path)"])
            throw APIError(status: .internalServerError, code: "internalError", message: "internal error")
        }
    }
}

/// `{"error":{"code":…,"message":…}}`
struct ErrorBody: Codable {
    struct Detail: Codable {
        var code: String
        var message: String
    }
    var error: Detail
}
