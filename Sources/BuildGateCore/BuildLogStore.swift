/// The gateway's own store of build output: one append-only byte log per build.
///
/// Offsets are stable: a byte once at offset N stays there. Appends to one build's log are made by one writer (its
/// dispatcher) in order; any number of readers may read and wait concurrently. `finish` is called after the
/// build's terminal status is committed, so a reader that saw a terminal status before taking a snapshot knows that
/// snapshot holds every byte.
package protocol BuildLogStore: Sendable {
    /// Appends bytes to the end of the build's log (creating it if needed); written to the OS when it returns.
    /// Throws a `.conflict` error once the log is finished: a complete log never changes.
    func append(_ bytes: [UInt8], to id: BuildID) async throws

    /// Marks the log complete and wakes every waiter.
    func finish(_ id: BuildID) async

    /// The current length, and whether `finish` was called (by this process, or for a file store by any before it).
    func snapshot(_ id: BuildID) async -> BuildLogSnapshot

    /// Up to `maxLength` bytes from `offset`: fewer at the end of the log (empty past it), and a store may stop
    /// short at a boundary of its own (callers read on from where they got). The slice may share its storage with
    /// other readers of the same bytes.
    func read(_ id: BuildID, from offset: Int64, maxLength: Int) async throws -> ArraySlice<UInt8>

    /// Waits until the log is longer than `length`, is finished, or `timeout` passes, then returns a snapshot.
    /// Returns early (with whatever is there) when the calling task is cancelled.
    func waitForChange(_ id: BuildID, beyond length: Int64, timeout: Duration) async -> BuildLogSnapshot

    /// Deletes a finished build's log (retention). A missing log is fine.
    func remove(_ id: BuildID) async
}

/// A moment's view of a build log.
package struct BuildLogSnapshot: Sendable, Equatable {
    package var length: Int64
    package var isFinished: Bool

    package init(length: Int64, isFinished: Bool) {
        self.length = length
        self.isFinished = isFinished
    }
}

extension BuildLogStore {
    /// Appends one gateway line (`[buildgate] …`), the gateway's own voice in the build log.
    package func appendGatewayLine(_ text: String, to id: BuildID) async throws {
        try await append(Array("[buildgate] \(text)\n".utf8), to: id)
    }
}
