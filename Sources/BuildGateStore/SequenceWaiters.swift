import Foundation
import Synchronization

/// Readers waiting for a sequence number to pass theirs (the build event feeds): woken when a newer one is seen
/// committed, or when their timeout ends.
final class SequenceWaiters: Sendable {
    /// The newest sequence seen committed, and the readers waiting for one past theirs.
    private let state = Mutex<
        (seen: Int64, waiters: [UUID: (after: Int64, continuation: CheckedContinuation<Void, Never>)])
    >((0, [:]))

    init(seen: Int64) {
        state.withLock { $0.seen = seen }
    }

    /// `newest` is committed: wakes every reader waiting for less.
    func committed(_ newest: Int64) {
        let woken = state.withLock { state in
            state.seen = max(state.seen, newest)
            let ready = state.waiters.filter { $0.value.after < newest }
            for key in ready.keys { state.waiters[key] = nil }
            return ready.values.map(\.continuation)
        }
        for continuation in woken { continuation.resume() }
    }

    /// Returns when a sequence past `sequence` is seen, when `timeout` passes, or when the task is cancelled.
    func wait(after sequence: Int64, timeout: Duration) async {
        let key = UUID()
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { continuation in
                        let ready = self.state.withLock { state in
                            if state.seen > sequence || Task.isCancelled { return true }
                            state.waiters[key] = (sequence, continuation)
                            return false
                        }
                        if ready { continuation.resume() }
                    }
                } onCancel: {
                    self.state.withLock { $0.waiters.removeValue(forKey: key) }?.continuation.resume()
                }
            }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
        }
    }
}
