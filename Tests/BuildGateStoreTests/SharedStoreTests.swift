import BuildGateCore
import BuildGateStore
import BuildGateTesting
import Foundation
import Synchronization
import Testing

/// What several gateways sharing one database rely on, on both engines: on PostgreSQL "the other gateway" is a
/// second set of stores with its own connection pool (what another process would open); on SQLite, one gateway
/// claims from several tasks.
struct SharedStoreTests {
    private func build(
        tenant: TenantID = .default, at date: Date = Date(), runKey: String? = nil, policy: RunPolicy = .parallel,
        gitSource: GitSource? = nil, trigger: String? = nil
    ) throws -> Build {
        Build(
            id: .generate(at: date), tenant: tenant,
            request: BuildRequest(images: [try ImageReference(parsing: "r.example.com/app:1")]),
            context: gitSource == nil
                ? BuildContext(
                    digest: ContextDigest(hex: String(repeating: "d", count: 64))!, size: 1, compression: .none)
                : nil,
            gitSource: gitSource, triggerID: trigger, createdAt: date, runKey: runKey, runPolicy: policy)
    }

    /// The stores of `count` gateways on the test's database (the same stores, on SQLite).
    private func gateways(_ stores: TestStores, _ count: Int) async throws -> [TestStores] {
        var all = [stores]
        while all.count < count { all.append(try await stores.otherGateway?() ?? stores) }
        return all
    }

    private func closeOthers(_ gateways: [TestStores]) async {
        for other in gateways.dropFirst() where other.postgres != nil { await other.closeAll() }
    }

    /// Claims from many tasks spread over the gateways, each as the dispatcher does, until none succeeds; returns
    /// what was claimed.
    private func claimConcurrently(
        _ gateways: [TestStores], builders: [String], capacity: Int?, tasks: Int = 8
    ) async throws -> [Build] {
        try await withThrowingTaskGroup(of: [Build].self) { group in
            for index in 0..<tasks {
                let queue = gateways[index % gateways.count].builds
                let builder = builders[index % builders.count]
                group.addTask {
                    var mine: [Build] = []
                    while let claimed = try await queue.claimNext(
                        builder: builder, capacity: capacity, owner: "gateway-\(index)", leaseUntil: Date() + 60,
                        now: Date())
                    {
                        mine.append(claimed)
                    }
                    return mine
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
    }

    @Test(arguments: StoreEngine.allCases)
    func aBuilderNeverHoldsMoreBuildsThanItsCapacityWhoeverClaims(engine: StoreEngine) async throws {
        try await TestStores.with(engine) { stores in
            let all = try await gateways(stores, 2)
            let start = Date(timeIntervalSince1970: 1_700_000_000)
            for index in 0..<12 { _ = try await stores.builds.create(try build(at: start + Double(index))) }

            let first = try await claimConcurrently(all, builders: ["b"], capacity: 2)
            #expect(first.count == 2, "capacity 2: \(first.count) builds claimed on one builder")
            // A slot frees when a build settles; then exactly one more is claimed.
            // (Settled as the reaper would, an hour on: whichever task claimed it, its lease has run out by then.)
            let freed = try await stores.builds.settle(
                first[0].id, expecting: .expiredLease(now: Date() + 3600), to: .init(status: .succeeded),
                pushedImages: [], at: Date())
            #expect(freed?.status == .succeeded)
            let second = try await claimConcurrently(all, builders: ["b"], capacity: 2)
            #expect(second.count == 1)
            // Another builder has its own slots; without a capacity nothing limits.
            #expect(try await claimConcurrently(all, builders: ["c"], capacity: 3).count == 3)
            #expect(try await claimConcurrently(all, builders: ["d"], capacity: nil).count == 6)
            await closeOthers(all)
        }
    }

    @Test(arguments: StoreEngine.allCases)
    func aTenantsRunningLimitAndSerialRunKeysHoldAcrossGateways(engine: StoreEngine) async throws {
        try await TestStores.with(engine) { stores in
            let all = try await gateways(stores, 2)
            let limited = TenantID("limited")!
            try await stores.tenantLimits.setLimits(TenantLimits(maxRunningBuilds: 2), for: limited, at: Date())
            for _ in 0..<6 { _ = try await stores.builds.create(try build(tenant: limited)) }
            let claimed = try await claimConcurrently(all, builders: ["b1", "b2", "b3", "b4"], capacity: nil)
            #expect(claimed.count == 2, "running limit 2: \(claimed.count) claimed")
            #expect(try await stores.builds.activeCounts()[.starting] == 2)

            for _ in 0..<4 { _ = try await stores.builds.create(try build(runKey: "default/app", policy: .serial)) }
            let serial = try await claimConcurrently(all, builders: ["s1", "s2", "s3", "s4"], capacity: nil)
            #expect(serial.count == 1, "serial run key: \(serial.count) claimed at once")
            await closeOthers(all)
        }
    }

    @Test(arguments: StoreEngine.allCases)
    func theSameDeliveryReceivedByTwoGatewaysAtOnceBuildsOnce(engine: StoreEngine) async throws {
        try await TestStores.with(engine) { stores in
            let all = try await gateways(stores, 2)
            let trigger = Trigger(
                id: Trigger.generateID(), tenant: .default, forge: "github", repository: "o/r",
                settings: TriggerSettings(images: ["r.example.com/a:{{sha}}"]), createdAt: Date())
            try await stores.triggers.createTrigger(
                trigger, secret: "0123456789abcdef", cloneCredential: nil, statusToken: nil)
            let source = try GitSource(
                url: "https://git.example.com/o/r.git", ref: "refs/heads/main",
                commit: String(repeating: "a", count: 40))
            let results = try await withThrowingTaskGroup(of: RecordedDelivery.self) { group in
                for index in 0..<6 {
                    let triggers = all[index % all.count].triggers
                    let build = try build(gitSource: source, trigger: trigger.id)
                    group.addTask {
                        try await triggers.recordDelivery(
                            triggerID: trigger.id, deliveryID: "delivery-1", build: build, at: Date()
                        ) { outcome in
                            if case .queued(let build) = outcome { return (202, "{\"buildId\":\"\(build.id)\"}") }
                            return (200, "{}")
                        }
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(results.filter { !$0.isRedelivery }.count == 1)
            #expect(results.compactMap(\.queued).count == 1)
            #expect(Set(results.map(\.response)).count == 1, "every gateway answers what the first one did")
            #expect(try await stores.builds.list(tenant: .default, status: nil, limit: 10, after: nil).count == 1)

            // A new delivery id for the same commit while it is queued: already active, nothing built.
            let replay = try await all.last!.triggers.recordDelivery(
                triggerID: trigger.id, deliveryID: "delivery-2",
                build: try build(gitSource: source, trigger: trigger.id),
                at: Date()
            ) { outcome in
                if case .alreadyActive = outcome { return (200, "{\"status\":\"alreadyQueued\"}") }
                return (202, "{}")
            }
            #expect(replay.queued == nil && replay.response.contains("alreadyQueued"))
            await closeOthers(all)
        }
    }

    @Test(arguments: StoreEngine.allCases)
    func aFollowerOfEventsOnOneGatewayIsWokenByAChangeCommittedOnAnother(engine: StoreEngine) async throws {
        try await TestStores.with(engine) { stores in
            let all = try await gateways(stores, 2)
            if let notifications = stores.postgres?.notifications {
                #expect(
                    try await ChildProcess.wait(for: .seconds(30)) {
                        notifications.isListening(PostgresNotifications.events)
                    })
            }
            let last = try await stores.events.lastSequence()
            let queued = try build()
            let woke = Task {
                let started = ContinuousClock.now
                await stores.events.waitForChanges(after: last, timeout: .seconds(30))
                return ContinuousClock.now - started
            }
            _ = try await all.last!.builds.create(queued)
            let waited = await woke.value
            #expect(waited < .seconds(10), "woken after \(waited), not by the commit")
            let changes = try await stores.events.changes(of: .default, after: last, limit: 10)
            #expect(changes.map(\.buildID) == [queued.id])
            #expect(changes.first?.status == .queued)
            await closeOthers(all)
        }
    }

    @Test(arguments: StoreEngine.allCases)
    func tokensSecretsCredentialsLimitsAndTriggersRoundTrip(engine: StoreEngine) async throws {
        try await TestStores.with(engine) { stores in
            let tenant = TenantID("team-a")!
            let (token, record) = try await stores.tokens.createToken(
                tenant: tenant, name: "ci", scopes: [.buildsWrite], buildID: nil, expiresAt: nil, at: Date())
            let principal = try #require(try await stores.tokens.authenticate(token, at: Date()))
            #expect(principal.tenant == tenant && principal.scopes == [.buildsWrite])
            let (derived, _) = try await stores.tokens.createToken(
                tenant: tenant, name: "logs", scopes: [.buildsRead], buildID: nil, expiresAt: Date() + 60,
                parentID: record.id, at: Date())
            #expect(try await stores.tokens.authenticate(derived, at: Date()) != nil)
            #expect(try await stores.tokens.revokeToken(id: record.id, at: Date()))
            #expect(try await stores.tokens.authenticate(token, at: Date()) == nil)
            #expect(
                try await stores.tokens.authenticate(derived, at: Date()) == nil, "a derived token outlived its parent")
            #expect(try await stores.tokens.authenticate(token + "x", at: Date()) == nil)
            #expect(try await stores.tokens.tokens(of: tenant).count == 2)
            #expect(try await stores.tokens.tokenCount() == 2)

            try await stores.secrets.setSecret(
                SecretValue(Array("s3cret".utf8)), tenant: tenant, name: "npm", at: Date())
            try await stores.secrets.setSecret(SecretValue(Array("n3w".utf8)), tenant: tenant, name: "npm", at: Date())
            #expect(
                try await stores.secrets.secrets(tenant: tenant, names: ["npm", "none"])["npm"]?.bytes
                    == Array("n3w".utf8))
            #expect(try await stores.secrets.secrets(tenant: .default, names: ["npm"]).isEmpty)
            #expect(try await stores.secrets.names(of: tenant).map(\.name) == ["npm"])
            #expect(try await stores.secrets.deleteSecret(tenant: tenant, name: "npm"))
            #expect(try await stores.secrets.deleteSecret(tenant: tenant, name: "npm") == false)

            try await stores.registryCredentials.setCredential(
                RegistryCredential(username: "u", password: "p"), tenant: tenant, host: "r.example.com", at: Date())
            #expect(
                try await stores.registryCredentials.credential(tenant: tenant, host: "r.example.com")?.password == "p")
            #expect(try await stores.registryCredentials.credential(tenant: .default, host: "r.example.com") == nil)
            #expect(try await stores.registryCredentials.hosts(of: tenant).map(\.host) == ["r.example.com"])
            #expect(try await stores.registryCredentials.deleteCredential(tenant: tenant, host: "r.example.com"))

            try await stores.tenantLimits.setLimits(
                TenantLimits(maxRunningBuilds: 3, maxQueuedBuilds: 7, requestsPerMinute: nil), for: tenant, at: Date())
            #expect(
                try await stores.tenantLimits.limits(of: tenant)
                    == TenantLimits(maxRunningBuilds: 3, maxQueuedBuilds: 7, requestsPerMinute: nil))
            _ = try await stores.builds.create(try build(tenant: tenant))
            #expect(try await stores.tenantLimits.queuedBuildCount(of: tenant, upTo: 10) == 1)
            _ = try await stores.builds.create(try build(tenant: tenant))
            _ = try await stores.builds.create(try build(tenant: tenant))
            #expect(try await stores.tenantLimits.queuedBuildCount(of: tenant, upTo: 2) == 2, "counted past the limit")

            let trigger = Trigger(
                id: Trigger.generateID(), tenant: tenant, forge: "gitlab", repository: "g/r",
                settings: TriggerSettings(images: ["r.example.com/a:{{sha}}"]), createdAt: Date())
            try await stores.triggers.createTrigger(
                trigger, secret: "webhook-secret-123", cloneCredential: .basic(username: "x", password: "y"),
                statusToken: "status-token")
            #expect(try await stores.triggers.trigger(trigger.id)?.repository == "g/r")
            #expect(
                try await stores.triggers.triggersWithSecrets(forge: "gitlab").map(\.secret) == ["webhook-secret-123"])
            #expect(
                try await stores.triggers.cloneCredential(forTrigger: trigger.id)
                    == .basic(username: "x", password: "y"))
            #expect(try await stores.triggers.statusToken(forTrigger: trigger.id) == "status-token")
            #expect(try await stores.triggers.triggers(of: tenant).count == 1)
            #expect(try await stores.triggers.deleteTrigger(trigger.id, tenant: .default) == false)
            #expect(try await stores.triggers.deleteTrigger(trigger.id, tenant: tenant))
        }
    }

    /// The queued count intake reads (a tenant's `maxQueuedBuilds`) is kept by the database as builds enter and
    /// leave `queued`, whichever way they do.
    @Test(arguments: StoreEngine.allCases)
    func aTenantsQueuedCountFollowsItsBuildsThroughEveryChange(engine: StoreEngine) async throws {
        try await TestStores.with(engine) { stores in
            let tenant = TenantID("counted")!
            try await stores.tenantLimits.setLimits(TenantLimits(), for: tenant, at: Date())
            func queued() async throws -> Int { try await stores.tenantLimits.queuedBuildCount(of: tenant, upTo: 100) }
            let builds = try (0..<3).map { _ in try build(tenant: tenant) }
            for build in builds { _ = try await stores.builds.create(build) }
            _ = try await stores.builds.create(try build())
            #expect(try await queued() == 3)
            let claimed = try #require(
                try await stores.builds.claim(
                    builds[0].id, builder: "b", capacity: nil, owner: "o", leaseUntil: Date() + 60, now: Date()))
            #expect(try await queued() == 2)
            _ = try await stores.builds.requeueForRetry(claimed.id, owner: "o", queueExpiresAt: nil)
            #expect(try await queued() == 3)
            _ = try await stores.builds.settle(
                builds[1].id, expecting: .queued, to: .init(status: .cancelled), pushedImages: [], at: Date())
            #expect(try await queued() == 2)
            #expect(try await stores.builds.deleteBuilds(finishedBefore: Date() + 60, limit: 10) == [builds[1].id])
            #expect(try await queued() == 2, "deleting a finished build changed the count")
            #expect(try await stores.tenantLimits.queuedBuildCount(of: tenant, upTo: 1) == 1)
            #expect(try await stores.tenantLimits.queuedBuildCount(of: .default, upTo: 100) == 1)
        }
    }

    @Test(arguments: StoreEngine.allCases)
    func retentionFindsWhatItMayRemove(engine: StoreEngine) async throws {
        try await TestStores.with(engine) { stores in
            let old = Date(timeIntervalSince1970: 1_700_000_000)
            let done = try build(at: old)
            let queued = try build(at: old + 1)
            _ = try await stores.builds.create(done)
            _ = try await stores.builds.create(queued)
            let claimed = try #require(
                try await stores.builds.claim(
                    done.id, builder: "b", capacity: nil, owner: "o", leaseUntil: old + 60, now: old))
            _ = try await stores.builds.settle(
                claimed.id, expecting: .lease(owner: "o"), to: .init(status: .succeeded), pushedImages: [], at: old + 2)
            // The context is shared with a queued build: not released.
            #expect(try await stores.builds.contextsReleased(before: old + 10, limit: 10).isEmpty)
            #expect(try await stores.builds.logsToRemove(finishedBefore: old + 10, limit: 10) == [done.id])
            try await stores.builds.markLogsRemoved([done.id])
            #expect(try await stores.builds.logsToRemove(finishedBefore: old + 10, limit: 10).isEmpty)
            #expect(try await stores.builds.deleteStateChanges(before: Date() + 60, limit: 100) >= 3)
            #expect(try await stores.builds.deleteBuilds(finishedBefore: old + 10, limit: 10) == [done.id])
            #expect(try await stores.builds.build(done.id) == nil)
            _ = try await stores.builds.settle(
                queued.id, expecting: .queued, to: .init(status: .cancelled), pushedImages: [], at: old + 3)
            let digest = try #require(queued.context?.digest)
            #expect(try await stores.builds.contextsReleased(before: old + 10, limit: 10) == [digest])
            #expect(try await stores.builds.storedContext(digest, tenant: .default) != nil)
            try await stores.builds.markContextRemoved(digest)
            #expect(try await stores.builds.storedContext(digest, tenant: .default) == nil)
        }
    }
}
