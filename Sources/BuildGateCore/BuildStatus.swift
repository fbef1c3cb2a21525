/// Where a build is in its life. Stored as the raw value; the schema checks the set.
package enum BuildStatus: String, Sendable, Codable, CaseIterable {
    /// Accepted and durable, waiting for a builder slot.
    case queued
    /// Claimed by a dispatcher, which holds a lease; the engine has not accepted it yet.
    case starting
    /// The engine is working on it.
    case running
    case succeeded
    case failed
    case cancelled
    case timedOut
    /// It waited in the queue longer than its queue TTL and never ran.
    case expired

    /// Not ended yet: queued, starting or running.
    package static let active: [BuildStatus] = allCases.filter { !$0.isTerminal }
    /// Held by a dispatcher under a lease: starting or running.
    package static let leased: [BuildStatus] = [.starting, .running]
    /// Ended: succeeded, failed, cancelled, timedOut or expired.
    package static let terminal: [BuildStatus] = allCases.filter(\.isTerminal)

    package var isTerminal: Bool {
        switch self {
        case .queued, .starting, .running: false
        case .succeeded, .failed, .cancelled, .timedOut, .expired: true
        }
    }
}

/// Why a build did not succeed; machine-readable, shown as `reason` in the build JSON.
package enum BuildFailureReason: String, Sendable, Codable, CaseIterable {
    /// The builder could not be reached or refused the request before building.
    case builderUnavailable
    /// The build itself failed (a `RUN` step, a missing file, a bad Dockerfile…).
    case buildFailed
    /// The image was built but could not be pushed.
    case pushFailed
    /// The build ran past its `timeout`.
    case timedOut
    /// Someone cancelled it.
    case cancelled
    /// The gateway stopped while the build was running; its result is unknown.
    case interrupted
    /// The git source could not be fetched or is not a valid context.
    case sourceFailed
    /// It waited in the queue past its TTL.
    case expired
    /// A newer build of the same run key replaced it while it was queued (run policy `latestOnly`).
    case superseded
    /// The gateway stopped (crashed or was killed) every time it dispatched this build, `maxInterruptedDispatches`
    /// times; it is not dispatched again.
    case dispatchAbandoned
}

/// How builds that share a run key go: all at once (`parallel`, the default), one at a time in order (`serial`),
/// or only the newest (`latestOnly`: a new build cancels the queued older ones as `superseded`; one that already
/// runs finishes).
package enum RunPolicy: String, Sendable, Codable, CaseIterable {
    case parallel
    case serial
    case latestOnly
}

/// An image the build pushed, with the manifest digest the registry stored.
package struct PushedImage: Hashable, Sendable, Codable {
    package var reference: ImageReference
    package var digest: String

    package init(reference: ImageReference, digest: String) {
        self.reference = reference
        self.digest = digest
    }
}

/// How a driver's run ended.
package enum BuildOutcome: Sendable, Equatable {
    case succeeded([PushedImage])
    case failed(BuildFailureReason, message: String)
}
