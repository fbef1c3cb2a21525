import BuildGateCore
import Foundation
import Hummingbird

/// A request context that knows who is calling, once `TokenAuthenticationMiddleware` has looked.
package protocol AuthenticatedRequestContext: RequestContext {
    var principal: Principal? { get set }
}

/// The gateway's request context.
package struct BuildGateRequestContext: AuthenticatedRequestContext {
    package var coreContext: CoreRequestContextStorage
    package var principal: Principal?

    package init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        principal = nil
    }
}

extension AuthenticatedRequestContext {
    /// The caller, if it may use `scope` (on `build`, for build-bound tokens); 401 without a principal, 403 without
    /// the scope.
    func require(_ scope: Scope, build: BuildID? = nil) throws -> Principal {
        guard let principal else {
            throw BuildGateError(.unauthorized, "a valid API token is required (Authorization: Bearer <token>)")
        }
        guard principal.allows(scope, build: build) else {
            throw BuildGateError(.forbidden, "this token lacks the '\(scope.rawValue)' scope")
        }
        return principal
    }
}

/// Resolves `Authorization: Bearer <token>` (or, for GET requests with a log-read token, `?access_token=`) to a
/// principal. Requests without a valid token go on without one; the routes decide (401/403). Webhooks and
/// `/healthz` never need a token.
struct TokenAuthenticationMiddleware<Context: AuthenticatedRequestContext>: RouterMiddleware {
    let tokens: any AccessTokenRepository
    /// The dashboard's sessions, taken on `GET` only; nil: no dashboard.
    let sessions: SessionCookie?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        var context = context
        if let token = bearerToken(request) {
            guard let principal = try await tokens.authenticate(token, at: .now) else {
                throw BuildGateError(.unauthorized, "the API token is unknown, revoked or expired")
            }
            context.principal = principal
        } else if request.method == .get, let token = request.uri.queryParameters["access_token"] {
            // Only build-bound log-read tokens may travel in a URL (browsers' EventSource cannot set headers).
            guard let principal = try await tokens.authenticate(String(token), at: .now), principal.buildID != nil
            else {
                throw BuildGateError(.unauthorized, "access_token must be a valid log-read token")
            }
            context.principal = principal
        } else if request.method == .get, let session = sessions?.session(in: request.headers, now: .now) {
            // The dashboard's pages read the API with the person's session (EventSource sends cookies, not headers).
            guard let principal = try await tokens.authenticate(session.token, at: .now) else {
                throw BuildGateError(.unauthorized, "the session's API token is unknown, revoked or expired")
            }
            context.principal = principal
        }
        return try await next(request, context)
    }

    private func bearerToken(_ request: Request) -> String? {
        guard let value = request.headers[.authorization] else { return nil }
        let parts = value.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        return String(parts[1]).trimmingCharacters(in: .whitespaces)
    }
}
