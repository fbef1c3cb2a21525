import Foundation

/// The queue as dispatchers see it: claim work under a lease, renew it; results are settled through `BuildSettler`.
///
/// Every call is one durable transaction. A dispatcher identifies itself with an `owner` string that is unique per
/// process run; writes made with a lease check (`owner` and status) do nothing when the lease has moved on, so a
/// dispatcher that lost its lease can never overwrite the result another settled.
package protocol BuildQueue: BuildSettlementStore {
    /// Queued builds a dispatcher may start now, oldest first: those whose tenant is under its running limit.
    func dispatchable(limit: Int) async throws -> [Build]

    /// Claims this queued build for `builder` (`queued → starting`) with a lease, re-checking in the same
    /// transaction its tenant's running limit, its `serial` run key, and that fewer than `capacity` builds hold the
    /// builder (nil: no limit), as committed by every gateway sharing the store. Nil when it is no longer queued or
    /// one of those is reached meanwhile.
    func claim(_ id: BuildID, builder: String, capacity: Int?, owner: String, leaseUntil: Date, now: Date)
        async throws -> Build?

    /// How many builds are queued, starting and running now (for the queue-depth metric).
    func activeCounts() async throws -> [BuildStatus: Int]

    /// Run keys with a build starting or running now (serial builds of those keys wait).
    func activeRunKeys() async throws -> Set<String>

    /// Puts a build whose builder vanished back in the queue for another attempt (`starting`/`running` →
    /// `queued`, attempt + 1). Returns the build afterwards, or nil if the lease is no longer ours.
    func requeueForRetry(_ id: BuildID, owner: String, queueExpiresAt: Date?) async throws -> Build?

    /// Queued builds whose queue TTL ended at or before `now`.
    func queueExpired(now: Date) async throws -> [Build]

    /// Stores the per-step timings the engine reported so far. Returns false if the lease is no longer ours.
    func recordSteps(_ id: BuildID, owner: String, steps: [BuildStep]) async throws -> Bool

    /// Records the context fetched for a git build (and the commit its ref resolved to). Returns false if the lease
    /// is no longer ours.
    func attachContext(_ id: BuildID, owner: String, context: BuildContext, gitSource: GitSource) async throws -> Bool

    /// `starting → running` once the engine accepted the build. Returns false if the lease is no longer ours.
    func markRunning(_ id: BuildID, owner: String) async throws -> Bool

    /// Extends the leases of `ids` held by `owner`, and returns those among them whose cancellation was requested.
    func renewLeases(_ ids: [BuildID], owner: String, until: Date) async throws -> Set<BuildID>

    /// The build with this id, or nil.
    func build(_ id: BuildID) async throws -> Build?

    /// Builds in `starting` or `running` whose lease ended before `now`.
    func expiredLeases(now: Date) async throws -> [Build]

    /// A build whose lease expired before `now` (its dispatcher is gone) goes back to the queue, unless a cancel
    /// is pending: one still starting (the engine never accepted it) counting one more interrupted dispatch, one
    /// running as its next attempt (`attempt + 1`, its steps cleared). Returns the build afterwards, or nil when it
    /// no longer qualifies (someone renewed or settled it meanwhile).
    func requeueExpiredLease(_ id: BuildID, now: Date, queueExpiresAt: Date?) async throws -> Build?
}
