import BuildGateCore
import Foundation

extension BuildQueue {
    /// Claims the oldest build this queue lets start now, as the dispatcher does (`dispatchable`, then `claim`):
    /// for tests that need a build in `starting` under a given lease. Nil when none can be claimed.
    package func claimNext(
        builder: String, capacity: Int? = nil, owner: String, leaseUntil: Date, now: Date
    ) async throws -> Build? {
        for candidate in try await dispatchable(limit: 200) {
            if let claimed = try await claim(
                candidate.id, builder: builder, capacity: capacity, owner: owner, leaseUntil: leaseUntil, now: now)
            {
                return claimed
            }
        }
        return nil
    }
}
