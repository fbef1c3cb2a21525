import Foundation

/// What time it is, and how to wait for a while: the system's clock in production, a clock that tests move.
///
/// Whatever decides by time (build timeouts, leases, the shutdown grace, queue TTLs, retention, rate limits) asks
/// its clock, never `Date()` or `Task.sleep` directly, so a test can move time on instead of waiting for it. Safe
/// from any task.
package protocol GatewayClock: Sendable {
    /// The current wall-clock time, as stored with builds (leases, TTLs, finish times).
    var now: Date { get }
    /// Returns once `duration` of this clock's time has passed; throws `CancellationError` when the task is
    /// cancelled first.
    func sleep(for duration: Duration) async throws
}

/// The system's clock.
package struct SystemClock: GatewayClock {
    package init() {}
    package var now: Date { Date() }
    package func sleep(for duration: Duration) async throws { try await Task.sleep(for: duration) }
}

extension Date {
    /// This date moved on by `duration`.
    package static func + (date: Date, duration: Duration) -> Date {
        let (seconds, attoseconds) = duration.components
        return date.addingTimeInterval(Double(seconds) + Double(attoseconds) / 1e18)
    }
}
