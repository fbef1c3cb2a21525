/// The build state machine, pure: which transitions exist and what each event leads to.
///
/// Stores apply these decisions inside their transactions (a status is only changed from a state the machine
/// allows), and the dispatcher asks it what a driver's outcome or an expired lease means. Nothing here does I/O.
package enum BuildLifecycle {
    /// Something that happens to a build.
    package enum Event: Sendable, Equatable {
        /// A dispatcher claimed it for a builder.
        case claimed
        /// The engine accepted the build request.
        case engineAccepted
        /// The driver returned. `timedOut` is true when the dispatcher stopped it because of its timeout.
        case driverFinished(BuildOutcome, timedOut: Bool)
        /// A user asked to cancel it.
        case cancelRequested
        /// The dispatcher that held its lease is gone (lease expired). `interruptedDispatches` counts the earlier
        /// expiries of this build's leases before the engine accepted it.
        case leaseExpired(interruptedDispatches: Int)
    }

    /// What the event does to the build.
    package enum Transition: Sendable, Equatable {
        /// Move to `status`.
        case moveTo(BuildStatus)
        /// End the build with `status`, `reason` and a message for the log and the build JSON.
        case finish(BuildStatus, reason: BuildFailureReason?, message: String?)
        /// Keep the status; remember that cancellation was asked for (the dispatcher stops the engine).
        case markCancelRequested
        /// The event means nothing in this state (e.g. cancelling a finished build).
        case ignore
    }

    /// How many gateways may die while dispatching one build (claimed, the engine not answering yet) before it is
    /// given up: a build that crashes the gateway must not crash it again and again for everyone.
    package static let maxInterruptedDispatches = 2

    package static func transition(from status: BuildStatus, on event: Event) -> Transition {
        switch (status, event) {
        case (.queued, .claimed):
            return .moveTo(.starting)
        case (.starting, .engineAccepted):
            return .moveTo(.running)
        case (.starting, .driverFinished(let outcome, let timedOut)),
            (.running, .driverFinished(let outcome, let timedOut)):
            return finish(outcome, timedOut: timedOut)
        case (.queued, .cancelRequested):
            return .finish(.cancelled, reason: .cancelled, message: "cancelled before it started")
        case (.starting, .cancelRequested), (.running, .cancelRequested):
            return .markCancelRequested
        case (.starting, .leaseExpired(let earlier)) where earlier + 1 >= maxInterruptedDispatches:
            return .finish(
                .failed, reason: .dispatchAbandoned,
                message: "the gateway stopped \(earlier + 1) times while dispatching this build; it is not dispatched "
                    + "again, in case it is what stops the gateway")
        case (.starting, .leaseExpired):
            // Never reached the engine: safe to run again, and nobody will run it twice.
            return .moveTo(.queued)
        case (.running, .leaseExpired):
            // The engine may or may not have finished it: say so rather than guess or build twice.
            return .finish(.failed, reason: .interrupted, message: "the gateway stopped while this build was running")
        default:
            return .ignore
        }
    }

    private static func finish(_ outcome: BuildOutcome, timedOut: Bool) -> Transition {
        switch outcome {
        case .succeeded:
            return .finish(.succeeded, reason: nil, message: nil)
        case .failed(_, let message) where timedOut:
            return .finish(.timedOut, reason: .timedOut, message: message)
        case .failed(.cancelled, let message):
            return .finish(.cancelled, reason: .cancelled, message: message)
        case .failed(.timedOut, let message):
            return .finish(.timedOut, reason: .timedOut, message: message)
        case .failed(let reason, let message):
            return .finish(.failed, reason: reason, message: message)
        }
    }
}
