import BuildGateCore
import Foundation
import Synchronization

/// Build logs as append-only files, `<root>/logs/<build id>.log`, with in-process wake-ups for followers.
///
/// The file is the truth; the in-memory state only tracks each log's length (bytes known to be written) and wakes
/// waiters, so readers never see a partially appended chunk and never read past what was written.
package final class FileBuildLogStore: BuildLogStore {
    private struct LogState {
        var length: Int64
        var isFinished = false
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var cancelledWaiters: Set<UInt64> = []
    }

    private struct State {
        var logs: [BuildID: LogState] = [:]
        var nextWaiter: UInt64 = 0
    }

    private let directory: String
    private let state = Mutex(State())

    package init(dataDirectory: String) throws {
        directory = "\(dataDirectory)/logs"
        try FileManager.default.createDirectory(
            atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }

    private func path(_ id: BuildID) -> String { "\(directory)/\(id.rawValue).log" }

    package func append(_ bytes: [UInt8], to id: BuildID) async throws {
        guard !bytes.isEmpty else { return }
        try state.withLock { state in
            var log = state.logs[id] ?? LogState(length: fileLength(id))
            guard !log.isFinished else {
                throw BuildGateError(.conflict, "the log of \(id) is complete; nothing more is appended")
            }
            let descriptor = open(path(id), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
            guard descriptor >= 0 else { throw BuildGateError(.internalError, "cannot open the log of \(id)") }
            defer { close(descriptor) }
            var written = 0
            while written < bytes.count {
                let result = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress! + written, bytes.count - written) }
                guard result > 0 else {
                    if result < 0 && errno == EINTR { continue }
                    throw BuildGateError(.internalError, "cannot write the log of \(id)")
                }
                written += result
            }
            log.length += Int64(bytes.count)
            Self.wakeAll(&log)
            state.logs[id] = log
        }
    }

    package func finish(_ id: BuildID) async {
        state.withLock { state in
            var log = state.logs[id] ?? LogState(length: fileLength(id))
            log.isFinished = true
            Self.wakeAll(&log)
            state.logs[id] = log
        }
    }

    package func remove(_ id: BuildID) async {
        state.withLock { state in
            if var log = state.logs.removeValue(forKey: id) { Self.wakeAll(&log) }
        }
        unlink(path(id))
    }

    package func snapshot(_ id: BuildID) async -> BuildLogSnapshot {
        state.withLock { state in
            let log = state.logs[id] ?? LogState(length: fileLength(id))
            return BuildLogSnapshot(length: log.length, isFinished: log.isFinished)
        }
    }

    package func read(_ id: BuildID, from offset: Int64, maxLength: Int) async throws -> [UInt8] {
        let known = await snapshot(id).length
        guard offset < known, maxLength > 0 else { return [] }
        let count = Int(min(Int64(maxLength), known - offset))
        let descriptor = open(path(id), O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw BuildGateError(.internalError, "cannot open the log of \(id)") }
        defer { close(descriptor) }
        var bytes = [UInt8](repeating: 0, count: count)
        var filled = 0
        while filled < count {
            let result = bytes.withUnsafeMutableBytes {
                pread(descriptor, $0.baseAddress! + filled, count - filled, off_t(offset) + off_t(filled))
            }
            if result < 0 && errno == EINTR { continue }
            guard result > 0 else { break }
            filled += result
        }
        return Array(bytes.prefix(filled))
    }

    package func waitForChange(_ id: BuildID, beyond length: Int64, timeout: Duration) async -> BuildLogSnapshot {
        let waiter = state.withLock { state in
            state.nextWaiter += 1
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
            var log = state.logs[id] ?? LogState(length: fileLength(id))
            defer { state.logs[id] = log }
            if log.cancelledWaiters.remove(waiter) != nil || log.length > length || log.isFinished {
                return true
            }
            log.waiters[waiter] = continuation
            return false
        }
        if resumeNow { continuation.resume() }
    }

    private func cancelWaiter(_ waiter: UInt64, for id: BuildID) {
        let continuation = state.withLock { state -> CheckedContinuation<Void, Never>? in
            var log = state.logs[id] ?? LogState(length: fileLength(id))
            defer { state.logs[id] = log }
            if let continuation = log.waiters.removeValue(forKey: waiter) { return continuation }
            log.cancelledWaiters.insert(waiter)
            return nil
        }
        continuation?.resume()
    }

    private static func wakeAll(_ log: inout LogState) {
        for continuation in log.waiters.values { continuation.resume() }
        log.waiters.removeAll()
    }

    private func fileLength(_ id: BuildID) -> Int64 {
        var info = stat()
        return stat(path(id), &info) == 0 ? Int64(info.st_size) : 0
    }
}
