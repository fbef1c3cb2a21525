import Foundation

/// One change of a build's status, numbered in the order the store committed it.
package struct BuildStateChange: Sendable, Equatable {
    /// The change's place in the store's one sequence: increasing, never reused, durable across restarts.
    package var sequence: Int64
    package var tenant: TenantID
    package var buildID: BuildID
    package var status: BuildStatus
    package var reason: BuildFailureReason?
    package var at: Date

    package init(
        sequence: Int64, tenant: TenantID, buildID: BuildID, status: BuildStatus, reason: BuildFailureReason?, at: Date
    ) {
        self.sequence = sequence
        self.tenant = tenant
        self.buildID = buildID
        self.status = status
        self.reason = reason
        self.at = at
    }
}

/// The durable record of build status changes that `GET /v1/events` serves: every status a build takes (its
/// creation included) is recorded in the same transaction that sets it, so a reader that resumes after the last
/// sequence it saw misses nothing and sees nothing twice.
///
/// Safe to call concurrently. Readers are woken when this process commits a change; a change committed by another
/// process is seen at the latest when `waitForChanges` times out, so callers loop with a bounded timeout.
package protocol BuildEventFeed: Sendable {
    /// `tenant`'s changes with a sequence greater than `sequence`, oldest first, at most `limit`.
    func changes(of tenant: TenantID, after sequence: Int64, limit: Int) async throws -> [BuildStateChange]

    /// The greatest sequence recorded so far (0 when none).
    func lastSequence() async throws -> Int64

    /// Returns once a change past `sequence` may have been committed, or after `timeout`.
    func waitForChanges(after sequence: Int64, timeout: Duration) async
}
