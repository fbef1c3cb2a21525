import BuildGateCore
import Foundation
import Synchronization

/// Build logs as append-only files, `<root>/logs/<build id>.log`, with in-process wake-ups for followers.
///
/// The file is the truth. A log being written in this process is *open*: one descriptor for its appends and reads,
/// and its newest bytes in memory as pieces, so a thousand followers of a running build read memory, not the file,
/// and those at the same offset get slices of one array instead of a read and a buffer each. Pieces are fixed spans of the log
/// (`[k·pieceSize, (k+1)·pieceSize)`) and a read stops at a piece's end, so followers fall onto the same pieces.
/// Readers never see a partially appended chunk and never read past what was written.
///
/// `finish` makes the file read-only (mode 0400): the mark of a complete log, on disk, so it holds after a restart
/// and costs no memory. In memory there are only the open logs (running builds, and the last few finished ones
/// for followers still catching up) and the waiters of the moment.
package final class FileBuildLogStore: BuildLogStore {
    /// The span of one piece: also the most a read returns.
    package static let pieceSize = 32 * 1024
    /// Whole pieces kept in memory per open log, besides the one being filled (1 MiB).
    package static let windowPieces = 32
    /// Finished logs kept open for followers still reading them.
    package static let recentlyFinishedLimit = 16
    /// Read-only descriptors kept for logs not open here.
    package static let readerLimit = 64

    /// A log file's descriptor, closed when the last holder lets go (a reader may outlive the log's eviction).
    private final class LogFile: Sendable {
        let descriptor: Int32
        init(_ descriptor: Int32) { self.descriptor = descriptor }
        deinit { close(descriptor) }
    }

    private struct OpenLog {
        let file: LogFile
        var length: Int64
        /// When it was last appended to (the store's own tick): the least recent goes when too many are open.
        var lastAppend: UInt64 = 0
        /// Whole pieces (the first may start mid-piece, where the log stood when it was opened), oldest first.
        var sealed: [(start: Int64, bytes: [UInt8])] = []
        /// The bytes of the piece being filled, from `fillingStart` to `length`.
        var filling: [UInt8]
        var fillingStart: Int64

        init(file: LogFile, length: Int64) {
            self.file = file
            self.length = length
            self.fillingStart = length
            self.filling = []
            filling.reserveCapacity(Int(FileBuildLogStore.pieceEnd(containing: length) - length))
        }

        mutating func remember(_ bytes: [UInt8]) {
            var rest = bytes[...]
            while !rest.isEmpty {
                let boundary = FileBuildLogStore.pieceEnd(containing: fillingStart)
                let room = Int(boundary - fillingStart) - filling.count
                filling += rest.prefix(room)
                rest = rest.dropFirst(room)
                if fillingStart + Int64(filling.count) == boundary {
                    sealed.append((fillingStart, filling))
                    if sealed.count > FileBuildLogStore.windowPieces { sealed.removeFirst() }
                    filling = []
                    filling.reserveCapacity(FileBuildLogStore.pieceSize)
                    fillingStart = boundary
                }
            }
            length += Int64(bytes.count)
        }

        /// The bytes at `offset` from memory, up to the end of their piece: a whole piece's array is shared, the
        /// piece being filled is copied (appends go on into it). Nil when `offset` is older than the window.
        func cached(from offset: Int64, maxLength: Int) -> ArraySlice<UInt8>? {
            if offset >= fillingStart {
                let skip = Int(offset - fillingStart)
                return Array(filling[skip..<min(filling.count, skip + maxLength)])[...]
            }
            guard let piece = sealed.last(where: { $0.start <= offset }) else { return nil }
            let skip = Int(offset - piece.start)
            return piece.bytes[skip..<min(piece.bytes.count, skip + maxLength)]
        }
    }

    private struct State {
        var open: [BuildID: OpenLog] = [:]
        /// Finished logs still open, oldest first; the oldest is closed when there are more than the limit.
        var recentlyFinished: [BuildID] = []
        var waiters: [BuildID: [UInt64: CheckedContinuation<Void, Never>]] = [:]
        /// Read-only descriptors of logs not open here (written by another gateway, or finished), newest last: a
        /// follower's every read would otherwise open the file.
        var readers: [(id: BuildID, file: LogFile)] = []
        /// Waiters numbered but not registered yet, and those of them already cancelled.
        var unregistered: Set<UInt64> = []
        var cancelledBeforeRegistering: Set<UInt64> = []
        var nextWaiter: UInt64 = 0
        var tick: UInt64 = 0
    }

    private let directory: String
    private let state = Mutex(State())
    /// Logs kept open for appends (each a descriptor and its newest pieces). Every queued build's log gets a line at
    /// intake, so without a bound a long queue would hold a descriptor per build.
    private let openLimit: Int
    /// Told of every append and finish here (several gateways on one data directory: `announceChanges`). A class
    /// holds the closure: a closure kept in the `Mutex` itself gained two reabstraction thunks at every read.
    private final class Announcer: Sendable {
        let call: @Sendable (BuildID) -> Void
        init(_ call: @escaping @Sendable (BuildID) -> Void) { self.call = call }
    }
    private let announce = Mutex<Announcer?>(nil)

    package init(dataDirectory: String, openLimit: Int = 1024) throws {
        directory = "\(dataDirectory)/logs"
        self.openLimit = max(1, openLimit)
        try FileManager.default.createDirectory(
            atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }

    private func path(_ id: BuildID) -> String { "\(directory)/\(id.rawValue).log" }

    /// Calls `handler` after each append and finish made here, so gateways sharing the data directory can be told
    /// (`changedElsewhere` there). It must return quickly.
    package func announceChanges(_ handler: @escaping @Sendable (BuildID) -> Void) {
        announce.withLock { $0 = Announcer(handler) }
    }

    /// Another gateway appended to or finished this log in the shared data directory: the file is the truth, so a
    /// copy held open here (this gateway ran an earlier attempt) is dropped, and followers here wake to read it.
    package func changedElsewhere(_ id: BuildID) {
        state.withLock { state in
            state.open.removeValue(forKey: id)
            state.recentlyFinished.removeAll { $0 == id }
            Self.wakeAll(&state, id)
        }
    }

    /// The end of the piece holding `offset`.
    static func pieceEnd(containing offset: Int64) -> Int64 {
        (offset / Int64(pieceSize) + 1) * Int64(pieceSize)
    }

    /// Logs open in memory (running builds and recently finished ones): for tests of the store's bounds.
    package var openLogCount: Int { state.withLock { $0.open.count } }

    package func append(_ bytes: [UInt8], to id: BuildID) async throws {
        guard !bytes.isEmpty else { return }
        try state.withLock { state in
            guard !state.recentlyFinished.contains(id) else { throw Self.complete(id) }
            var log = try state.open.removeValue(forKey: id) ?? openForAppending(id, in: &state)
            state.tick += 1
            log.lastAppend = state.tick
            defer { state.open[id] = log }
            var written = 0
            while written < bytes.count {
                let result = bytes.withUnsafeBytes {
                    write(log.file.descriptor, $0.baseAddress! + written, bytes.count - written)
                }
                guard result > 0 else {
                    if result < 0 && errno == EINTR { continue }
                    throw BuildGateError(.internalError, "cannot write the log of \(id)")
                }
                written += result
            }
            log.remember(bytes)
            Self.wakeAll(&state, id)
        }
        announce.withLock { $0 }?.call(id)
    }

    private static func complete(_ id: BuildID) -> BuildGateError {
        BuildGateError(.conflict, "the log of \(id) is complete; nothing more is appended")
    }

    /// Opens (creating) a log for appends, first closing the least recently appended one when `openLimit` are
    /// open (it is opened again at its next append, from the file); a finished log (read-only on disk) is refused.
    private func openForAppending(_ id: BuildID, in state: inout State) throws -> OpenLog {
        while state.open.count >= openLimit,
            let oldest = state.open.min(by: { $0.value.lastAppend < $1.value.lastAppend })?.key
        {
            state.open.removeValue(forKey: oldest)
            state.recentlyFinished.removeAll { $0 == oldest }
        }
        let descriptor = open(path(id), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw errno == EACCES ? Self.complete(id) : BuildGateError(.internalError, "cannot open the log of \(id)")
        }
        let file = LogFile(descriptor)
        var info = stat()
        guard fstat(descriptor, &info) == 0 else {
            throw BuildGateError(.internalError, "cannot open the log of \(id)")
        }
        // Root opens a read-only file for writing all the same.
        guard info.st_mode & S_IWUSR != 0 else { throw Self.complete(id) }
        return OpenLog(file: file, length: Int64(info.st_size))
    }

    package func finish(_ id: BuildID) async {
        state.withLock { state in
            if state.open[id] != nil, !state.recentlyFinished.contains(id) {
                state.recentlyFinished.append(id)
                if state.recentlyFinished.count > Self.recentlyFinishedLimit {
                    state.open.removeValue(forKey: state.recentlyFinished.removeFirst())
                }
            }
            if let log = state.open[id] {
                fchmod(log.file.descriptor, 0o400)
            } else {
                // Created empty if the build never wrote a byte, so "complete" has somewhere to be recorded.
                let descriptor = open(path(id), O_RDONLY | O_CREAT | O_CLOEXEC, 0o600)
                if descriptor >= 0 {
                    fchmod(descriptor, 0o400)
                    close(descriptor)
                }
            }
            Self.wakeAll(&state, id)
        }
        announce.withLock { $0 }?.call(id)
    }

    package func remove(_ id: BuildID) async {
        state.withLock { state in
            state.open.removeValue(forKey: id)
            state.readers.removeAll { $0.id == id }
            state.recentlyFinished.removeAll { $0 == id }
            Self.wakeAll(&state, id)
        }
        unlink(path(id))
    }

    package func snapshot(_ id: BuildID) async -> BuildLogSnapshot {
        state.withLock { state in snapshot(id, in: state) }
    }

    private func snapshot(_ id: BuildID, in state: State) -> BuildLogSnapshot {
        if let log = state.open[id] {
            return BuildLogSnapshot(length: log.length, isFinished: state.recentlyFinished.contains(id))
        }
        var info = stat()
        guard stat(path(id), &info) == 0 else { return BuildLogSnapshot(length: 0, isFinished: false) }
        return BuildLogSnapshot(length: Int64(info.st_size), isFinished: info.st_mode & S_IWUSR == 0)
    }

    package func read(_ id: BuildID, from offset: Int64, maxLength: Int) async throws -> ArraySlice<UInt8> {
        enum Source {
            case memory(ArraySlice<UInt8>)
            case file(LogFile?, count: Int)
        }
        let source = state.withLock { state -> Source in
            let known = snapshot(id, in: state).length
            guard offset < known, maxLength > 0 else { return .memory([]) }
            let count = Int(min(Int64(maxLength), known - offset))
            guard let log = state.open[id] else { return .file(reader(id, in: &state), count: count) }
            if let cached = log.cached(from: offset, maxLength: count) { return .memory(cached) }
            // Older than the window: from the file, up to the piece's end, so the next read lands on a piece.
            return .file(log.file, count: Int(min(Int64(count), Self.pieceEnd(containing: offset) - offset)))
        }
        switch source {
        case .memory(let bytes):
            return bytes
        case .file(let file?, let count):
            return try withExtendedLifetime(file) { try Self.read(count, at: offset, from: file.descriptor, of: id) }
        case .file(nil, _):
            throw BuildGateError(.internalError, "cannot open the log of \(id)")
        }
    }

    /// A read-only descriptor of a log not open here, kept for the next read (the oldest of `readerLimit` goes).
    private func reader(_ id: BuildID, in state: inout State) -> LogFile? {
        if let index = state.readers.firstIndex(where: { $0.id == id }) { return state.readers[index].file }
        let descriptor = open(path(id), O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        let file = LogFile(descriptor)
        state.readers.append((id, file))
        if state.readers.count > Self.readerLimit { state.readers.removeFirst() }
        return file
    }

    private static func read(_ count: Int, at offset: Int64, from descriptor: Int32, of id: BuildID) throws
        -> ArraySlice<UInt8>
    {
        var failure: Int32 = 0
        let bytes = [UInt8](unsafeUninitializedCapacity: count) { buffer, filled in
            while filled < count {
                let read = pread(
                    descriptor, buffer.baseAddress! + filled, count - filled, off_t(offset) + off_t(filled))
                if read < 0 && errno == EINTR { continue }
                if read < 0 { failure = errno }
                guard read > 0 else { return }  // an error, or the file is shorter: removed meanwhile
                filled += read
            }
        }
        guard failure == 0 else { throw BuildGateError(.internalError, "cannot read the log of \(id)") }
        return bytes[...]
    }

    package func waitForChange(_ id: BuildID, beyond length: Int64, timeout: Duration) async -> BuildLogSnapshot {
        let waiter = state.withLock { state in
            state.nextWaiter += 1
            state.unregistered.insert(state.nextWaiter)
            return state.nextWaiter
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(for: timeout) }
            group.addTask {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { continuation in
                        self.register(continuation, as: waiter, for: id, beyond: length)
                    }
                } onCancel: {
                    self.cancelWaiter(waiter, for: id)
                }
            }
            await group.next()
            group.cancelAll()
        }
        return await snapshot(id)
    }

    private func register(
        _ continuation: CheckedContinuation<Void, Never>, as waiter: UInt64, for id: BuildID, beyond length: Int64
    ) {
        let resumeNow = state.withLock { state in
            state.unregistered.remove(waiter)
            if state.cancelledBeforeRegistering.remove(waiter) != nil { return true }
            let now = snapshot(id, in: state)
            if now.length > length || now.isFinished { return true }
            state.waiters[id, default: [:]][waiter] = continuation
            return false
        }
        if resumeNow { continuation.resume() }
    }

    /// How many readers wait on the log now (for tests that must know a reader is waiting before they write).
    package func waiterCount(_ id: BuildID) -> Int {
        state.withLock { $0.waiters[id]?.count ?? 0 }
    }

    private func cancelWaiter(_ waiter: UInt64, for id: BuildID) {
        let continuation = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if let continuation = state.waiters[id]?.removeValue(forKey: waiter) {
                if state.waiters[id]?.isEmpty == true { state.waiters.removeValue(forKey: id) }
                return continuation
            }
            // Not registered yet: `register` resumes it at once. Already woken: nothing to do.
            if state.unregistered.contains(waiter) { state.cancelledBeforeRegistering.insert(waiter) }
            return nil
        }
        continuation?.resume()
    }

    private static func wakeAll(_ state: inout State, _ id: BuildID) {
        guard let waiters = state.waiters.removeValue(forKey: id) else { return }
        for continuation in waiters.values { continuation.resume() }
    }
}
