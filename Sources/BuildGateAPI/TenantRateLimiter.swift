import BuildGateCore
import Foundation
import HTTPTypes
import Hummingbird
import Synchronization

/// Per-tenant request limits and limit lookups, in memory: a fixed one-minute window per tenant, and each
/// tenant's stored limits cached for a few seconds so the hot path does not read the database per request.
final class TenantRateLimiter: Sendable {
    private struct State {
        var windows: [TenantID: (start: Date, count: Int)] = [:]
        var cached: [TenantID: (limits: TenantLimits, until: Date)] = [:]
    }

    private let repository: any TenantLimitsRepository
    private let defaults: TenantLimits
    private let state = Mutex(State())
    private let clock: any GatewayClock

    init(repository: any TenantLimitsRepository, defaults: TenantLimits, clock: any GatewayClock = SystemClock()) {
        self.repository = repository
        self.defaults = defaults
        self.clock = clock
    }

    /// The tenant's effective limits (stored values over the defaults), cached for 5 seconds.
    func limits(of tenant: TenantID) async throws -> TenantLimits {
        let now = clock.now
        if let cached = state.withLock({ $0.cached[tenant] }), cached.until > now { return cached.limits }
        let limits = try await repository.limits(of: tenant).over(defaults)
        state.withLock { $0.cached[tenant] = (limits, now.addingTimeInterval(5)) }
        return limits
    }

    /// Counts one request; returns the seconds to wait when the tenant is over its limit for this minute.
    func admit(_ tenant: TenantID, limit: Int) -> Int? {
        let now = clock.now
        return state.withLock { state in
            var window = state.windows[tenant] ?? (now, 0)
            if now.timeIntervalSince(window.start) >= 60 { window = (now, 0) }
            guard window.count < limit else {
                return max(1, Int((60 - now.timeIntervalSince(window.start)).rounded(.up)))
            }
            window.count += 1
            state.windows[tenant] = window
            return nil
        }
    }

    /// 429 when the tenant already has its maximum of queued builds.
    func checkQueue(of tenant: TenantID) async throws {
        guard let max = try await limits(of: tenant).maxQueuedBuilds else { return }
        let queued = try await repository.queuedBuildCount(of: tenant, upTo: max)
        guard queued < max else {
            throw APIError(
                status: .tooManyRequests, code: "tooManyRequests",
                message: "tenant \(tenant) has \(queued) queued builds, its limit is \(max)",
                headers: [.retryAfter: "30"])
        }
    }
}

/// Applies the per-minute request limit to authenticated requests (after `TokenAuthenticationMiddleware`).
struct TenantRateLimitMiddleware<Context: AuthenticatedRequestContext>: RouterMiddleware {
    let limiter: TenantRateLimiter

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        if let tenant = context.principal?.tenant, let limit = try await limiter.limits(of: tenant).requestsPerMinute,
            let retryAfter = limiter.admit(tenant, limit: limit)
        {
            throw APIError(
                status: .tooManyRequests, code: "tooManyRequests",
                message: "tenant \(tenant) is over its limit of \(limit) requests per minute",
                headers: [.retryAfter: String(retryAfter)])
        }
        return try await next(request, context)
    }
}
