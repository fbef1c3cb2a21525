import BuildGateCore
import BuildGateStore
import BuildGateTesting
import Foundation
import Testing

/// The build store's contract, on SQLite and on PostgreSQL: the same tests, parameterised by engine.
struct BuildStoreTests {
    @Test(arguments: StoreEngine.allCases) func aBuildRoundTripsThroughItsRow(engine: StoreEngine) async throws {
        try await TestStores.with(engine) { stores in
            let store = stores.builds
            let original = try sampleBuild(key: "k1")
            #expect(try await store.create(original) == .created(original))
            let loaded = try #require(try await store.build(original.id))
            #expect(loaded.request == original.request)
            #expect(loaded.context == original.context)
            #expect(abs(loaded.createdAt.timeIntervalSince(original.createdAt)) < 0.001)
        }
    }

    @Test(arguments: StoreEngine.allCases) func anIdempotencyKeyReturnsTheEarlierBuildAndWritesNothing(
        engine: StoreEngine
    ) async throws {
        try await TestStores.with(engine) { stores in
            let store = stores.builds
            let first = try sampleBuild(key: "same")
            _ = try await store.create(first)
            let second = try sampleBuild(key: "same")
            guard case .existing(let existing) = try await store.create(second) else {
                Issue.record("a second build with the same key was created")
                return
            }
            #expect(existing.id == first.id)
            #expect(try await store.build(second.id) == nil)
            #expect(try await store.list(tenant: .default, status: nil, limit: 10, after: nil).count == 1)
        }
    }

    /// (Which builder may take a build that needs secrets or caches is the pool's choice: `BuilderPoolTests`.)
    @Test(arguments: StoreEngine.allCases) func secretNamesRoundTripAndStepsAreStoredUnderTheLease(engine: StoreEngine)
        async throws
    {
        try await TestStores.with(engine) { stores in
            let store = stores.builds
            var withSecret = try sampleBuild(at: Date(timeIntervalSinceNow: -10))
            withSecret.request.secrets = ["npmrc"]
            withSecret.request.cacheTo = try ImageReference(parsing: "r.example.com/app:cache")
            _ = try await store.create(withSecret)

            let podman = try await store.claimNext(builder: "podman", owner: "o", leaseUntil: Date() + 60, now: Date())
            #expect(podman?.id == withSecret.id)
            #expect(podman?.request.secrets == ["npmrc"])
            #expect(podman?.request.cacheTo == withSecret.request.cacheTo)

            let steps = [
                BuildStep(
                    name: "[1/2] FROM busybox", startedAt: Date(timeIntervalSince1970: 1),
                    completedAt: Date(timeIntervalSince1970: 2), cached: true),
                BuildStep(name: "[2/2] RUN false", startedAt: Date(timeIntervalSince1970: 2), error: "exit code: 1"),
            ]
            #expect(try await store.recordSteps(withSecret.id, owner: "o", steps: steps))
            #expect(try await store.recordSteps(withSecret.id, owner: "someone else", steps: []) == false)
            #expect(try await store.build(withSecret.id)?.steps == steps)
        }
    }

    @Test(arguments: StoreEngine.allCases) func claimsTakeTheOldestQueuedBuildOnceEvenUnderConcurrentClaimers(
        engine: StoreEngine
    ) async throws {
        try await TestStores.with(engine) { stores in
            let store = stores.builds
            let start = Date(timeIntervalSince1970: 1_700_000_000)
            var ids: [BuildID] = []
            for index in 0..<40 {
                let value = try sampleBuild(at: start.addingTimeInterval(Double(index)))
                ids.append(value.id)
                _ = try await store.create(value)
            }
            let claimed = try await withThrowingTaskGroup(of: [BuildID].self) { group in
                for claimer in 0..<4 {
                    group.addTask {
                        var mine: [BuildID] = []
                        while let build = try await store.claimNext(
                            builder: "b\(claimer)", owner: "o\(claimer)", leaseUntil: Date() + 60, now: Date())
                        {
                            mine.append(build.id)
                        }
                        return mine
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            #expect(claimed.count == 40)
            #expect(Set(claimed) == Set(ids))
            let first = try await store.claimNext(builder: "x", owner: "x", leaseUntil: Date(), now: Date())
            #expect(first == nil)
        }
    }

    @Test(arguments: StoreEngine.allCases) func aResultIsStoredOnlyByTheLeaseHolder(engine: StoreEngine) async throws {
        try await TestStores.with(engine) { stores in
            let store = stores.builds
            let value = try sampleBuild()
            _ = try await store.create(value)
            _ = try await store.claimNext(builder: "b", owner: "mine", leaseUntil: Date() + 60, now: Date())
            let succeeded = BuildLifecycle.Transition(status: .succeeded)
            let stolen = try await store.settle(
                value.id, expecting: .lease(owner: "someone-else"), to: succeeded, pushedImages: [], at: Date())
            #expect(stolen == nil)
            let pushed = [
                PushedImage(
                    reference: try ImageReference(parsing: "r.example.com/app:1"),
                    digest: "sha256:" + String(repeating: "c", count: 64))
            ]
            let stored = try await store.settle(
                value.id, expecting: .lease(owner: "mine"), to: succeeded, pushedImages: pushed, at: Date())
            #expect(stored?.status == .succeeded)
            #expect(stored?.pushedImages == pushed)
            #expect(try await store.renewLeases([value.id], owner: "mine", until: Date() + 60).isEmpty)
        }
    }

    /// A build that kills the gateway while it is being dispatched (claimed, the engine not answering yet) went
    /// back to the queue after every restart and killed the gateway again, for ever.
    @Test(arguments: StoreEngine.allCases) func aBuildWhoseDispatchTheGatewayDiedInTwiceIsAbandonedNotQueuedAgain(
        engine: StoreEngine
    ) async throws {
        try await TestStores.with(engine) { stores in
            let store = stores.builds
            let poison = try sampleBuild()
            _ = try await store.create(poison)
            let start = Date()

            _ = try #require(
                try await store.claimNext(builder: "b", owner: "gateway-1", leaseUntil: start + 1, now: start))
            let requeued = try #require(
                try await store.requeueExpiredLease(poison.id, now: start + 2, queueExpiresAt: nil))
            #expect(requeued.status == .queued)
            #expect(requeued.interruptedDispatches == 1)
            #expect(try await store.build(poison.id)?.interruptedDispatches == 1)

            let second = try #require(
                try await store.claimNext(builder: "b", owner: "gateway-2", leaseUntil: start + 3, now: start + 2))
            // The reaper asks the lifecycle, which gives the build up at the second interrupted dispatch.
            let transition = try #require(
                BuildLifecycle.transition(
                    from: second.status,
                    on: .leaseExpired(
                        interruptedDispatches: second.interruptedDispatches, cancelRequested: false, attempt: 1,
                        maxAttempts: 3)))
            #expect(transition.isTerminal)
            let abandoned = try #require(
                try await store.settle(
                    poison.id, expecting: .expiredLease(now: start + 4), to: transition, pushedImages: [], at: start + 4
                ))
            #expect(abandoned.status == .failed)
            #expect(abandoned.reason == .dispatchAbandoned)
            #expect(abandoned.message?.contains("2 times") == true)
            #expect(abandoned.interruptedDispatches == 2)
            #expect(try await store.build(poison.id)?.status == .failed)
            #expect(
                try await store.claimNext(builder: "b", owner: "gateway-3", leaseUntil: start + 10, now: start + 4)
                    == nil)
        }
    }

    /// Builds that reached the engine are not counted: one interrupted while running still ends `interrupted`.
    /// A running build whose gateway died goes back to the queue as its next attempt (no interrupted dispatch
    /// counted: the engine had it), with its steps cleared; on its last attempt it ends `interrupted`.
    @Test(arguments: StoreEngine.allCases) func aRunningBuildWhoseLeaseExpiredIsQueuedAsItsNextAttemptThenInterrupted(
        engine: StoreEngine
    ) async throws {
        try await TestStores.with(engine) { stores in
            let store = stores.builds
            let running = try sampleBuild()
            _ = try await store.create(running)
            let start = Date()
            _ = try #require(try await store.claimNext(builder: "b", owner: "g", leaseUntil: start + 1, now: start))
            #expect(try await store.markRunning(running.id, owner: "g"))
            #expect(try await store.recordSteps(running.id, owner: "g", steps: [BuildStep(name: "RUN x")]))
            #expect(
                try await store.requeueExpiredLease(running.id, now: start, queueExpiresAt: nil) == nil,
                "a lease still valid is left alone")
            let requeued = try #require(
                try await store.requeueExpiredLease(running.id, now: start + 2, queueExpiresAt: start + 3600))
            #expect(requeued.status == .queued && requeued.attempt == 2 && requeued.interruptedDispatches == 0)
            #expect(requeued.steps.isEmpty && requeued.builder == nil)
            #expect(abs((requeued.queueExpiresAt ?? start).timeIntervalSince(start + 3600)) < 0.001)

            _ = try #require(
                try await store.claimNext(builder: "c", owner: "g2", leaseUntil: start + 3, now: start + 2))
            #expect(try await store.markRunning(running.id, owner: "g2"))
            let interrupted = try #require(
                BuildLifecycle.transition(
                    from: .running,
                    on: .leaseExpired(interruptedDispatches: 0, cancelRequested: false, attempt: 2, maxAttempts: 2)))
            let settled = try #require(
                try await store.settle(
                    running.id, expecting: .expiredLease(now: start + 4), to: interrupted, pushedImages: [],
                    at: start + 4))
            #expect(settled.status == .failed)
            #expect(settled.reason == .interrupted)
            #expect(settled.interruptedDispatches == 0)
        }
    }

    /// A cancel asked for before the gateway died is honoured, not retried.
    @Test(arguments: StoreEngine.allCases) func anExpiredLeaseWithACancelPendingIsNotQueuedAgain(
        engine: StoreEngine
    ) async throws {
        try await TestStores.with(engine) { stores in
            let store = stores.builds
            let value = try sampleBuild()
            _ = try await store.create(value)
            let start = Date()
            _ = try #require(try await store.claimNext(builder: "b", owner: "g", leaseUntil: start + 1, now: start))
            _ = try await store.markCancelRequested(value.id)
            #expect(try await store.requeueExpiredLease(value.id, now: start + 2, queueExpiresAt: nil) == nil)
        }
    }

    @Test(arguments: StoreEngine.allCases) func renewingReportsCancellationRequests(engine: StoreEngine) async throws {
        try await TestStores.with(engine) { stores in
            let store = stores.builds
            let value = try sampleBuild()
            _ = try await store.create(value)
            _ = try await store.claimNext(builder: "b", owner: "o", leaseUntil: Date() + 60, now: Date())
            #expect(try await store.renewLeases([value.id], owner: "o", until: Date() + 60).isEmpty)
            _ = try await store.markCancelRequested(value.id)
            #expect(try await store.renewLeases([value.id], owner: "o", until: Date() + 60) == [value.id])
        }
    }

    @Test(arguments: StoreEngine.allCases) func listingIsNewestFirstWithACursor(engine: StoreEngine) async throws {
        try await TestStores.with(engine) { stores in
            let store = stores.builds
            let start = Date(timeIntervalSince1970: 1_700_000_000)
            var ids: [BuildID] = []
            for index in 0..<5 {
                let value = try sampleBuild(at: start.addingTimeInterval(Double(index)))
                ids.append(value.id)
                _ = try await store.create(value)
            }
            let page1 = try await store.list(tenant: .default, status: nil, limit: 2, after: nil).map(\.id)
            let page2 = try await store.list(tenant: .default, status: nil, limit: 2, after: page1.last).map(\.id)
            #expect(page1 == [ids[4], ids[3]])
            #expect(page2 == [ids[2], ids[1]])
            #expect(try await store.list(tenant: .default, status: .running, limit: 10, after: nil).isEmpty)
        }
    }
}
