import Foundation
import Logging
import ServiceLifecycle

/// Settles builds whose dispatcher is gone, and builds that waited too long: at start-up, then every `interval`.
///
/// A build whose lease expired before it reached the engine goes back to the queue; one that was running ends
/// `failed` with reason `interrupted` and a line in its log saying so. Never a build that says "running" forever.
/// A build still queued at its `queueExpiresAt` ends `expired`, saying why it waited.
package struct LeaseReaper: Service {
    private let queue: any BuildQueue
    private let logs: any BuildLogStore
    private let interval: Duration
    private let queueReasons: QueueReasons?
    private let observer: any BuildObserver
    private let onRequeue: @Sendable () -> Void
    private let logger: Logger

    package init(
        queue: any BuildQueue,
        logs: any BuildLogStore,
        interval: Duration,
        queueReasons: QueueReasons? = nil,
        observer: any BuildObserver = NoBuildObserver(),
        onRequeue: @escaping @Sendable () -> Void = {},
        logger: Logger
    ) {
        self.queue = queue
        self.logs = logs
        self.interval = interval
        self.queueReasons = queueReasons
        self.observer = observer
        self.onRequeue = onRequeue
        self.logger = logger
    }

    package func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                try await settleExpiredLeases(now: Date())
                try await expireQueuedBuilds(now: Date())
            } catch {
                logger.error("settling expired leases failed", metadata: ["buildgate.error": "\(error)"])
            }
            try? await gracefulShutdownAwareSleep(interval)
        }
    }

    /// One pass: settles every build whose lease ended before `now`.
    package func settleExpiredLeases(now: Date) async throws {
        for build in try await queue.expiredLeases(now: now) {
            let event = BuildLifecycle.Event.leaseExpired(interruptedDispatches: build.interruptedDispatches)
            switch BuildLifecycle.transition(from: build.status, on: event) {
            case .finish(let status, let reason, let message):
                let result = "result: \(status.rawValue)" + (reason.map { " (\($0.rawValue))" } ?? "")
                try await logs.appendGatewayLine("\(message ?? "interrupted"); \(result)", to: build.id)
                if let settled = try await queue.settleExpiredLease(build.id, now: now) {
                    await logs.finish(build.id)
                    await observer.buildChanged(settled)
                    logger.notice(
                        "settled a build whose dispatcher is gone",
                        metadata: ["buildgate.build.id": "\(build.id)", "buildgate.build.reason": "\(reason?.rawValue ?? "")"])
                }
            case .moveTo:
                if try await queue.settleExpiredLease(build.id, now: now) != nil {
                    try await logs.appendGatewayLine("the dispatcher that claimed this build is gone; queued again", to: build.id)
                    onRequeue()
                }
            case .markCancelRequested, .ignore:
                continue
            }
        }
    }

    /// One pass: ends every build still queued past its queue TTL as `expired`.
    package func expireQueuedBuilds(now: Date) async throws {
        for build in try await queue.queueExpired(now: now) {
            var message = "waited in the queue past its TTL without a builder"
            if let reason = queueReasons?.reason(for: build.id) { message += " (\(reason))" }
            guard let expired = try await queue.expire(build.id, message: message, at: now) else { continue }
            try await logs.appendGatewayLine("\(message); result: expired", to: build.id)
            await logs.finish(build.id)
            await observer.buildChanged(expired)
        }
    }

    private func gracefulShutdownAwareSleep(_ duration: Duration) async throws {
        try await cancelWhenGracefulShutdown {
            try await Task.sleep(for: duration)
        }
    }
}
