import HTTPTypes
import Hummingbird
import ServiceLifecycle

/// While the gateway shuts down gracefully, new uploads and webhook deliveries are refused with 503 and
/// `Retry-After` (the client or forge retries, against the next instance); requests already in flight finish, and
/// reads keep working until the server closes.
struct ShutdownGateMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        if Task.isShuttingDownGracefully, request.method == .post,
            request.uri.path == "/v1/builds" || request.uri.path.hasPrefix("/v1/webhooks/")
        {
            throw APIError(
                status: .serviceUnavailable, code: "shuttingDown",
                message: "the gateway is shutting down; retry shortly", headers: [.retryAfter: "30"])
        }
        return try await next(request, context)
    }
}
