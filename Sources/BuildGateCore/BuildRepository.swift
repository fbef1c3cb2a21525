import Foundation

/// The builds as the API sees them: create, look up, list, cancel.
///
/// Implementations are safe to call from any task. Every write is one transaction that is durable (fsynced) when
/// the call returns; a call that throws has written nothing. Errors are `BuildGateError`s or the store's own.
package protocol BuildRepository: BuildSettlementStore {
    /// Stores a new queued build. If `build.idempotencyKey` is already taken, nothing is written and the build
    /// created earlier with that key is returned as `.existing`.
    func create(_ build: Build) async throws -> BuildCreation

    /// The build created earlier with this idempotency key, if any.
    func build(idempotencyKey: String) async throws -> Build?

    /// The context with `digest` as `tenant` stored it: some build of that tenant uploaded it and retention has not
    /// removed it. Nil otherwise, whether or not another tenant has the same bytes (the right to use a context is
    /// per tenant, even where the bytes are stored once).
    func storedContext(_ digest: ContextDigest, tenant: TenantID) async throws -> BuildContext?

    /// The build with this id, or nil.
    func build(_ id: BuildID) async throws -> Build?

    /// The tenant's builds newest first, optionally only those with `status`, starting after the build `after`.
    func list(tenant: TenantID, status: BuildStatus?, limit: Int, after: BuildID?) async throws -> [Build]

    /// Run policy `latestOnly`: the queued builds of `build`'s run key that are older than it (which it supersedes).
    func queuedOlder(than build: Build) async throws -> [Build]

    /// 1 for the oldest queued build, 2 for the next…; nil when the build is not queued.
    func queuePosition(of id: BuildID) async throws -> Int?

    /// Marks a starting or running build so its dispatcher stops it (`BuildLifecycle`'s `marksCancelRequested`).
    /// Returns the build afterwards, or nil when it is not starting or running.
    func markCancelRequested(_ id: BuildID) async throws -> Build?
}

/// The result of `BuildRepository.create`.
package enum BuildCreation: Sendable, Equatable {
    case created(Build)
    /// An earlier build holds the same idempotency key; it is returned unchanged.
    case existing(Build)
}
