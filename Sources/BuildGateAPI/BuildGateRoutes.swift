import BuildGateCore
import Hummingbird
import Logging

/// Everything the HTTP API needs, as ports: the composition root fills it in.
package struct BuildGateAPIDependencies: Sendable {
    package var repository: any BuildRepository
    package var logs: any BuildLogStore
    package var contexts: any ContextStore
    package var tokens: any AccessTokenRepository
    package var triggers: any TriggerRepository
    package var registryCredentials: any RegistryCredentialRepository
    package var tenantLimits: any TenantLimitsRepository
    package var secrets: any BuildSecretRepository
    /// The builders: their features for the 422 at intake, their state for `GET /v1/builders`.
    package var pool: BuilderPool
    /// Why queued builds wait, as the dispatcher last saw it.
    package var queueReasons: QueueReasons
    /// Every build status change, for `GET /v1/events`.
    package var events: any BuildEventFeed
    /// The dashboard's session cookies, accepted on `GET`; nil: none.
    package var sessions: SessionCookie?
    /// The readiness checks that fail now (empty: ready), for `GET /readyz`.
    package var readiness: @Sendable () async -> [String]
    /// Free bytes in the data directory (nil: unknown), for refusing uploads with 507 when it runs low.
    package var freeDiskBytes: @Sendable () -> Int64?
    /// The metrics in Prometheus text format, for `GET /metrics`; nil: no such route.
    package var metrics: (@Sendable () -> String)?
    package var observer: any BuildObserver
    /// The process's one settler (shared with the dispatcher and reaper); nil: the router makes its own.
    package var settler: BuildSettler?
    /// What time it is, for rate limits.
    package var clock: any GatewayClock
    package var onQueued: @Sendable () -> Void

    package init(
        repository: any BuildRepository,
        logs: any BuildLogStore,
        contexts: any ContextStore,
        tokens: any AccessTokenRepository,
        triggers: any TriggerRepository,
        registryCredentials: any RegistryCredentialRepository,
        tenantLimits: any TenantLimitsRepository,
        secrets: any BuildSecretRepository,
        pool: BuilderPool,
        queueReasons: QueueReasons,
        events: any BuildEventFeed,
        sessions: SessionCookie? = nil,
        readiness: @escaping @Sendable () async -> [String] = { [] },
        freeDiskBytes: @escaping @Sendable () -> Int64? = { nil },
        metrics: (@Sendable () -> String)? = nil,
        observer: any BuildObserver = NoBuildObserver(),
        settler: BuildSettler? = nil,
        clock: any GatewayClock = SystemClock(),
        onQueued: @escaping @Sendable () -> Void
    ) {
        self.clock = clock
        self.repository = repository
        self.logs = logs
        self.contexts = contexts
        self.tokens = tokens
        self.triggers = triggers
        self.registryCredentials = registryCredentials
        self.tenantLimits = tenantLimits
        self.secrets = secrets
        self.pool = pool
        self.queueReasons = queueReasons
        self.events = events
        self.sessions = sessions
        self.readiness = readiness
        self.freeDiskBytes = freeDiskBytes
        self.metrics = metrics
        self.observer = observer
        self.settler = settler
        self.onQueued = onQueued
    }
}

/// Limits the API enforces at intake.
package struct BuildGateAPILimits: Sendable {
    /// Largest context body in bytes (413 beyond).
    package var maxContextSize: Int64 = 2 << 30
    /// Most bytes a context may expand to once decompressed, counted across gzip members (413 as soon as it passes).
    package var maxExpandedContextSize: Int64 = 4 << 30
    /// Most entries in a context archive (422 beyond).
    package var maxContextEntries = 100_000
    /// Largest PAX header or GNU long name in a context archive (422 beyond).
    package var maxArchiveHeaderSize = 1 << 20
    /// Timeout of a build that names none, in seconds.
    package var defaultBuildTimeout = 3600
    /// Longest `timeout` a build may ask for, in seconds.
    package var maxBuildTimeout = 6 * 3600
    /// How long a build may wait in the queue before it ends `expired`, when it names no `queueTTL`, in seconds.
    package var defaultQueueTTL = 3600
    /// Longest `queueTTL` a build may ask for, in seconds.
    package var maxQueueTTL = 7 * 86_400
    /// Hosts git sources may come from (globs); empty allows any.
    package var allowedGitHosts: [String] = []
    /// Largest webhook body accepted (checked before any hashing).
    package var maxWebhookBody = 25 << 20
    /// How long an upload in flight may go on once the gateway starts shutting down; then it is answered 503.
    package var uploadShutdownGrace: Duration = .seconds(30)
    /// Uploads are refused (507) while the data directory has less than this free, in bytes.
    package var minFreeDiskBytes: Int64 = 1 << 30
    /// Tenant limits where a tenant's row sets none.
    package var tenantDefaults = TenantLimits(maxRunningBuilds: nil, maxQueuedBuilds: 1000, requestsPerMinute: 600)

    package init() {}
}

/// Builds the router: `/v1/builds…`, `/healthz`, and the error shape for every failure.
package func buildRouter<Context: AuthenticatedRequestContext>(
    context: Context.Type = BuildGateRequestContext.self,
    dependencies: BuildGateAPIDependencies,
    limits: BuildGateAPILimits,
    logger: Logger
) -> Router<Context> {
    let router = Router(context: Context.self)
    router.middlewares.add(MetricsMiddleware<Context>())
    router.middlewares.add(RequestIDMiddleware<Context>())
    router.middlewares.add(ErrorShapeMiddleware<Context>())
    router.middlewares.add(ShutdownGateMiddleware<Context>())
    router.get("healthz") { _, _ in "ok\n" }
    if let metrics = dependencies.metrics {
        // Unauthenticated, like the probes: scrape it from inside the cluster (the NetworkPolicy admits 8080).
        router.get("metrics") { _, _ -> Response in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: metrics())))
        }
    }
    router.get("readyz") { [readiness = dependencies.readiness] _, _ -> Response in
        // A draining replica leaves the Service's endpoints while it finishes what it has (rolling updates).
        let failing =
            Task.isShuttingDownGracefully ? ["the gateway is draining (shutting down)"] : await readiness()
        guard failing.isEmpty else {
            throw APIError(
                status: .serviceUnavailable, code: "notReady", message: "not ready: " + failing.joined(separator: "; "))
        }
        return Response(
            status: .ok, headers: [.contentType: "text/plain; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(string: "ready\n")))
    }
    router.middlewares.add(
        TokenAuthenticationMiddleware<Context>(tokens: dependencies.tokens, sessions: dependencies.sessions))
    let limiter = TenantRateLimiter(
        repository: dependencies.tenantLimits, defaults: limits.tenantDefaults, clock: dependencies.clock)
    router.middlewares.add(TenantRateLimitMiddleware<Context>(limiter: limiter))

    var upload = ContextIntake.Limits()
    upload.maxContextSize = limits.maxContextSize
    upload.shutdownGrace = limits.uploadShutdownGrace
    upload.archive.maxEntries = limits.maxContextEntries
    upload.archive.maxHeaderSize = limits.maxArchiveHeaderSize
    upload.archive.maxExpandedSize = limits.maxExpandedContextSize
    let admission = BuildAdmission(
        builderFeatures: { [pool = dependencies.pool] in pool.offeredFeatures }, secrets: dependencies.secrets)
    let settler =
        dependencies.settler
        ?? BuildSettler(
            store: dependencies.repository, logs: dependencies.logs, observer: dependencies.observer, logger: logger)
    let intake = BuildIntake(
        repository: dependencies.repository, logs: dependencies.logs, observer: dependencies.observer, settler: settler,
        onQueued: dependencies.onQueued)
    let builds = router.group("v1/builds")
    BuildsController<Context>(
        repository: dependencies.repository,
        allowedGitHosts: limits.allowedGitHosts,
        contexts: dependencies.contexts,
        tokens: dependencies.tokens,
        limiter: limiter,
        admission: admission,
        queueReasons: dependencies.queueReasons,
        freeDiskBytes: dependencies.freeDiskBytes,
        settler: settler,
        intake: intake,
        configuration: .init(
            upload: upload, defaultTimeout: limits.defaultBuildTimeout, maxTimeout: limits.maxBuildTimeout,
            defaultQueueTTL: limits.defaultQueueTTL, maxQueueTTL: limits.maxQueueTTL,
            minFreeDiskBytes: limits.minFreeDiskBytes)
    ).addRoutes(to: builds)
    BuildLogsController<Context>(repository: dependencies.repository, logs: dependencies.logs).addRoutes(to: builds)
    ContextsController<Context>(repository: dependencies.repository, contexts: dependencies.contexts)
        .addRoutes(to: router.group("v1/contexts"))
    TriggersController<Context>(triggers: dependencies.triggers, limits: limits, admission: admission)
        .addRoutes(to: router.group("v1/triggers"))
    RegistriesController<Context>(credentials: dependencies.registryCredentials).addRoutes(
        to: router.group("v1/registries"))
    SecretsController<Context>(secrets: dependencies.secrets).addRoutes(to: router.group("v1/secrets"))
    BuildersController<Context>(pool: dependencies.pool).addRoutes(to: router.group("v1/builders"))
    EventsController<Context>(events: dependencies.events).addRoutes(to: router.group("v1/events"))
    WebhooksController<Context>(
        triggers: dependencies.triggers, limits: limits, limiter: limiter, intake: intake
    ).addRoutes(to: router.group("v1/webhooks"))
    return router
}
