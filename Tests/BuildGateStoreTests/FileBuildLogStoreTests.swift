import BuildGateCore
import BuildGateStore
import BuildGateTesting
import Testing

struct FileBuildLogStoreTests {
    @Test func appendsKeepOffsetsAndReadsNeverPassTheKnownLength() async throws {
        let directory = try TemporaryDirectory("logs")
        defer { directory.remove() }
        let logs = try FileBuildLogStore(dataDirectory: directory.path)
        let id = BuildID.generate()
        try await logs.append(Array("hello ".utf8), to: id)
        try await logs.append(Array("world\n".utf8), to: id)
        #expect(await logs.snapshot(id) == BuildLogSnapshot(length: 12, isFinished: false))
        #expect(try await logs.read(id, from: 6, maxLength: 100) == Array("world\n".utf8))
        #expect(try await logs.read(id, from: 12, maxLength: 100).isEmpty)

        let reopened = try FileBuildLogStore(dataDirectory: directory.path)
        #expect(await reopened.snapshot(id).length == 12)

        await logs.finish(id)
        await #expect(throws: BuildGateError.self) { try await logs.append(Array("late".utf8), to: id) }
        #expect(await logs.snapshot(id).length == 12)
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
        try await Task.sleep(for: .milliseconds(50))
        try await logs.append(Array("x".utf8), to: id)
        #expect(await woken.length == 1)

        async let finished = logs.waitForChange(id, beyond: 1, timeout: .seconds(30))
        try await Task.sleep(for: .milliseconds(50))
        await logs.finish(id)
        #expect(await finished.isFinished)
    }

    @Test func aCancelledWaiterReturnsAtOnce() async throws {
        let directory = try TemporaryDirectory("logs")
        defer { directory.remove() }
        let logs = try FileBuildLogStore(dataDirectory: directory.path)
        let id = BuildID.generate()
        let waiter = Task { await logs.waitForChange(id, beyond: 0, timeout: .seconds(60)) }
        try await Task.sleep(for: .milliseconds(50))
        let start = ContinuousClock.now
        waiter.cancel()
        _ = await waiter.value
        #expect(ContinuousClock.now - start < .seconds(5))
    }
}
