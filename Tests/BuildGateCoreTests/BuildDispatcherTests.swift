import BuildGateCore
import BuildGateStore
import BuildGateTesting
import Foundation
import Logging
import ServiceLifecycleTestKit
import Synchronization
import Testing

/// The dispatcher against the real SQLite queue and file log store, with a scripted driver.
struct BuildDispatcherTests {
    struct Harness {
        let directory: TemporaryDirectory
        let store: SQLiteBuildStore
        let logs: FileBuildLogStore
        let contexts: FileContextStore

        init() throws {
            directory = try TemporaryDirectory("dispatcher")
            store = SQLiteBuildStore(
                database: try BuildGateDatabase(
                    path: "\(directory.path)/db.sqlite", migrationsDirectory: migrationsDirectory))
            logs = try FileBuildLogStore(dataDirectory: directory.path)
            contexts = try FileContextStore(dataDirectory: directory.path)
        }

        func enqueue(
            timeout: Int = 3600, image: String = "r.example.com/app:1", runPolicy: RunPolicy = .parallel,
            queueExpiresAt: Date? = nil
        ) async throws -> BuildID {
            let build = Build(
                id: .generate(),
                request: BuildRequest(images: [try ImageReference(parsing: image)], timeoutSeconds: timeout),
                context: BuildContext(
                    digest: ContextDigest(hex: String(repeating: "a", count: 64))!, size: 1, compression: .none),
                createdAt: Date(), queueExpiresAt: queueExpiresAt,
                runKey: runPolicy == .parallel ? nil : "default/key", runPolicy: runPolicy)
            _ = try await store.create(build)
            return build.id
        }

        func dispatcher(
            _ driver: FakeBuilderDriver, capacity: Int = 1, lease: Duration = .seconds(15), pool: BuilderPool? = nil,
            shutdownGrace: Duration = .seconds(240), clock: any GatewayClock = SystemClock()
        ) -> BuildDispatcher {
            var configuration = BuildDispatcher.Configuration()
            configuration.shutdownGracePeriod = shutdownGrace
            configuration.pollInterval = .milliseconds(20)
            configuration.renewInterval = .milliseconds(50)
            configuration.leaseDuration = lease
            return BuildDispatcher(
                queue: store, logs: logs, contexts: contexts,
                pool: pool
                    ?? .healthy([
                        BuilderEndpoint(
                            name: "fake", engine: .podman, address: .unix(path: "/nowhere"), capacity: capacity)
                    ]),
                drivers: [.podman: driver], clock: clock, configuration: configuration, logger: Logger(label: "test"))
        }

        /// Polls until `condition` holds for the build, or fails after `timeout` (a bound for a hung run: a loaded CI
        /// machine took more than 10 s once, while every suite starts at the same time).
        func waitFor(_ id: BuildID, timeout: Duration = .seconds(60), _ condition: (Build) -> Bool) async throws
            -> Build
        {
            let deadline = ContinuousClock.now + timeout
            while ContinuousClock.now < deadline {
                if let build = try await store.build(id), condition(build) { return build }
                try await Task.sleep(for: .milliseconds(20))
            }
            let last = try await store.build(id)
            Issue.record(
                "build \(id) never reached the expected state; last status \(String(describing: last?.status))")
            throw CancellationError()
        }

        /// The reason the dispatcher gives for a queued build, once it has looked (nil if it never does in 10 s).
        func queueReason(of id: BuildID, in dispatcher: BuildDispatcher) async throws -> String? {
            let deadline = ContinuousClock.now + .seconds(10)
            while dispatcher.queueReasons.reason(for: id) == nil && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            return dispatcher.queueReasons.reason(for: id)
        }

        func log(_ id: BuildID) async throws -> String {
            try await logs.text(id)
        }
    }

    /// Runs the dispatcher for the duration of `body`.
    func running<T: Sendable>(_ dispatcher: BuildDispatcher, _ body: () async throws -> T) async throws -> T {
        let task = Task { try await dispatcher.run() }
        defer { task.cancel() }
        return try await body()
    }

    @Test func aBuildWhoseBuilderVanishesIsRetriedOnAnotherAndThatBuilderLeavesRotation() async throws {
        let harness = try Harness()
        defer { harness.directory.remove() }
        var script = FakeBuilderDriver.Script()
        script.vanishingBuilders = ["a", "b"]
        let driver = FakeBuilderDriver(script: script)
        let pool = BuilderPool.healthy(
            ["a", "b"].map { BuilderEndpoint(name: $0, engine: .podman, address: .unix(path: "/\($0)")) })
        let id = try await harness.enqueue()
        let dispatcher = harness.dispatcher(driver, pool: pool)
        let build = try await running(dispatcher) {
            // Both builders vanish under it; the third attempt waits for a healthy builder, saying so.
            _ = try await harness.waitFor(id) { $0.attempt == 3 && $0.status == .queued }
            // The dispatcher looks at the queue again within its poll interval and says why the build waits.
            #expect(try await harness.queueReason(of: id, in: dispatcher) == "no healthy builder")
            pool.update([BuilderEndpoint(name: "c", engine: .podman, address: .unix(path: "/c"))], from: "dns:builders")
            pool.record("c", health: .healthy)
            return try await harness.waitFor(id) { $0.status.isTerminal }
        }
        #expect(build.status == .succeeded)
        #expect(driver.endpoints.count == 3)
        #expect(Set(driver.endpoints.prefix(2)) == ["a", "b"])
        #expect(driver.endpoints.last == "c")
        #expect(build.attempt == 3)
        let log = try await harness.log(id)
        #expect(log.contains("ended without a result: builder"))
        #expect(log.contains("back in the queue for another builder"))
        for name in driver.endpoints.dropLast() {
            #expect(pool.members.first { $0.endpoint.name == name }?.health == .unhealthy)
        }
    }

    @Test func afterThreeAttemptsTheBuildFailsBuilderUnavailable() async throws {
        let harness = try Harness()
        defer { harness.directory.remove() }
        var script = FakeBuilderDriver.Script()
        script.vanishingBuilders = ["a", "b", "c", "d"]
        let driver = FakeBuilderDriver(script: script)
        let pool = BuilderPool.healthy(
            ["a", "b", "c", "d"].map { BuilderEndpoint(name: $0, engine: .podman, address: .unix(path: "/\($0)")) })
        let id = try await harness.enqueue()
        let build = try await running(harness.dispatcher(driver, pool: pool)) {
            try await harness.waitFor(id) { $0.status.isTerminal }
        }
        #expect(build.status == .failed)
        #expect(build.reason == .builderUnavailable)
        #expect(build.attempt == 3)
        #expect(driver.endpoints.count == 3)
    }

    @Test func aFailedRunIsNeverRetried() async throws {
        let harness = try Harness()
        defer { harness.directory.remove() }
        var script = FakeBuilderDriver.Script()
        script.outcome = .failed(.buildFailed, message: "exit code: 1")
        let driver = FakeBuilderDriver(script: script)
        let id = try await harness.enqueue()
        let build = try await running(harness.dispatcher(driver)) {
            try await harness.waitFor(id) { $0.status.isTerminal }
        }
        #expect(build.reason == .buildFailed)
        #expect(build.attempt == 1)
        #expect(driver.runs == [id])
    }

    @Test func serialBuildsOfOneKeyRunOneAtATimeInOrderWhileOthersRunAlongside() async throws {
        let harness = try Harness()
        defer { harness.directory.remove() }
        var script = FakeBuilderDriver.Script()
        script.holdUntilReleased = true
        let driver = FakeBuilderDriver(script: script)
        let first = try await harness.enqueue(runPolicy: .serial)
        let second = try await harness.enqueue(runPolicy: .serial)
        let other = try await harness.enqueue(image: "r.example.com/other:1")
        let dispatcher = harness.dispatcher(driver, capacity: 3)
        try await running(dispatcher) {
            _ = try await harness.waitFor(first) { $0.status == .running }
            _ = try await harness.waitFor(other) { $0.status == .running }
            // The dispatcher looked at the queue with both running, and chose to keep the second one waiting.
            #expect(
                try await harness.queueReason(of: second, in: dispatcher)
                    == "waiting for the running build of the same run key (serial)")
            #expect(try await harness.store.build(second)?.status == .queued)
            driver.release()
            _ = try await harness.waitFor(second) { $0.status == .succeeded }
        }
        #expect(driver.runs.firstIndex(of: first)! < driver.runs.firstIndex(of: second)!)
    }

    @Test func gracefulShutdownStopsClaimingLetsARunningBuildFinishWithinTheGraceThenInterruptsTheRest() async throws {
        let harness = try Harness()
        defer { harness.directory.remove() }
        var script = FakeBuilderDriver.Script()
        script.holdUntilReleased = true
        let driver = FakeBuilderDriver(script: script)
        let running = try await harness.enqueue()
        let clock = TestClock()
        let dispatcher = harness.dispatcher(driver, shutdownGrace: .seconds(240), clock: clock)
        try await testGracefulShutdown { trigger in
            let task = Task { try await dispatcher.run() }
            _ = try await harness.waitFor(running) { $0.status == .running }
            let queued = try await harness.enqueue()
            // The build's timeout is armed on the clock; then shutdown arms the grace.
            try await clock.waitForSleepers(1)
            trigger.triggerGracefulShutdown()
            try await clock.waitForSleepers(2)
            clock.advance(by: .seconds(239))
            #expect(try await harness.store.build(running)?.status == .running, "still within its grace")
            clock.advance(by: .seconds(1))
            try await task.value
            // It waited the grace period for the held build, then settled it as after a crash; it claimed nothing new.
            let interrupted = try #require(try await harness.store.build(running))
            #expect(interrupted.status == .failed)
            #expect(interrupted.reason == .interrupted)
            #expect(
                try await harness.log(running).hasSuffix(
                    "the gateway shut down before the build finished; result: failed (interrupted)\n"))
            #expect(try await harness.store.build(queued)?.status == .queued)
            #expect(driver.runs == [running])
        }
    }

    @Test func aBuildThatFinishesWithinTheGraceKeepsItsResult() async throws {
        let harness = try Harness()
        defer { harness.directory.remove() }
        var script = FakeBuilderDriver.Script()
        script.holdUntilReleased = true
        let driver = FakeBuilderDriver(script: script)
        let id = try await harness.enqueue()
        let dispatcher = harness.dispatcher(driver, shutdownGrace: .seconds(30))
        try await testGracefulShutdown { trigger in
            let task = Task { try await dispatcher.run() }
            _ = try await harness.waitFor(id) { $0.status == .running }
            trigger.triggerGracefulShutdown()
            // Released only once the dispatcher is draining: the build really finishes within the grace.
            while !dispatcher.isDraining { await Task.yield() }
            driver.release()
            try await task.value
            #expect(try await harness.store.build(id)?.status == .succeeded)
        }
    }

    @Test func aBuildPastItsQueueTTLExpiresSayingWhyItWaited() async throws {
        let harness = try Harness()
        defer { harness.directory.remove() }
        let now = Date()
        let id = try await harness.enqueue(queueExpiresAt: now.addingTimeInterval(60))
        let reasons = QueueReasons()
        reasons.replace([id: "no healthy builder for linux/arm64"])
        let reaper = LeaseReaper(
            queue: harness.store, logs: harness.logs, interval: .seconds(1), queueReasons: reasons,
            logger: Logger(label: "test"))
        try await reaper.expireQueuedBuilds(now: now.addingTimeInterval(59))
        #expect(try await harness.store.build(id)?.status == .queued)
        try await reaper.expireQueuedBuilds(now: now.addingTimeInterval(61))
        let expired = try #require(try await harness.store.build(id))
        #expect(expired.status == .expired)
        #expect(expired.reason == .expired)
        #expect(
            expired.message == "waited in the queue past its TTL without a builder (no healthy builder for linux/arm64)"
        )
        #expect(try await harness.log(id).contains("result: expired"))
    }

    @Test func runsEveryQueuedBuildOldestFirstAndRecordsTheResult() async throws {
        let harness = try Harness()
        defer { harness.directory.remove() }
        let ids = [try await harness.enqueue(), try await harness.enqueue(), try await harness.enqueue()]
        let driver = FakeBuilderDriver()
        try await running(harness.dispatcher(driver)) {
            for id in ids { _ = try await harness.waitFor(id) { $0.status == .succeeded } }
        }
        #expect(driver.runs == ids)
        let log = try await harness.log(ids[0])
        #expect(log.contains("[buildgate] dispatched to builder fake"))
        #expect(log.contains("[buildgate] engine: fake engine\nstep 1\n"))
        #expect(log.hasSuffix("[buildgate] result: succeeded\n"))
        #expect(await harness.logs.snapshot(ids[0]).isFinished)
    }

    @Test func neverRunsMoreBuildsOnAnEndpointThanItsCapacity() async throws {
        let harness = try Harness()
        defer { harness.directory.remove() }
        var script = FakeBuilderDriver.Script()
        script.holdUntilReleased = true
        let driver = FakeBuilderDriver(script: script)
        var ids: [BuildID] = []
        for _ in 0..<5 { ids.append(try await harness.enqueue()) }
        let dispatcher = harness.dispatcher(driver, capacity: 2)
        try await running(dispatcher) {
            _ = try await harness.waitFor(ids[1]) { $0.status == .running }
            // The dispatcher looked again with both slots taken, and kept the third waiting for capacity.
            #expect(
                try await harness.queueReason(of: ids[2], in: dispatcher)?.hasPrefix("waiting for capacity") == true)
            #expect(driver.maxConcurrent == 2)
            #expect(try await harness.store.build(ids[2])?.status == .queued)
            driver.release()
            for id in ids { _ = try await harness.waitFor(id) { $0.status == .succeeded } }
        }
        #expect(driver.maxConcurrent == 2)
    }

    @Test func aBuildPastItsTimeoutEndsTimedOutAfterTheEngineStops() async throws {
        let harness = try Harness()
        defer { harness.directory.remove() }
        var script = FakeBuilderDriver.Script()
        script.holdUntilReleased = true
        script.stopDelay = .milliseconds(300)
        let driver = FakeBuilderDriver(script: script)
        let clock = TestClock()
        let id = try await harness.enqueue(timeout: 60)
        let second = try await harness.enqueue()
        let build = try await running(harness.dispatcher(driver, clock: clock)) {
            _ = try await harness.waitFor(id) { $0.status == .running }
            try await clock.waitForSleepers(1)
            clock.advance(by: .seconds(59))
            #expect(try await harness.store.build(id)?.status == .running, "within its timeout")
            clock.advance(by: .seconds(1))
            let build = try await harness.waitFor(id) { $0.status.isTerminal }
            driver.release()
            _ = try await harness.waitFor(second) { $0.status == .succeeded }
            return build
        }
        #expect(build.status == .timedOut)
        #expect(build.reason == .timedOut)
        // The slot stayed busy while the engine stopped: the next build never ran alongside it.
        #expect(driver.maxConcurrent == 1)
        #expect(try await harness.log(id).contains("timeout of 60s reached"))
    }

    @Test func cancellingARunningBuildStopsItsDriver() async throws {
        let harness = try Harness()
        defer { harness.directory.remove() }
        var script = FakeBuilderDriver.Script()
        script.holdUntilReleased = true
        let driver = FakeBuilderDriver(script: script)
        let id = try await harness.enqueue()
        let build = try await running(harness.dispatcher(driver)) {
            _ = try await harness.waitFor(id) { $0.status == .running }
            let marked = try await harness.store.markCancelRequested(id)
            #expect(marked?.status == .running && marked?.cancelRequested == true)
            return try await harness.waitFor(id) { $0.status.isTerminal }
        }
        #expect(build.status == .cancelled)
        #expect(try await harness.log(id).contains("cancellation requested"))
    }

    @Test func theReaperRetriesRunningBuildsUpToTheirAttemptsAndRequeuesClaimedOnesWhoseLeaseExpired() async throws {
        let harness = try Harness()
        defer { harness.directory.remove() }
        let running = try await harness.enqueue()
        let claimed = try await harness.enqueue()
        let now = Date()
        _ = try await harness.store.claimNext(builder: "gone", owner: "dead", leaseUntil: now + 1, now: now)
        _ = try await harness.store.markRunning(running, owner: "dead")
        _ = try await harness.store.claimNext(builder: "gone", owner: "dead", leaseUntil: now + 1, now: now)
        let reaper = LeaseReaper(
            queue: harness.store, logs: harness.logs, interval: .seconds(1), maxAttempts: 2,
            logger: Logger(label: "test"))

        try await reaper.settleExpiredLeases(now: now)
        #expect(try await harness.store.build(running)?.status == .running)

        try await reaper.settleExpiredLeases(now: now + 2)
        let retried = try #require(try await harness.store.build(running))
        #expect(retried.status == .queued && retried.attempt == 2)
        #expect(
            try await harness.log(running).contains(
                "attempt 1 of 2 ended without a result: the gateway running it stopped; back in the queue"))
        let requeued = try #require(try await harness.store.build(claimed))
        #expect(requeued.status == .queued && requeued.attempt == 1 && requeued.interruptedDispatches == 1)
        #expect(requeued.builder == nil)

        // The second attempt's gateway dies too: that was the last attempt.
        let again = try #require(
            try await harness.store.claim(
                running, builder: "gone", capacity: nil, owner: "dead-again", leaseUntil: now + 3, now: now + 2))
        #expect(again.attempt == 2)
        _ = try await harness.store.markRunning(running, owner: "dead-again")
        try await reaper.settleExpiredLeases(now: now + 4)
        let interrupted = try #require(try await harness.store.build(running))
        #expect(interrupted.status == .failed && interrupted.reason == .interrupted)
        #expect(
            try await harness.log(running).contains(
                "attempt 2 of 2 ended without a result: the gateway running it stopped; result: failed (interrupted)"))
    }
}

/// Git builds in the dispatcher, with a scripted fetcher standing in for `git`.
struct BuildDispatcherSourceTests {
    /// Fails with a message, or holds until cancelled.
    struct ScriptedFetcher: SourceFetcher {
        var failure: String?

        func fetch(
            _ source: GitSource, dockerfile: String, credential: GitCredential?,
            log: @escaping @Sendable (String) async -> Void
        ) async throws -> (context: BuildContext, commit: String) {
            if let failure { throw BuildGateError(.invalidParameter, failure) }
            while true { try await Task.sleep(for: .milliseconds(10)) }
        }
    }

    func gitBuild(_ harness: BuildDispatcherTests.Harness) async throws -> BuildID {
        let build = Build(
            id: .generate(), request: BuildRequest(images: [try ImageReference(parsing: "r.example.com/app:1")]),
            context: nil, gitSource: try GitSource(url: "https://git.example.com/o/r.git", ref: "main", commit: nil),
            createdAt: Date())
        _ = try await harness.store.create(build)
        return build.id
    }

    func dispatcher(_ harness: BuildDispatcherTests.Harness, fetcher: ScriptedFetcher) -> BuildDispatcher {
        var configuration = BuildDispatcher.Configuration()
        configuration.pollInterval = .milliseconds(20)
        configuration.renewInterval = .milliseconds(50)
        return BuildDispatcher(
            queue: harness.store, logs: harness.logs, contexts: harness.contexts,
            pool: .healthy([BuilderEndpoint(name: "fake", engine: .podman, address: .unix(path: "/nowhere"))]),
            drivers: [.podman: FakeBuilderDriver()], sourceFetcher: fetcher, configuration: configuration,
            logger: Logger(label: "test"))
    }

    @Test func aFailedFetchEndsSourceFailedWithTheFetchersMessage() async throws {
        let harness = try BuildDispatcherTests.Harness()
        defer { harness.directory.remove() }
        let id = try await gitBuild(harness)
        let task = Task {
            try await dispatcher(harness, fetcher: ScriptedFetcher(failure: "couldn't find remote ref main")).run()
        }
        defer { task.cancel() }
        let build = try await harness.waitFor(id) { $0.status.isTerminal }
        #expect(build.status == .failed)
        #expect(build.reason == .sourceFailed)
        #expect(build.message?.contains("couldn't find remote ref main") == true)
    }

    @Test func cancellingABuildWhileItsSourceIsFetchedEndsItCancelled() async throws {
        let harness = try BuildDispatcherTests.Harness()
        defer { harness.directory.remove() }
        let id = try await gitBuild(harness)
        let task = Task { try await dispatcher(harness, fetcher: ScriptedFetcher(failure: nil)).run() }
        defer { task.cancel() }
        _ = try await harness.waitFor(id) { $0.status == .starting }
        _ = try await harness.store.markCancelRequested(id)
        let build = try await harness.waitFor(id) { $0.status.isTerminal }
        #expect(build.status == .cancelled)
        #expect(build.reason == .cancelled)
    }
}

/// The real SQLite queue, counting the dispatcher's looks at it (`dispatchable`).
private final class CountingQueue: BuildQueue {
    let inner: SQLiteBuildStore
    let looks = Mutex(0)

    init(_ inner: SQLiteBuildStore) { self.inner = inner }

    func dispatchable(limit: Int) async throws -> [Build] {
        looks.withLock { $0 += 1 }
        return try await inner.dispatchable(limit: limit)
    }
    func claim(_ id: BuildID, builder: String, capacity: Int?, owner: String, leaseUntil: Date, now: Date)
        async throws -> Build?
    {
        try await inner.claim(id, builder: builder, capacity: capacity, owner: owner, leaseUntil: leaseUntil, now: now)
    }
    func activeCounts() async throws -> [BuildStatus: Int] { try await inner.activeCounts() }
    func activeRunKeys() async throws -> Set<String> { try await inner.activeRunKeys() }
    func requeueForRetry(_ id: BuildID, owner: String, queueExpiresAt: Date?) async throws -> Build? {
        try await inner.requeueForRetry(id, owner: owner, queueExpiresAt: queueExpiresAt)
    }
    func queueExpired(now: Date) async throws -> [Build] { try await inner.queueExpired(now: now) }
    func recordSteps(_ id: BuildID, owner: String, steps: [BuildStep]) async throws -> Bool {
        try await inner.recordSteps(id, owner: owner, steps: steps)
    }
    func attachContext(_ id: BuildID, owner: String, context: BuildContext, gitSource: GitSource) async throws
        -> Bool
    {
        try await inner.attachContext(id, owner: owner, context: context, gitSource: gitSource)
    }
    func markRunning(_ id: BuildID, owner: String) async throws -> Bool {
        try await inner.markRunning(id, owner: owner)
    }
    func renewLeases(_ ids: [BuildID], owner: String, until: Date) async throws -> Set<BuildID> {
        try await inner.renewLeases(ids, owner: owner, until: until)
    }
    func build(_ id: BuildID) async throws -> Build? { try await inner.build(id) }
    func expiredLeases(now: Date) async throws -> [Build] { try await inner.expiredLeases(now: now) }
    func requeueExpiredLease(_ id: BuildID, now: Date, queueExpiresAt: Date?) async throws -> Build? {
        try await inner.requeueExpiredLease(id, now: now, queueExpiresAt: queueExpiresAt)
    }
    func settle(
        _ id: BuildID, expecting: SettlementGuard, to transition: BuildLifecycle.Transition,
        pushedImages: [PushedImage], at date: Date
    ) async throws -> Build? {
        try await inner.settle(id, expecting: expecting, to: transition, pushedImages: pushedImages, at: date)
    }
    func build(_ id: BuildID, ifStill expected: SettlementGuard) async throws -> Build? {
        try await inner.build(id, ifStill: expected)
    }
}

/// What intake costs the dispatcher: a build queued wakes it, and with every builder slot taken (here: no builder
/// healthy yet) a wake-up does not read the queue; only the periodic look does. A burst of webhooks over a long
/// queue read 200 builds per delivery before.
struct BuildDispatcherIntakeTests {
    @Test func wakeUpsReadTheQueueOnlyWhenSomeBuilderHasAFreeSlot() async throws {
        let harness = try BuildDispatcherTests.Harness()
        defer { harness.directory.remove() }
        let queue = CountingQueue(harness.store)
        let endpoint = BuilderEndpoint(name: "later", engine: .podman, address: .unix(path: "/nowhere"), capacity: 4)
        let pool = BuilderPool()
        pool.update([endpoint], from: "static")
        var configuration = BuildDispatcher.Configuration()
        configuration.pollInterval = .seconds(3600)
        let dispatcher = BuildDispatcher(
            queue: queue, logs: harness.logs, contexts: harness.contexts, pool: pool,
            drivers: [.podman: FakeBuilderDriver(script: .init())], configuration: configuration,
            logger: Logger(label: "test"))
        let running = Task { try await dispatcher.run() }
        defer { running.cancel() }
        #expect(try await ChildProcess.wait(for: .seconds(30)) { queue.looks.withLock { $0 } == 1 }, "the first look")

        var ids: [BuildID] = []
        for _ in 0..<40 {
            ids.append(try await harness.enqueue())
            dispatcher.wake()
        }
        #expect(queue.looks.withLock { $0 } == 1, "wake-ups with no free slot read the queue")

        // A builder becomes healthy: the next wake-up looks, and every build runs.
        pool.record(endpoint.name, health: .healthy)
        for id in ids { _ = try await harness.waitFor(id) { $0.status == .succeeded } }
    }
}
