import BuildGateCore
import BuildGateStore
import BuildGateTesting
import Foundation
import Synchronization
import Testing

struct FileBuildLogStoreTests {
    /// Every queued build's log gets its first line at intake, and a log written here stayed open until its build
    /// ended: with ten thousand builds queued the gateway ran out of file descriptors (SQLite could not open its
    /// files, then the process died). The logs kept open are bounded; one closed is opened again on its next
    /// append, and nothing written is lost.
    @Test func theLogsKeptOpenAreBoundedHoweverManyBuildsWrite() async throws {
        let directory = try TemporaryDirectory("logs")
        defer { directory.remove() }
        let logs = try FileBuildLogStore(dataDirectory: directory.path, openLimit: 8)
        // This process's descriptors open on files of this test's directory (other tests run at the same time).
        let name = "/" + URL(fileURLWithPath: directory.path).lastPathComponent + "/"
        func descriptors() throws -> Int {
            try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").filter { fd in
                (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)"))?.contains(name)
                    == true
            }.count
        }
        let before = try descriptors()
        let ids = (0..<200).map { _ in BuildID.generate() }
        for id in ids { try await logs.append(Array("queued\n".utf8), to: id) }
        #expect(logs.openLogCount <= 8)
        let grown = try descriptors() - before
        #expect(grown > 0 && grown <= 8, "descriptors grew by \(grown)")
        for id in ids.prefix(20) { try await logs.append(Array("running\n".utf8), to: id) }
        #expect(logs.openLogCount <= 8)
        for id in ids.prefix(20) { #expect(try await logs.text(id) == "queued\nrunning\n") }
        #expect(try await logs.text(ids[150]) == "queued\n")
    }

    /// The change handler (gateways sharing logs) is told of every append and finish, and reached the same way
    /// each time. It was kept as a closure in a `Mutex`, and every read of it wrapped the stored closure in two more
    /// reabstraction thunks (the inout access writes it back), so the thousandth append called through two thousand
    /// frames: two gateways spent 53 s of CPU on a 100,000-line log.
    @Test func theChangeHandlerIsToldOfEveryChangeAndReachedTheSameWayEachTime() async throws {
        let directory = try TemporaryDirectory("logs")
        defer { directory.remove() }
        let logs = try FileBuildLogStore(dataDirectory: directory.path)
        let calls = Mutex<[(BuildID, Int)]>([])
        logs.announceChanges { id in calls.withLock { $0.append((id, Thread.callStackSymbols.count)) } }
        let id = BuildID.generate()
        for line in 0..<300 { try await logs.append(Array("line \(line)\n".utf8), to: id) }
        await logs.finish(id)
        let seen = calls.withLock { $0 }
        #expect(seen.count == 301 && seen.allSatisfy { $0.0 == id })
        let depths = Set(seen.dropFirst().map(\.1))
        #expect(depths.count == 1 || (depths.max() ?? 0) - (depths.min() ?? 0) < 10, "stack depths \(depths.sorted())")
    }

    @Test func appendsKeepOffsetsAndReadsNeverPassTheKnownLength() async throws {
        let directory = try TemporaryDirectory("logs")
        defer { directory.remove() }
        let logs = try FileBuildLogStore(dataDirectory: directory.path)
        let id = BuildID.generate()
        try await logs.append(Array("hello ".utf8), to: id)
        try await logs.append(Array("world\n".utf8), to: id)
        #expect(await logs.snapshot(id) == BuildLogSnapshot(length: 12, isFinished: false))
        #expect(try await logs.read(id, from: 6, maxLength: 100) == Array("world\n".utf8)[...])
        #expect(try await logs.read(id, from: 12, maxLength: 100).isEmpty)

        let reopened = try FileBuildLogStore(dataDirectory: directory.path)
        #expect(await reopened.snapshot(id) == BuildLogSnapshot(length: 12, isFinished: false))
        #expect(try await reopened.read(id, from: 0, maxLength: 5) == Array("hello".utf8)[...])

        await logs.finish(id)
        await #expect(throws: BuildGateError.self) { try await logs.append(Array("late".utf8), to: id) }
        #expect(await logs.snapshot(id).length == 12)
        // Complete is marked on the file itself: another store (a restarted gateway) sees it and refuses appends.
        #expect(await reopened.snapshot(id) == BuildLogSnapshot(length: 12, isFinished: true))
        await #expect(throws: BuildGateError.self) { try await reopened.append(Array("late".utf8), to: id) }
        #expect(try await reopened.text(id) == "hello world\n")
    }

    @Test func aBuildWithoutOutputStillEndsComplete() async throws {
        let directory = try TemporaryDirectory("logs")
        defer { directory.remove() }
        let logs = try FileBuildLogStore(dataDirectory: directory.path)
        let id = BuildID.generate()
        await logs.finish(id)
        #expect(await logs.snapshot(id) == BuildLogSnapshot(length: 0, isFinished: true))
        #expect(await logs.waitForChange(id, beyond: 0, timeout: .seconds(30)).isFinished)
    }

    @Test func readsStopAtPieceEndsAndReadersOfAWholePieceShareItsArray() async throws {
        let directory = try TemporaryDirectory("logs")
        defer { directory.remove() }
        let logs = try FileBuildLogStore(dataDirectory: directory.path)
        let id = BuildID.generate()
        let piece = FileBuildLogStore.pieceSize
        var written: [UInt8] = []
        for line in 0..<3_000 {  // ~100 KiB in uneven appends, crossing piece ends mid-append
            let bytes = Array("line \(line) \(String(repeating: "x", count: line % 61))\n".utf8)
            try await logs.append(bytes, to: id)
            written += bytes
        }
        #expect(written.count > 3 * piece)

        let first = try await logs.read(id, from: 0, maxLength: 1 << 20)
        #expect(first.count == piece)
        let again = try await logs.read(id, from: 0, maxLength: 1 << 20)
        #expect(address(of: first) == address(of: again), "two readers of a whole piece share one array")
        let middle = try await logs.read(id, from: 100, maxLength: 1 << 20)
        #expect(middle.count == piece - 100)
        #expect(Array(middle) == Array(written[100..<piece]))
        // The piece being filled is copied for its reader: appends go on into it.
        let tail = try await logs.read(id, from: Int64(3 * piece), maxLength: 1 << 20)
        #expect(Array(tail) == Array(written[(3 * piece)...]))

        #expect(try await logs.whole(id) == written)
        #expect(try await FileBuildLogStore(dataDirectory: directory.path).whole(id) == written)
    }

    @Test func bytesOlderThanTheWindowComeFromTheFileUpToAPieceEnd() async throws {
        let directory = try TemporaryDirectory("logs")
        defer { directory.remove() }
        let logs = try FileBuildLogStore(dataDirectory: directory.path)
        let id = BuildID.generate()
        let piece = FileBuildLogStore.pieceSize
        var written: [UInt8] = []
        for index in 0..<(FileBuildLogStore.windowPieces + 4) {
            let bytes = (0..<piece).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ index) }
            try await logs.append(bytes, to: id)
            written += bytes
        }
        let old = try await logs.read(id, from: 10, maxLength: 1 << 20)
        #expect(old.count == piece - 10)
        #expect(Array(old) == Array(written[10..<piece]))
        #expect(try await logs.whole(id) == written)
    }

    /// Readers racing one writer through the window's edges (file, sealed pieces, the piece being filled, pieces
    /// evicted while read) each end up with exactly the bytes written.
    @Test(.timeLimit(.minutes(1))) func readersRacingTheWriterGetEveryByteInOrder() async throws {
        let directory = try TemporaryDirectory("logs")
        defer { directory.remove() }
        let logs = try FileBuildLogStore(dataDirectory: directory.path)
        let id = BuildID.generate()
        var generator = SystemRandomNumberGenerator()
        var written: [UInt8] = []
        while written.count < 3 << 20 {  // 3 MiB: three windows
            written += (0..<Int.random(in: 1...20_000, using: &generator)).map { _ in
                UInt8.random(in: 0...255, using: &generator)
            }
        }
        let readers = (0..<8).map { _ in
            Task {
                var received: [UInt8] = []
                while true {
                    let piece = try await logs.read(id, from: Int64(received.count), maxLength: 48 * 1024)
                    received += piece
                    if piece.isEmpty {
                        let snapshot = await logs.waitForChange(id, beyond: Int64(received.count), timeout: .seconds(5))
                        if snapshot.isFinished && snapshot.length == Int64(received.count) { return received }
                    }
                }
            }
        }
        var offset = 0
        while offset < written.count {
            let count = min(written.count - offset, Int.random(in: 1...9_000, using: &generator))
            try await logs.append(Array(written[offset..<offset + count]), to: id)
            offset += count
            if offset % 7 == 0 { await Task.yield() }
        }
        await logs.finish(id)
        for reader in readers {
            let received = try await reader.value
            #expect(received.count == written.count)
            #expect(received == written)
        }
    }

    @Test func aLogReopenedAfterARestartGoesOnFromItsEnd() async throws {
        let directory = try TemporaryDirectory("logs")
        defer { directory.remove() }
        let id = BuildID.generate()
        let before = Array(String(repeating: "attempt 1\n", count: 5_000).utf8)  // 50,000 bytes: mid-piece
        try await FileBuildLogStore(dataDirectory: directory.path).append(before, to: id)

        let logs = try FileBuildLogStore(dataDirectory: directory.path)
        let after = Array(String(repeating: "attempt 2\n", count: 5_000).utf8)
        try await logs.append(after, to: id)
        #expect(await logs.snapshot(id).length == Int64(before.count + after.count))
        #expect(try await logs.whole(id) == before + after)
    }

    /// Each open log holds one descriptor and at most a window of pieces: their number is the store's memory.
    @Test func onlyRunningAndRecentlyFinishedLogsStayOpen() async throws {
        let directory = try TemporaryDirectory("logs")
        defer { directory.remove() }
        let logs = try FileBuildLogStore(dataDirectory: directory.path)
        var ids: [BuildID] = []
        for build in 0..<100 {
            let id = BuildID.generate()
            try await logs.append(Array("build \(build)\n".utf8), to: id)
            await logs.finish(id)
            ids.append(id)
        }
        #expect(logs.openLogCount == FileBuildLogStore.recentlyFinishedLimit)
        // Reading old logs opens nothing that stays.
        for (build, id) in ids.enumerated() {
            #expect(try await logs.text(id) == "build \(build)\n")
            #expect(await logs.snapshot(id).isFinished)
        }
        #expect(logs.openLogCount == FileBuildLogStore.recentlyFinishedLimit)
        for id in ids { await logs.remove(id) }
        #expect(logs.openLogCount == 0)
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(directory.path)/logs").isEmpty)
    }

    @Test func waitersWakeOnAppendAndOnFinishAndTimeOutOtherwise() async throws {
        let directory = try TemporaryDirectory("logs")
        defer { directory.remove() }
        let logs = try FileBuildLogStore(dataDirectory: directory.path)
        let id = BuildID.generate()

        let clock = ContinuousClock()
        let quiet = await clock.measure { _ = await logs.waitForChange(id, beyond: 0, timeout: .milliseconds(200)) }
        #expect(quiet >= .milliseconds(190))

        async let woken = logs.waitForChange(id, beyond: 0, timeout: .seconds(30))
        try await waitUntilWaiting(logs, id)
        try await logs.append(Array("x".utf8), to: id)
        #expect(await woken.length == 1)

        async let finished = logs.waitForChange(id, beyond: 1, timeout: .seconds(30))
        try await waitUntilWaiting(logs, id)
        await logs.finish(id)
        #expect(await finished.isFinished)
    }

    @Test func aCancelledWaiterReturnsAtOnce() async throws {
        let directory = try TemporaryDirectory("logs")
        defer { directory.remove() }
        let logs = try FileBuildLogStore(dataDirectory: directory.path)
        let id = BuildID.generate()
        let waiter = Task { await logs.waitForChange(id, beyond: 0, timeout: .seconds(60)) }
        try await waitUntilWaiting(logs, id)
        let start = ContinuousClock.now
        waiter.cancel()
        _ = await waiter.value
        #expect(ContinuousClock.now - start < .seconds(5))
    }

    private func address(of bytes: ArraySlice<UInt8>) -> UnsafePointer<UInt8>? {
        bytes.withUnsafeBufferPointer { $0.baseAddress }
    }
}

/// Returns once a reader waits on the log (a condition, not a guess at how long that takes).
private func waitUntilWaiting(_ logs: FileBuildLogStore, _ id: BuildID) async throws {
    let deadline = ContinuousClock.now + .seconds(30)
    while logs.waiterCount(id) == 0 {
        guard ContinuousClock.now < deadline else {
            Issue.record("no reader ever waited")
            throw CancellationError()
        }
        await Task.yield()
    }
}
