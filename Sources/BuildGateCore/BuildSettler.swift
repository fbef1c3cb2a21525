import Foundation
import Logging

/// Where a build's terminal status is written: the stores' only writer of one.
///
/// Safe from any task. The write is one durable transaction, guarded in the same statement by what the caller
/// expects the build to be (`SettlementGuard`): of two settlers racing for one build, exactly one commits.
package protocol BuildSettlementStore: Sendable {
    /// Commits the terminal `transition` of build `id` (status, reason, message, `pushedImages`, finished at
    /// `date`, lease released) while the build still is as `expected` says. Under `.expiredLease`, a build that
    /// was still starting also counts one more interrupted dispatch. Returns the stored build, or nil when the guard
    /// no longer held (another settled or moved it first); then nothing was written.
    func settle(
        _ id: BuildID, expecting: SettlementGuard, to transition: BuildLifecycle.Transition,
        pushedImages: [PushedImage],
        at date: Date
    ) async throws -> Build?

    /// The build as it is now, if it still is as `expected` says (the same condition `settle` writes under); nil
    /// otherwise.
    func build(_ id: BuildID, ifStill expected: SettlementGuard) async throws -> Build?
}

/// What a build must still be for a settlement to be written.
package enum SettlementGuard: Sendable, Equatable {
    /// Starting or running under this dispatcher's lease.
    case lease(owner: String)
    /// Queued.
    case queued
    /// Starting or running under a lease that expired before `now`: its dispatcher is gone.
    case expiredLease(now: Date)
}

/// The one path by which a build reaches a terminal status, whoever settles it (dispatcher, lease reaper, cancel,
/// supersede, queue expiry, shutdown). One instance serves the whole process.
///
/// In this order: the result line is appended to the build's log, the status is committed, the log is marked
/// complete, the observer is told. Log readers take a terminal status (read before their snapshot) to mean the
/// log is whole, so the result line is always there before the status says so; and the observer hears of each
/// terminal state exactly once, from the settler whose commit won. Settlements of one build are serialized, and each
/// re-reads the build before writing its line, so of two settlers racing in this process only the winner writes a
/// result line. (A claim can still move a queued build between that read and the commit; the line is then followed
/// by one saying it did not take, and the build's real result line comes later.)
package final class BuildSettler: Sendable {
    private let store: any BuildSettlementStore
    private let logs: any BuildLogStore
    private let observer: any BuildObserver
    private let logger: Logger
    private let locks = BuildLocks()

    package init(store: any BuildSettlementStore, logs: any BuildLogStore, observer: any BuildObserver, logger: Logger)
    {
        self.store = store
        self.logs = logs
        self.observer = observer
        self.logger = logger
    }

    /// Settles `build` on `event`, if it still is as `expected` and the lifecycle makes the event terminal in the
    /// state it is in now. Returns the stored build; nil when the event does not end the build, or when the guard
    /// no longer holds (the caller's view is stale: someone else moved or settled it).
    package func settle(
        _ build: Build, on event: BuildLifecycle.Event, expecting expected: SettlementGuard,
        pushedImages: [PushedImage] = [], at date: Date
    ) async throws -> Build? {
        try await locks.withLock(build.id) {
            guard let current = try await store.build(build.id, ifStill: expected),
                let transition = BuildLifecycle.transition(from: current.status, on: event), transition.isTerminal
            else { return nil }
            if let line = transition.logLine {
                do { try await logs.appendGatewayLine(line, to: build.id) } catch {
                    // The status matters more than its line: a full disk must not keep a build running for ever.
                    logger.error(
                        "writing the result line failed",
                        metadata: ["buildgate.build.id": "\(build.id)", "buildgate.error": "\(error)"])
                }
            }
            guard
                let stored = try await store.settle(
                    build.id, expecting: expected, to: transition, pushedImages: pushedImages, at: date)
            else {
                try? await logs.appendGatewayLine("(that did not take: the build changed meanwhile)", to: build.id)
                return nil
            }
            await logs.finish(build.id)
            if transition.notifies { await observer.buildChanged(stored) }
            return stored
        }
    }

    /// A user's cancel: a queued build ends `cancelled` now; a starting or running one (also one claimed meanwhile)
    /// is marked so its dispatcher stops it. Returns the build afterwards; nil when there is no such build.
    package func cancel(_ build: Build, in repository: any BuildRepository, at date: Date) async throws -> Build? {
        if let cancelled = try await settle(build, on: .cancelRequested, expecting: .queued, at: date) {
            return cancelled
        }
        if let marked = try await repository.markCancelRequested(build.id) { return marked }
        return try await repository.build(build.id)  // it ended in the meantime
    }

    /// Run policy `latestOnly`: the queued older builds of `build`'s run key end `cancelled` (`superseded`). One
    /// that started meanwhile runs on.
    package func supersede(olderThan build: Build, in repository: any BuildRepository, at date: Date) async throws {
        for older in try await repository.queuedOlder(than: build) {
            _ = try await settle(older, on: .superseded(by: build.id), expecting: .queued, at: date)
        }
    }
}

/// One async lock per build id, held only while in use.
private actor BuildLocks {
    private var held: Set<BuildID> = []
    private var waiting: [BuildID: [CheckedContinuation<Void, Never>]] = [:]

    func withLock<T: Sendable>(_ id: BuildID, _ body: @Sendable () async throws -> T) async throws -> T {
        await acquire(id)
        do {
            let value = try await body()
            release(id)
            return value
        } catch {
            release(id)
            throw error
        }
    }

    private func acquire(_ id: BuildID) async {
        guard held.contains(id) else {
            held.insert(id)
            return
        }
        await withCheckedContinuation { waiting[id, default: []].append($0) }
    }

    private func release(_ id: BuildID) {
        if var queue = waiting[id], !queue.isEmpty {
            let next = queue.removeFirst()
            waiting[id] = queue.isEmpty ? nil : queue
            next.resume()  // the lock passes straight to the next waiter
        } else {
            held.remove(id)
        }
    }
}
