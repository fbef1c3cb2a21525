import Foundation

/// A build as the gateway knows it: the request, its context, and how far it got.
package struct Build: Sendable, Equatable, Identifiable {
    package var id: BuildID
    /// The tenant that owns it; other tenants cannot see it.
    package var tenant: TenantID
    package var status: BuildStatus
    package var request: BuildRequest
    /// The stored context; nil for a git build until its dispatcher fetched the source.
    package var context: BuildContext?
    /// Where the context comes from, for builds from git (the commit is filled in once fetched).
    package var gitSource: GitSource?
    /// The trigger that created it, for webhook builds.
    package var triggerID: String?
    package var createdAt: Date
    /// When a dispatcher claimed it.
    package var startedAt: Date?
    /// When it reached a terminal status.
    package var finishedAt: Date?
    /// Name of the builder endpoint it was dispatched to.
    package var builder: String?
    package var reason: BuildFailureReason?
    /// A human-readable account of the failure, e.g. the engine's error.
    package var message: String?
    package var pushedImages: [PushedImage]
    /// Per-step timings, where the engine reports steps.
    package var steps: [BuildStep]
    /// A cancellation was asked for and the engine has not stopped yet.
    package var cancelRequested: Bool
    package var idempotencyKey: String?
    /// 1 for the first try; a build whose builder vanished is retried on another with the next number.
    package var attempt: Int
    /// When a build still queued then ends `expired`; nil: never.
    package var queueExpiresAt: Date?
    /// Builds with the same key follow `runPolicy`; tenant-prefixed (`tenant/key`).
    package var runKey: String?
    package var runPolicy: RunPolicy
    /// How many gateways died while dispatching it (its lease expired before the engine accepted it).
    package var interruptedDispatches: Int

    package init(
        id: BuildID,
        tenant: TenantID = .default,
        status: BuildStatus = .queued,
        request: BuildRequest,
        context: BuildContext?,
        gitSource: GitSource? = nil,
        triggerID: String? = nil,
        createdAt: Date,
        startedAt: Date? = nil,
        finishedAt: Date? = nil,
        builder: String? = nil,
        reason: BuildFailureReason? = nil,
        message: String? = nil,
        pushedImages: [PushedImage] = [],
        steps: [BuildStep] = [],
        cancelRequested: Bool = false,
        idempotencyKey: String? = nil,
        attempt: Int = 1,
        queueExpiresAt: Date? = nil,
        runKey: String? = nil,
        runPolicy: RunPolicy = .parallel,
        interruptedDispatches: Int = 0
    ) {
        self.id = id
        self.tenant = tenant
        self.status = status
        self.request = request
        self.context = context
        self.gitSource = gitSource
        self.triggerID = triggerID
        self.createdAt = createdAt
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.builder = builder
        self.reason = reason
        self.message = message
        self.pushedImages = pushedImages
        self.steps = steps
        self.cancelRequested = cancelRequested
        self.idempotencyKey = idempotencyKey
        self.attempt = attempt
        self.queueExpiresAt = queueExpiresAt
        self.runKey = runKey
        self.runPolicy = runPolicy
        self.interruptedDispatches = interruptedDispatches
    }
}

/// One step of a build as its engine reported it: a Dockerfile instruction or one of BuildKit's internal steps.
package struct BuildStep: Sendable, Equatable, Codable {
    package var name: String
    package var startedAt: Date?
    package var completedAt: Date?
    /// The engine reused a cached result instead of running the step.
    package var cached: Bool
    package var error: String?

    package init(
        name: String, startedAt: Date? = nil, completedAt: Date? = nil, cached: Bool = false, error: String? = nil
    ) {
        self.name = name
        self.startedAt = startedAt
        self.completedAt = completedAt
        self.cached = cached
        self.error = error
    }
}
