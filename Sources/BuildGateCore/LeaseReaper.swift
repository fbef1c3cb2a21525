import Foundation
import Logging
import ServiceLifecycle

/// Settles builds whose dispatcher is gone, and builds that waited too long: at start-up, then every `interval`.
///
/// A build whose lease expired before it reached the engine goes back to the queue; one that was running goes back
/// as its next attempt (the gateway running it died: an infrastructure failure), and after `maxAttempts` ends
/// `failed` with reason `interrupted`; its log says which. Never a build that says "running" forever. With several
/// gateways on one database, any of them settles what another left behind.
/// A build still queued at its `queueExpiresAt` ends `expired`, saying why it waited.
package struct LeaseReaper: Service {
    private let queue: any BuildQueue
    private let logs: any BuildLogStore
    private let interval: Duration
    private let queueReasons: QueueReasons?
    private let observer: any BuildObserver
    private let onRequeue: @Sendable () -> Void
    private let logger: Logger
    private let settler: BuildSettler
    private let clock: any GatewayClock
    private let maxAttempts: Int
    private let retryQueueTTL: Duration

    package init(
        queue: any BuildQueue,
        logs: any BuildLogStore,
        interval: Duration,
        queueReasons: QueueReasons? = nil,
        observer: any BuildObserver = NoBuildObserver(),
        onRequeue: @escaping @Sendable () -> Void = {},
        settler: BuildSettler? = nil,
        clock: any GatewayClock = SystemClock(),
        maxAttempts: Int = BuildDispatcher.Configuration().maxAttempts,
        retryQueueTTL: Duration = BuildDispatcher.Configuration().retryQueueTTL,
        logger: Logger
    ) {
        self.clock = clock
        self.maxAttempts = maxAttempts
        self.retryQueueTTL = retryQueueTTL
        self.queue = queue
        self.logs = logs
        self.interval = interval
        self.queueReasons = queueReasons
        self.observer = observer
        self.onRequeue = onRequeue
        self.logger = logger
        self.settler = settler ?? BuildSettler(store: queue, logs: logs, observer: observer, logger: logger)
    }

    package func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                try await settleExpiredLeases(now: clock.now)
                try await expireQueuedBuilds(now: clock.now)
            } catch {
                logger.error("settling expired leases failed", metadata: ["buildgate.error": "\(error)"])
            }
            try? await gracefulShutdownAwareSleep(interval)
        }
    }

    /// One pass: settles every build whose lease ended before `now`.
    package func settleExpiredLeases(now: Date) async throws {
        for build in try await queue.expiredLeases(now: now) {
            let event = BuildLifecycle.Event.leaseExpired(
                interruptedDispatches: build.interruptedDispatches, cancelRequested: build.cancelRequested,
                attempt: build.attempt, maxAttempts: maxAttempts)
            guard let transition = BuildLifecycle.transition(from: build.status, on: event) else { continue }
            if transition.isTerminal {
                if let settled = try await settler.settle(build, on: event, expecting: .expiredLease(now: now), at: now)
                {
                    logger.notice(
                        "settled a build whose dispatcher is gone",
                        metadata: [
                            "buildgate.build.id": "\(build.id)",
                            "buildgate.build.reason": "\(settled.reason?.rawValue ?? "")",
                        ])
                }
            } else if let requeued = try await queue.requeueExpiredLease(
                build.id, now: now, queueExpiresAt: build.status == .running ? now + retryQueueTTL : nil)
            {
                if let line = transition.logLine { try await logs.appendGatewayLine(line, to: build.id) }
                if transition.notifies { await observer.buildChanged(requeued) }
                onRequeue()
            }
        }
    }

    /// One pass: ends every build still queued past its queue TTL as `expired`.
    package func expireQueuedBuilds(now: Date) async throws {
        for build in try await queue.queueExpired(now: now) {
            let event = BuildLifecycle.Event.queueTTLExpired(waitReason: queueReasons?.reason(for: build.id))
            _ = try await settler.settle(build, on: event, expecting: .queued, at: now)
        }
    }

    private func gracefulShutdownAwareSleep(_ duration: Duration) async throws {
        try await cancelWhenGracefulShutdown { [clock] in
            try await clock.sleep(for: duration)
        }
    }
}
