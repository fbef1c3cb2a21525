import BuildGateCore
import Foundation
import Testing

/// The state machine as a table: every state against every event, and what each transition does.
struct BuildLifecycleTests {
    typealias Event = BuildLifecycle.Event

    static let events: [Event] = [
        .claimed(builder: "b", attempt: 1, maxAttempts: 3),
        .engineAccepted(engine: "Podman"),
        .engineFinished(.succeeded([]), timedOut: false),
        .cancelRequested,
        .leaseExpired(interruptedDispatches: 0, cancelRequested: false, attempt: 3, maxAttempts: 3),
        .infrastructureRetry(attempt: 1, maxAttempts: 3, builder: "b", message: "gone"),
        .queueTTLExpired(waitReason: nil),
        .superseded(by: .generate()),
        .shutdownInterrupt,
    ]

    /// The state each event leads to from each state; nil: the event means nothing there.
    static let expected: [BuildStatus: [BuildStatus?]] = [
        //        claimed    accepted  finished    cancel      lease      retry    ttl       superseded  shutdown
        .queued: [.starting, nil, nil, .cancelled, nil, nil, .expired, .cancelled, nil],
        .starting: [nil, .running, .succeeded, .starting, .queued, .queued, nil, nil, .failed],
        .running: [nil, nil, .succeeded, .running, .failed, .queued, nil, nil, .failed],
    ]

    @Test func everyStateAgainstEveryEvent() {
        for status in BuildStatus.allCases {
            let row = Self.expected[status] ?? Array(repeating: nil, count: Self.events.count)
            for (event, after) in zip(Self.events, row) {
                #expect(BuildLifecycle.transition(from: status, on: event)?.status == after, "\(status) × \(event)")
            }
        }
    }

    @Test func everyTerminalTransitionEndsWithAResultLineAndNotifies() {
        for status in BuildStatus.active {
            for event in Self.events {
                guard let transition = BuildLifecycle.transition(from: status, on: event), transition.isTerminal else {
                    continue
                }
                let line = transition.logLine ?? ""
                #expect(line.contains("result: \(transition.status.rawValue)"), "\(status) × \(event): \(line)")
                #expect(transition.notifies)
                #expect(transition.reason != nil || transition.status == .succeeded)
            }
        }
    }

    @Test func aDriversOutcomeBecomesTheResultAndTheDeadlineWinsOverWhatItSays() {
        func after(_ outcome: BuildOutcome, timedOut: Bool) -> BuildLifecycle.Transition? {
            BuildLifecycle.transition(from: .running, on: .engineFinished(outcome, timedOut: timedOut))
        }
        #expect(after(.succeeded([]), timedOut: false)?.logLine == "result: succeeded")
        let failed = after(.failed(.buildFailed, message: "exit 3\n"), timedOut: false)
        #expect(failed?.status == .failed && failed?.reason == .buildFailed && failed?.message == "exit 3\n")
        #expect(failed?.logLine == "result: failed (buildFailed): exit 3")
        #expect(after(.failed(.cancelled, message: "stopped"), timedOut: true)?.status == .timedOut)
        #expect(after(.failed(.cancelled, message: "stopped"), timedOut: false)?.status == .cancelled)
        #expect(
            after(.failed(.cancelled, message: "stopped"), timedOut: false)?.logLine == "result: cancelled: stopped")
    }

    @Test func cancellingARunningBuildOnlyMarksItAndTellsNobodyYet() {
        let marked = BuildLifecycle.transition(from: .running, on: .cancelRequested)
        #expect(marked?.marksCancelRequested == true && marked?.notifies == false && marked?.logLine == nil)
        #expect(
            BuildLifecycle.transition(from: .queued, on: .cancelRequested)?.logLine
                == "cancelled before it started; result: cancelled")
    }

    @Test func anExpiredLeaseRequeuesWhatNeverStartedOnceThenGivesUpAndInterruptsWhatRan() {
        let limit = BuildLifecycle.maxInterruptedDispatches
        #expect(
            BuildLifecycle.transition(
                from: .starting,
                on: .leaseExpired(interruptedDispatches: limit - 2, cancelRequested: false, attempt: 1, maxAttempts: 3)
            )?.status == .queued)
        let abandoned = BuildLifecycle.transition(
            from: .starting,
            on: .leaseExpired(interruptedDispatches: limit - 1, cancelRequested: false, attempt: 1, maxAttempts: 3))
        #expect(abandoned?.status == .failed && abandoned?.reason == .dispatchAbandoned)
        #expect(abandoned?.message?.contains("\(limit) times") == true)
        let interrupted = BuildLifecycle.transition(
            from: .running,
            on: .leaseExpired(interruptedDispatches: 5, cancelRequested: false, attempt: 3, maxAttempts: 3))
        #expect(interrupted?.reason == .interrupted)
        #expect(
            interrupted?.logLine
                == "attempt 3 of 3 ended without a result: the gateway running it stopped; result: failed (interrupted)"
        )
        let cancelled = BuildLifecycle.transition(
            from: .starting,
            on: .leaseExpired(interruptedDispatches: 0, cancelRequested: true, attempt: 1, maxAttempts: 3))
        #expect(cancelled?.status == .cancelled)
    }

    /// A gateway that dies while its build runs is an infrastructure failure like a builder that vanishes: another
    /// gateway runs the build again on another builder, up to the attempts allowed, and its log says so.
    @Test func aBuildWhoseGatewayDiedWhileItRanIsRetriedUpToItsAttempts() {
        let retried = BuildLifecycle.transition(
            from: .running,
            on: .leaseExpired(interruptedDispatches: 0, cancelRequested: false, attempt: 1, maxAttempts: 3))
        #expect(retried?.status == .queued)
        #expect(
            retried?.logLine
                == "attempt 1 of 3 ended without a result: the gateway running it stopped; back in the queue for another builder"
        )
        #expect(retried?.notifies == true)
        let cancelled = BuildLifecycle.transition(
            from: .running,
            on: .leaseExpired(interruptedDispatches: 0, cancelRequested: true, attempt: 1, maxAttempts: 3))
        #expect(cancelled?.status == .cancelled && cancelled?.reason == .cancelled)
    }

    @Test func gatewayDecisionsSayWhyBeforeTheResult() {
        #expect(
            BuildLifecycle.transition(from: .queued, on: .queueTTLExpired(waitReason: "no builder is healthy"))?.logLine
                == "waited in the queue past its TTL without a builder (no builder is healthy); result: expired")
        #expect(
            BuildLifecycle.transition(from: .running, on: .shutdownInterrupt)?.logLine
                == "the gateway shut down before the build finished; result: failed (interrupted)")
        let newer = BuildID.generate()
        #expect(
            BuildLifecycle.transition(from: .queued, on: .superseded(by: newer))?.logLine
                == "superseded by the newer build \(newer) (run policy latestOnly); result: cancelled (superseded)")
    }
}
