/// The build state machine, pure and total: every event a build can meet, and what it does in every state.
///
/// `transition(from:on:)` answers with the state after the event and its effects: the line the build's log gets
/// (for a terminal state, the result line, which is the log's last), and whether the observer (callbacks, commit
/// statuses, metrics) hears of it. It never does I/O. `BuildSettler` applies terminal transitions, the stores
/// apply the others inside their transactions, always guarded by the state they expect.
///
/// | state × event | claimed | engine accepted | engine finished | cancel asked | lease expired | infra retry | queue TTL | superseded | shutdown |
/// |---|---|---|---|---|---|---|---|---|---|
/// | queued | starting | – | – | **cancelled** | – | – | **expired** | **cancelled** (superseded) | – |
/// | starting | – | running | **its result** | marked | queued¹ or **failed** (dispatchAbandoned) | queued | – | – | **failed** (interrupted) |
/// | running | – | – | **its result** | marked | **failed** (interrupted) | queued | – | – | **failed** (interrupted) |
/// | terminal | – | – | – | – | – | – | – | – | – |
///
/// ¹ or **cancelled** when a cancel was asked before its dispatcher vanished. Bold: terminal. "Its result": succeeded,
/// failed (with the driver's reason), cancelled, or timedOut (also when the dispatcher stopped it at its timeout).
package enum BuildLifecycle {
    /// Something that happens to a build.
    package enum Event: Sendable, Equatable {
        /// A dispatcher claimed it for `builder` (a description of the endpoint); `attempt` of `maxAttempts`.
        case claimed(builder: String, attempt: Int, maxAttempts: Int)
        /// The engine accepted the build request; `engine` describes it.
        case engineAccepted(engine: String)
        /// The driver returned. `timedOut` is true when the dispatcher stopped it because of its timeout.
        case engineFinished(BuildOutcome, timedOut: Bool)
        /// A user asked to cancel it.
        case cancelRequested
        /// The dispatcher that held its lease is gone (a crash, `kill -9`, its gateway's node). `interruptedDispatches`
        /// counts the earlier expiries before the engine accepted it; `cancelRequested` says whether a cancel was
        /// pending; it was `attempt` of `maxAttempts`.
        case leaseExpired(interruptedDispatches: Int, cancelRequested: Bool, attempt: Int, maxAttempts: Int)
        /// Its builder vanished before a result (`attempt` of `maxAttempts`): another builder may take it.
        case infrastructureRetry(attempt: Int, maxAttempts: Int, builder: String, message: String)
        /// It waited in the queue past its TTL; `waitReason` is why, as the dispatcher last saw it.
        case queueTTLExpired(waitReason: String?)
        /// A newer build of its run key (policy `latestOnly`) was queued.
        case superseded(by: BuildID)
        /// The gateway shut down past its grace period while it was starting or running.
        case shutdownInterrupt
    }

    /// What an event does to a build in a given state.
    package struct Transition: Sendable, Equatable {
        /// The state afterwards (the same state for `marksCancelRequested`).
        package var status: BuildStatus
        package var reason: BuildFailureReason?
        package var message: String?
        /// The gateway line appended to the build's log; for a terminal status, the result line, appended before
        /// the status is committed.
        package var logLine: String?
        /// Whether the observer hears of the change.
        package var notifies: Bool
        /// The status stays; the build is only marked so its dispatcher stops the engine.
        package var marksCancelRequested: Bool

        package var isTerminal: Bool { status.isTerminal }

        package init(
            status: BuildStatus, reason: BuildFailureReason? = nil, message: String? = nil, logLine: String? = nil,
            notifies: Bool = true, marksCancelRequested: Bool = false
        ) {
            self.status = status
            self.reason = reason
            self.message = message
            self.logLine = logLine
            self.notifies = notifies
            self.marksCancelRequested = marksCancelRequested
        }
    }

    /// How many gateways may die while dispatching one build (claimed, the engine not answering yet) before it is
    /// given up: a build that crashes the gateway must not crash it again and again for everyone.
    package static let maxInterruptedDispatches = 2

    /// The transition `event` makes from `status`; nil when the event means nothing there (cancelling a finished
    /// build, a late result, a second claim…).
    package static func transition(from status: BuildStatus, on event: Event) -> Transition? {
        switch (status, event) {
        case (.queued, .claimed(let builder, let attempt, let maxAttempts)):
            let of = attempt > 1 ? " (attempt \(attempt) of \(maxAttempts))" : ""
            return Transition(status: .starting, logLine: "dispatched to builder \(builder)\(of)")
        case (.starting, .engineAccepted(let engine)):
            return Transition(status: .running, logLine: "engine: \(engine)")
        case (.starting, .engineFinished(let outcome, let timedOut)),
            (.running, .engineFinished(let outcome, let timedOut)):
            return result(of: outcome, timedOut: timedOut)
        case (.queued, .cancelRequested):
            return settled(.cancelled, .cancelled, "cancelled before it started")
        case (.starting, .cancelRequested), (.running, .cancelRequested):
            return Transition(status: status, notifies: false, marksCancelRequested: true)
        case (.starting, .leaseExpired(_, cancelRequested: true, _, _)):
            return settled(.cancelled, .cancelled, "cancelled before it started")
        case (.starting, .leaseExpired(let earlier, _, _, _)) where earlier + 1 >= maxInterruptedDispatches:
            return settled(
                .failed, .dispatchAbandoned,
                "the gateway stopped \(earlier + 1) times while dispatching this build; it is not dispatched again, "
                    + "in case it is what stops the gateway")
        case (.starting, .leaseExpired):
            // Never reached the engine: safe to run again, and nobody will run it twice.
            return Transition(status: .queued, logLine: "the dispatcher that claimed this build is gone; queued again")
        case (.running, .leaseExpired(_, cancelRequested: true, _, _)):
            return settled(
                .cancelled, .cancelled, "cancelled; the gateway running it stopped before the engine said so")
        case (.running, .leaseExpired(_, _, let attempt, let maxAttempts)) where attempt < maxAttempts:
            // An infrastructure failure like a vanished builder: the engine lost its client with the gateway, and
            // its lease had run out before anyone could claim it again, so it never runs twice at once.
            return Transition(
                status: .queued,
                logLine:
                    "attempt \(attempt) of \(maxAttempts) ended without a result: the gateway running it stopped; "
                    + "back in the queue for another builder")
        case (.running, .leaseExpired(_, _, let attempt, let maxAttempts)):
            return settled(
                .failed, .interrupted,
                "attempt \(attempt) of \(maxAttempts) ended without a result: the gateway running it stopped")
        case (.starting, .infrastructureRetry(let attempt, let maxAttempts, let builder, let message)),
            (.running, .infrastructureRetry(let attempt, let maxAttempts, let builder, let message)):
            return Transition(
                status: .queued,
                logLine:
                    "attempt \(attempt) of \(maxAttempts) ended without a result: builder \(builder) is unavailable "
                    + "(\(message.trimmingCharacters(in: .whitespacesAndNewlines))); back in the queue for another builder"
            )
        case (.queued, .queueTTLExpired(let waitReason)):
            var message = "waited in the queue past its TTL without a builder"
            if let waitReason { message += " (\(waitReason))" }
            return settled(.expired, .expired, message)
        case (.queued, .superseded(let newer)):
            return Transition(
                status: .cancelled, reason: .superseded, message: "superseded by the newer build \(newer)",
                logLine:
                    "superseded by the newer build \(newer) (run policy latestOnly); result: cancelled (superseded)")
        case (.starting, .shutdownInterrupt), (.running, .shutdownInterrupt):
            return settled(.failed, .interrupted, "the gateway shut down before the build finished")
        default:
            return nil
        }
    }

    /// A terminal transition decided by the gateway: "<message>; result: <status> (<reason>)".
    private static func settled(_ status: BuildStatus, _ reason: BuildFailureReason, _ message: String) -> Transition {
        Transition(
            status: status, reason: reason, message: message, logLine: "\(message); \(resultText(status, reason))")
    }

    /// A terminal transition decided by the engine: "result: <status> (<reason>): <message>".
    private static func result(of outcome: BuildOutcome, timedOut: Bool) -> Transition {
        let (status, reason, message): (BuildStatus, BuildFailureReason?, String?) =
            switch outcome {
            case .succeeded: (.succeeded, nil, nil)
            case .failed(_, let message) where timedOut: (.timedOut, .timedOut, message)
            case .failed(.cancelled, let message): (.cancelled, .cancelled, message)
            case .failed(.timedOut, let message): (.timedOut, .timedOut, message)
            case .failed(let reason, let message): (.failed, reason, message)
            }
        var line = resultText(status, reason)
        if let message, !message.isEmpty { line += ": \(message.trimmingCharacters(in: .whitespacesAndNewlines))" }
        return Transition(status: status, reason: reason, message: message, logLine: line)
    }

    /// "result: failed (interrupted)"; the reason is left out where it only repeats the status.
    private static func resultText(_ status: BuildStatus, _ reason: BuildFailureReason?) -> String {
        guard let reason, reason.rawValue != status.rawValue else { return "result: \(status.rawValue)" }
        return "result: \(status.rawValue) (\(reason.rawValue))"
    }
}
