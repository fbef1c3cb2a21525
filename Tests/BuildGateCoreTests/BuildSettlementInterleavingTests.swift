import BuildGateCore
import BuildGateStore
import BuildGateTesting
import Foundation
import Logging
import Synchronization
import Testing

/// Random interleavings of everything that can happen to a build, through the production paths (the settler as the
/// dispatcher, the API and the lease reaper use it; the store's own non-terminal moves), on the real SQLite store
/// and the real file log store. After every step: at most one terminal status, never changed once reached; a build
/// with a terminal status has a complete log whose last line is its result line; the log is complete only then; the
/// observer heard of each terminal state exactly once. At the moment a terminal status is committed, the result line
/// must already be in the log (a log reader takes a terminal status to mean the log is whole).
///
/// Seeded: the seed is printed with every failure; `BUILDGATE_TEST_SEED=N` replays one.
struct BuildSettlementInterleavingTests {
    static let runs = 300

    @Test func everyInterleavingKeepsTheInvariants() async throws {
        let seed =
            ProcessInfo.processInfo.environment["BUILDGATE_TEST_SEED"].flatMap(UInt64.init)
            ?? UInt64.random(in: 1...UInt64.max)
        var random = SplitMix64(seed: seed)
        let directory = try TemporaryDirectory("interleavings")
        defer { directory.remove() }
        let store = SQLiteBuildStore(
            database: try BuildGateDatabase(
                path: "\(directory.path)/db.sqlite", migrationsDirectory: migrationsDirectory))
        let fileLogs = try FileBuildLogStore(dataDirectory: directory.path)
        let logs = OrderCheckingLogStore(logs: fileLogs, store: store)
        let observer = CountingObserver()
        let world = World(store: store, logs: logs, observer: observer)

        for run in 0..<Self.runs {
            let (trace, broken) = try await world.play(run: run, random: &random)
            if !broken.isEmpty {
                Issue.record(
                    "seed \(seed), run \(run): \(broken.joined(separator: "; "))\nsteps: \(trace.joined(separator: ", "))"
                )
                return
            }
        }
        // Later runs' reaper passes settled some earlier builds too: every build, once more.
        let broken = logs.violations + (try await world.check(world.allBuilds))
        #expect(broken.isEmpty, "seed \(seed), at the end: \(broken.joined(separator: "; "))")
    }
}

/// Everything that can happen to builds, as the production code makes it happen.
private final class World: Sendable {
    let store: SQLiteBuildStore
    let logs: OrderCheckingLogStore
    let observer: CountingObserver
    let settler: BuildSettler
    let reaper: LeaseReaper
    /// Terminal states seen so far, by build: once there, a build never changes.
    private let settled = Mutex<[BuildID: BuildStatus]>([:])
    private let builds = Mutex<[BuildID]>([])

    init(store: SQLiteBuildStore, logs: OrderCheckingLogStore, observer: CountingObserver) {
        self.store = store
        self.logs = logs
        self.observer = observer
        var logger = Logger(label: "interleavings")
        logger.logLevel = .critical
        settler = BuildSettler(store: store, logs: logs, observer: observer, logger: logger)
        reaper = LeaseReaper(
            queue: store, logs: logs, interval: .seconds(60), observer: observer, settler: settler, logger: logger)
    }

    enum Operation: CaseIterable {
        case claim, engineAccepted, engineResult, timeout, cancel, leaseExpiry, shutdown, supersede, retry, queueTTL
    }

    var allBuilds: [BuildID] { builds.withLock { $0 } }

    /// One run: a build (under `latestOnly`), then 2 to 7 steps of one operation or two at once, each step checked.
    /// Returns the steps, and what was found broken.
    func play(run: Int, random: inout SplitMix64) async throws -> (trace: [String], broken: [String]) {
        let key = "default/run-\(run)"
        let start = Date()
        let build = Build(
            id: .generate(),
            request: BuildRequest(images: [try ImageReference(parsing: "r.example.com/app:\(run)")]),
            context: BuildContext(
                digest: ContextDigest(hex: String(repeating: "a", count: 64))!, size: 1, compression: .none),
            createdAt: start, queueExpiresAt: start.addingTimeInterval(5), runKey: key, runPolicy: .latestOnly)
        guard case .created = try await store.create(build) else { throw BuildGateError(.internalError, "not created") }
        try await logs.appendGatewayLine("queued", to: build.id)
        let first = builds.withLock { builds in
            builds.append(build.id)
            return builds.count - 1
        }
        let claims = Claims()

        var trace: [String] = []
        for _ in 0..<random.next(in: 2...7) {
            let concurrent = random.next(in: 0...9) < 3
            let operations = (0..<(concurrent ? 2 : 1)).map { _ in
                Operation.allCases[random.next(in: 0...(Operation.allCases.count - 1))]
            }
            let choices = operations.map { _ in random.next(in: 0...1_000) }
            trace.append(operations.map { "\($0)" }.joined(separator: "+"))
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (operation, choice) in zip(operations, choices) {
                    group.addTask {
                        try await self.perform(
                            operation, on: build, key: key, claims: claims, choice: choice, start: start)
                    }
                }
                try await group.waitForAll()
            }
            let broken = logs.violations + (try await check(builds.withLock { Array($0[first...]) }))
            if !broken.isEmpty { return (trace, broken) }
        }
        return (trace, [])
    }

    private func perform(
        _ operation: Operation, on build: Build, key: String, claims: Claims, choice: Int,
        start: Date
    ) async throws {
        // A dispatcher acts on the build as it claimed it, however stale that view is by now.
        let claim = claims.list.withLock { $0.isEmpty ? nil : $0[choice % $0.count] }
        switch operation {
        case .claim:
            let owner = "dispatcher-\(choice % 2)"
            let now = Date()
            if let claimed = try await store.claim(
                build.id, builder: "b", capacity: nil, owner: owner, leaseUntil: now + 15, now: now)
            {
                claims.list.withLock { $0.append((owner, claimed)) }
                try await logs.appendGatewayLine("dispatched", to: build.id)
            }
        case .engineAccepted:
            guard let claim else { return }
            _ = try await store.markRunning(build.id, owner: claim.owner)
        case .engineResult:
            guard let claim else { return }
            let outcomes: [BuildOutcome] = [
                .succeeded([]), .failed(.buildFailed, message: "exit 1"), .failed(.pushFailed, message: "denied"),
                .failed(.cancelled, message: "stopped"),
            ]
            _ = try await settler.settle(
                claim.build, on: .engineFinished(outcomes[choice % outcomes.count], timedOut: false),
                expecting: .lease(owner: claim.owner), at: Date())
        case .timeout:
            guard let claim else { return }
            _ = try await settler.settle(
                claim.build, on: .engineFinished(.failed(.cancelled, message: "stopped"), timedOut: true),
                expecting: .lease(owner: claim.owner), at: Date())
        case .cancel:
            guard let current = try await store.build(build.id) else { return }
            _ = try await settler.cancel(current, in: store, at: Date())
        case .leaseExpiry:
            // As after a crash: every lease is long expired.
            try await reaper.settleExpiredLeases(now: Date().addingTimeInterval(3600))
        case .shutdown:
            guard let claim else { return }
            _ = try await settler.settle(
                claim.build, on: .shutdownInterrupt, expecting: .lease(owner: claim.owner), at: Date())
        case .supersede:
            let newer = Build(
                id: .generate(), request: build.request, context: build.context, createdAt: Date(), runKey: key,
                runPolicy: .latestOnly)
            _ = try await store.create(newer)
            builds.withLock { $0.append(newer.id) }
            try await logs.appendGatewayLine("queued", to: newer.id)
            try await settler.supersede(olderThan: newer, in: store, at: Date())
        case .retry:
            guard let claim else { return }
            if try await store.requeueForRetry(
                build.id, owner: claim.owner, queueExpiresAt: start.addingTimeInterval(5)) != nil
            {
                try await logs.appendGatewayLine("back in the queue", to: build.id)
            }
        case .queueTTL:
            try await reaper.expireQueuedBuilds(now: start.addingTimeInterval(10))
        }
    }

    /// These builds against the invariants; what is broken, described.
    func check(_ ids: [BuildID]) async throws -> [String] {
        var broken: [String] = []
        for id in ids {
            guard let build = try await store.build(id) else { continue }
            let snapshot = await logs.snapshot(id)
            let lastLine = try await logs.text(id).split(separator: "\n").last.map(String.init) ?? ""
            let told = observer.terminalNotifications(of: id)
            if build.status.isTerminal {
                let before = settled.withLock { seen in
                    defer { seen[id] = seen[id] ?? build.status }
                    return seen[id]
                }
                if let before, before != build.status { broken.append("\(id) went from \(before) to \(build.status)") }
                if told != 1 { broken.append("\(id) is \(build.status) and the observer was told \(told) times") }
                if !snapshot.isFinished { broken.append("\(id) is \(build.status) but its log is not complete") }
                if !OrderCheckingLogStore.isResultLine(lastLine, of: build) {
                    broken.append(
                        "\(id) is \(build.status)/\(build.reason?.rawValue ?? "-") but its log ends '\(lastLine)'")
                }
            } else {
                if told != 0 { broken.append("\(id) is \(build.status) but the observer heard of \(told) results") }
                if snapshot.isFinished { broken.append("\(id) is \(build.status) but its log is complete") }
                if settled.withLock({ $0[id] }) != nil {
                    broken.append("\(id) left its terminal state for \(build.status)")
                }
            }
        }
        return broken
    }
}

/// The claims made in one run, by which dispatcher, as each dispatcher saw the build then.
private final class Claims: Sendable {
    let list = Mutex<[(owner: String, build: Build)]>([])
}

/// The real log store, checking at every result line that the status is not terminal yet (the line comes first),
/// and at every `finish` that the status is terminal and the log ends with its result line.
private final class OrderCheckingLogStore: BuildLogStore, Sendable {
    private let logs: FileBuildLogStore
    private let store: SQLiteBuildStore
    private let found = Mutex<[String]>([])

    init(logs: FileBuildLogStore, store: SQLiteBuildStore) {
        self.logs = logs
        self.store = store
    }

    var violations: [String] { found.withLock { $0 } }

    static func isResultLine(_ line: String, of build: Build) -> Bool {
        guard build.status.isTerminal else { return false }
        var expected = "result: \(build.status.rawValue)"
        if let reason = build.reason, reason.rawValue != build.status.rawValue { expected += " (\(reason.rawValue))" }
        return line.hasPrefix("[buildgate] ") && (line.hasSuffix(expected) || line.contains(expected + ":"))
    }

    func append(_ bytes: [UInt8], to id: BuildID) async throws {
        if String(decoding: bytes, as: UTF8.self).contains("result: "), let build = try await store.build(id),
            build.status.isTerminal
        {
            found.withLock {
                $0.append("\(id): a result line was written after its status \(build.status) was committed")
            }
        }
        try await logs.append(bytes, to: id)
    }

    func finish(_ id: BuildID) async {
        if let build = try? await store.build(id) {
            let last = (try? await logs.text(id))?.split(separator: "\n").last.map(String.init) ?? ""
            if !Self.isResultLine(last, of: build) {
                found.withLock { $0.append("\(id): the log was completed while \(build.status) and ending '\(last)'") }
            }
        }
        await logs.finish(id)
    }

    func snapshot(_ id: BuildID) async -> BuildLogSnapshot { await logs.snapshot(id) }

    func read(_ id: BuildID, from offset: Int64, maxLength: Int) async throws -> ArraySlice<UInt8> {
        try await logs.read(id, from: offset, maxLength: maxLength)
    }

    func waitForChange(_ id: BuildID, beyond length: Int64, timeout: Duration) async -> BuildLogSnapshot {
        await logs.waitForChange(id, beyond: length, timeout: timeout)
    }

    func remove(_ id: BuildID) async { await logs.remove(id) }
}

/// Counts what the observer was told, by build: terminal states and all.
private final class CountingObserver: BuildObserver, Sendable {
    private let terminal = Mutex<[BuildID: Int]>([:])

    func buildChanged(_ build: Build) async {
        guard build.status.isTerminal else { return }
        terminal.withLock { $0[build.id, default: 0] += 1 }
    }

    func terminalNotifications(of id: BuildID) -> Int { terminal.withLock { $0[id] ?? 0 } }
}

/// A small seeded generator (SplitMix64), so a failing interleaving can be replayed from its seed.
struct SplitMix64 {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func next(in range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(next() % UInt64(range.count))
    }
}
