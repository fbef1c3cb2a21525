import HTTPTypes
import Hummingbird

/// Gives every request an id: the client's `X-Request-Id` when it is sane (1–128 visible ASCII), else one made
/// here. It is in every log line of the request (`buildgate.request.id`) and in the response's `X-Request-Id`,
/// error responses included, so a user's report can be found in the server log.
struct RequestIDMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        let given = request.headers[.requestID].flatMap { id in
            (1...128).contains(id.utf8.count) && id.utf8.allSatisfy { (0x21...0x7e).contains($0) } ? id : nil
        }
        let id = given ?? context.id
        var context = context
        context.logger[metadataKey: "buildgate.request.id"] = .string(id)
        do {
            var response = try await next(request, context)
            response.headers[.requestID] = id
            return response
        } catch var error as APIError {
            error.headers[.requestID] = id
            throw error
        }
    }
}

extension HTTPField.Name {
    static let requestID = Self("X-Request-Id")!
}
