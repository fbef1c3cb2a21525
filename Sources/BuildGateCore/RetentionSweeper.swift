import Foundation
import Logging
import ServiceLifecycle

/// What the gateway keeps, and for how long after a build ends.
package struct RetentionPolicy: Sendable, Equatable {
    /// A context is deleted this long after the last build that used it ended (0: as soon as it ended).
    package var contexts: Duration = .zero
    package var logs: Duration = .seconds(30 * 86_400)
    /// The build's row (and anything left of it).
    package var builds: Duration = .seconds(90 * 86_400)

    package init() {}
}

/// The queries retention needs from the build store. What retention removed is marked, so each pass sees only
/// what is left.
package protocol BuildRetentionStore: Sendable {
    /// Digests of contexts not yet removed whose builds have all ended, the last one before `date`.
    func contextsReleased(before date: Date, limit: Int) async throws -> [ContextDigest]
    /// Records that the context is gone, for every build that used it (a later upload of the same bytes is new).
    func markContextRemoved(_ digest: ContextDigest) async throws
    /// Builds that ended before `date` and still have their logs, oldest first.
    func logsToRemove(finishedBefore date: Date, limit: Int) async throws -> [BuildID]
    func markLogsRemoved(_ ids: [BuildID]) async throws
    /// Deletes the rows of builds that ended before `date`; returns their ids.
    func deleteBuilds(finishedBefore date: Date, limit: Int) async throws -> [BuildID]
    /// Deletes up to `limit` recorded status changes (`BuildEventFeed`) made before `date`; returns how many.
    func deleteStateChanges(before date: Date, limit: Int) async throws -> Int
}

/// Deletes what the retention policy no longer keeps: contexts of ended builds, old logs, old build rows. Runs at
/// start-up and then every `interval`; each pass is bounded, so a large backlog is worked off over several passes.
package struct RetentionSweeper: Service {
    private let store: any BuildRetentionStore
    private let contexts: any ContextStore
    private let logs: any BuildLogStore
    private let policy: RetentionPolicy
    private let interval: Duration
    private let clock: any GatewayClock
    private let logger: Logger

    package init(
        store: any BuildRetentionStore, contexts: any ContextStore, logs: any BuildLogStore, policy: RetentionPolicy,
        interval: Duration = .seconds(600), clock: any GatewayClock = SystemClock(), logger: Logger
    ) {
        self.clock = clock
        self.store = store
        self.contexts = contexts
        self.logs = logs
        self.policy = policy
        self.interval = interval
        self.logger = logger
    }

    package func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    try await sweep(now: clock.now)
                } catch {
                    logger.error("retention sweep failed", metadata: ["buildgate.error": "\(error)"])
                }
                try? await clock.sleep(for: interval)
            }
        }
    }

    /// One pass. A context stored again within the grace minutes (an upload of the same bytes that is about to be
    /// queued) is left alone.
    @discardableResult
    package func sweep(now: Date, batch: Int = 1_000) async throws -> (contexts: Int, logs: Int, builds: Int) {
        let storedBefore = now.addingTimeInterval(-600)
        var removedContexts = 0
        for digest in try await store.contextsReleased(before: now - policy.contexts, limit: batch)
        where contexts.remove(digest, ifStoredBefore: min(storedBefore, now - policy.contexts)) {
            try await store.markContextRemoved(digest)
            removedContexts += 1
        }
        let oldLogs = try await store.logsToRemove(finishedBefore: now - policy.logs, limit: batch)
        for id in oldLogs { await logs.remove(id) }
        try await store.markLogsRemoved(oldLogs)
        let oldBuilds = try await store.deleteBuilds(finishedBefore: now - policy.builds, limit: batch)
        for id in oldBuilds { await logs.remove(id) }
        // The changes of `GET /v1/events` are kept as long as build rows.
        _ = try await store.deleteStateChanges(before: now - policy.builds, limit: batch * 10)
        if removedContexts + oldBuilds.count > 0 {
            logger.info(
                "retention sweep",
                metadata: [
                    "buildgate.contexts.removed": "\(removedContexts)",
                    "buildgate.builds.removed": "\(oldBuilds.count)",
                ])
        }
        return (removedContexts, oldLogs.count, oldBuilds.count)
    }
}

extension Date {
    fileprivate static func - (date: Date, duration: Duration) -> Date {
        date.addingTimeInterval(-TimeInterval(duration.components.seconds))
    }
}
