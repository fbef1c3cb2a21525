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
        _ id: BuildID, expecting: SettlementGuard, to transition: BuildLifecycle.Transition, pushedImages: [PushedImage],
        at date: Date
    ) async throws -> Build?
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
/// supersede, queue expiry, shutdown).
///
/// In this order: the result line is appended to the build's log, the status is committed, the log is marked
/// complete, the observer is told. Log readers take a terminal status (read before their snapshot) to mean the
/// log is whole, so the result line is always there before the status says so; and the observer hears of each
/// terminal state exactly once, from the settler whose commit won.
package struct BuildSettler: Sendable {
    private let store: any BuildSettlementStore
    private let logs: any BuildLogStore
    private let observer: any BuildObserver
    private let logger: Logger

    package init(store: any BuildSettlementStore, logs: any BuildLogStore, observer: any BuildObserver, logger: Logger) {
        self.store = store
        self.logs = logs
        self.observer = observer
        self.logger = logger
    }

    /// Settles `build` (as the caller last saw it) on `event`, if the lifecycle makes that terminal and the build
    /// still is as `expected`. Returns the stored build; nil when the event does not end the build in its state, or
    /// when the guard no longer held (then the caller's view is stale: someone else moved or settled it).
    package func settle(
        _ build: Build, on event: BuildLifecycle.Event, expecting expected: SettlementGuard,
        pushedImages: [PushedImage] = [], at date: Date
    ) async throws -> Build? {
        guard let transition = BuildLifecycle.transition(from: build.status, on: event), transition.isTerminal else {
            return nil
        }
        if let line = transition.logLine {
            do { try await logs.appendGatewayLine(line, to: build.id) } catch {
                // The status matters more than its line: a full disk must not keep a build running for ever.
                logger.error(
                    "writing the result line failed", metadata: ["buildgate.build.id": "\(build.id)", "buildgate.error": "\(error)"])
            }
        }
        guard let stored = try await store.settle(
            build.id, expecting: expected, to: transition, pushedImages: pushedImages, at: date)
        else { return nil }
        await logs.finish(build.id)
        if transition.notifies { await observer.buildChanged(stored) }
        return stored
    }
}
