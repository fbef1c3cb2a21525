import Crypto
import Foundation
import Synchronization

/// The builders the gateway may dispatch to, as discovery and health probes report them, with the builds running
/// on each. The one place that decides where a build goes.
///
/// Endpoints arrive per *source* (a static list, a DNS name, a Kubernetes pool), so one source failing or being
/// re-listed never drops another's builders. An endpoint that disappears while builds still run on it keeps being
/// counted until they end: capacity is never exceeded, even by builds an engine is still finishing.
package final class BuilderPool: Sendable {
    /// What the pool knows of one builder.
    package struct Member: Sendable, Equatable {
        package var endpoint: BuilderEndpoint
        /// The discovery source that reported it; nil once it is gone (kept while builds still run there).
        package var source: String?
        package var health: Health = .unknown
        /// Engine and version, from the last successful probe.
        package var version: String?
        /// Platforms the engine builds for (from its probe); empty when unknown.
        package var platforms: [Platform] = []
        package var running: Set<BuildID> = []

        package var isAvailable: Bool { source != nil && health == .healthy }
        package var freeSlots: Int { max(0, endpoint.capacity - running.count) }
    }

    package enum Health: String, Sendable, Equatable {
        /// Not probed yet; not dispatched to until a probe succeeds.
        case unknown
        case healthy
        /// The last probe (or a build) found it unreachable; out of rotation until a probe succeeds.
        case unhealthy
    }

    /// Where a build should go now, or why it waits.
    package enum Choice: Sendable, Equatable {
        case endpoint(BuilderEndpoint)
        case wait(reason: String)
    }

    private struct State {
        var members: [String: Member] = [:]
        var lastError: [String: String] = [:]
    }

    private let state = Mutex(State())
    /// How far above the average load (as a share of capacity) a preferred builder may be before a key spills to
    /// the next one ("consistent hashing with bounded loads", Mirrokni et al.): 1.25 lets a warm builder take a
    /// quarter more than its share.
    private let loadFactor: Double
    private let changes: AsyncStream<Void>.Continuation
    /// Yields when the pool changed in a way that may let a queued build run (a builder appeared or recovered).
    package let changed: AsyncStream<Void>

    package init(loadFactor: Double = 1.25) {
        self.loadFactor = loadFactor
        (changed, changes) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    // MARK: - Discovery and health

    /// Replaces the endpoints reported by `source`. New ones start `unknown` (probed before use); the others keep
    /// their health and running builds.
    package func update(_ endpoints: [BuilderEndpoint], from source: String) {
        state.withLock { state in
            let names = Set(endpoints.map(\.name))
            for (name, member) in state.members where member.source == source && !names.contains(name) {
                if member.running.isEmpty {
                    state.members[name] = nil
                } else {
                    state.members[name]?.source = nil
                }
            }
            for endpoint in endpoints {
                if var member = state.members[endpoint.name] {
                    if member.endpoint != endpoint { member.health = .unknown }
                    member.endpoint = endpoint
                    member.source = source
                    state.members[endpoint.name] = member
                } else {
                    state.members[endpoint.name] = Member(endpoint: endpoint, source: source)
                }
            }
        }
        changes.yield()
    }

    /// Records a probe result (or a build's finding that the builder is unreachable).
    package func record(
        _ name: String, health: Health, version: String? = nil, platforms: [Platform]? = nil, error: String? = nil
    ) {
        defer { publishMetrics(name) }
        let recovered = state.withLock { state -> Bool in
            guard var member = state.members[name] else { return false }
            let before = member.health
            member.health = health
            if let version { member.version = version }
            if let platforms { member.platforms = platforms }
            state.members[name] = member
            state.lastError[name] = error
            return health == .healthy && before != .healthy
        }
        if recovered { changes.yield() }
    }

    /// Every endpoint a discovery source reports now, for the prober.
    package var discovered: [BuilderEndpoint] {
        state.withLock { $0.members.values.filter { $0.source != nil }.map(\.endpoint) }
    }

    /// Every builder, with its state, sorted by name.
    package var members: [Member] {
        state.withLock { $0.members.values.sorted { $0.endpoint.name < $1.endpoint.name } }
    }

    package func lastError(of name: String) -> String? { state.withLock { $0.lastError[name] } }

    /// Whether some healthy builder has a free slot: when none has, a look at the queue can place nothing.
    package var hasFreeSlot: Bool {
        state.withLock { $0.members.values.contains { $0.isAvailable && $0.freeSlots > 0 } }
    }

    /// The features each discovered builder offers, for the check at intake. Health does not matter here: a
    /// builder that is down now may be back before the build's turn (it waits, saying why, until its queue TTL).
    package var offeredFeatures: [BuildFeatures] {
        state.withLock { $0.members.values.filter { $0.source != nil }.map(\.endpoint.supportedFeatures) }
    }

    // MARK: - Scheduling

    /// Picks the builder for `build`: among available builders that support what it needs, the first by
    /// rendezvous hashing of its cache key whose load stays under the bound, else the least loaded with a free
    /// slot; or why it has to wait.
    package func choose(for build: Build, excluding excluded: Set<String> = []) -> Choice {
        let needed = build.request.requiredFeatures
        let platform = build.request.platform
        return state.withLock { state in
            let capable = state.members.values.filter { member in
                member.isAvailable && !excluded.contains(member.endpoint.name)
                    && member.endpoint.supportedFeatures.isSuperset(of: needed)
                    && (platform == nil || member.platforms.isEmpty || member.platforms.contains(platform!))
            }
            guard !capable.isEmpty else {
                var what = "no healthy builder"
                if let platform { what += " for \(platform)" }
                if !needed.isEmpty { what += " supporting \(needed.names.joined(separator: ", "))" }
                return .wait(reason: what)
            }
            let withRoom = capable.filter { $0.freeSlots > 0 }
            guard !withRoom.isEmpty else {
                let engines = Set(capable.map(\.endpoint.engine.rawValue)).sorted().joined(separator: ", ")
                return .wait(reason: "waiting for capacity in pool \(engines)")
            }
            let totalRunning = capable.reduce(0) { $0 + $1.running.count }
            let totalCapacity = capable.reduce(0) { $0 + $1.endpoint.capacity }
            let key = Self.cacheKey(of: build)
            let ranked = capable.sorted { Self.score(key, $0.endpoint.name) > Self.score(key, $1.endpoint.name) }
            for member in ranked where member.freeSlots > 0 {
                // The member's fair share of the load after this build, stretched by the load factor.
                let bound =
                    (loadFactor * Double(totalRunning + 1) * Double(member.endpoint.capacity) / Double(totalCapacity))
                    .rounded(.up)
                if Double(member.running.count + 1) <= max(1, bound) { return .endpoint(member.endpoint) }
            }
            let leastLoaded = withRoom.min { lhs, rhs in
                Double(lhs.running.count) / Double(lhs.endpoint.capacity) < Double(rhs.running.count)
                    / Double(rhs.endpoint.capacity)
            }!
            return .endpoint(leastLoaded.endpoint)
        }
    }

    /// Counts `build` on the builder; false if the builder has no free slot any more (or is gone).
    package func reserve(_ name: String, for build: BuildID) -> Bool {
        defer { publishMetrics(name) }
        return state.withLock { state in
            guard var member = state.members[name], member.isAvailable, member.freeSlots > 0 else { return false }
            member.running.insert(build)
            state.members[name] = member
            return true
        }
    }

    package func release(_ name: String, for build: BuildID) {
        defer { publishMetrics(name) }
        state.withLock { state in
            guard var member = state.members[name] else { return }
            member.running.remove(build)
            state.members[name] = member.source == nil && member.running.isEmpty ? nil : member
        }
        changes.yield()
    }

    private func publishMetrics(_ name: String) {
        guard let member = state.withLock({ $0.members[name] }) else { return }
        BuildGateMetrics.builder(
            name, healthy: member.isAvailable, busySlots: member.running.count, capacity: member.endpoint.capacity)
    }

    /// Builds that share this key are the same project built the same way, so they share a builder's cache:
    /// tenant, source (the git repository, else the first image's repository), Dockerfile path, target, platform.
    package static func cacheKey(of build: Build) -> String {
        let source = build.gitSource.map { GitSource.redacted($0.url) } ?? build.request.images.first?.name ?? ""
        let request = build.request
        return [
            build.tenant.rawValue, source, request.dockerfile, request.target ?? "",
            request.platform?.description ?? "",
        ]
        .joined(separator: "\u{0}")
    }

    /// Rendezvous (highest random weight) score of `key` on builder `name`.
    static func score(_ key: String, _ name: String) -> UInt64 {
        let digest = SHA256.hash(data: Data((key + "\u{0}" + name).utf8))
        return digest.prefix(8).reduce(0) { $0 << 8 | UInt64($1) }
    }
}

/// Why each queued build is waiting, as the dispatcher last saw it; the API shows it as `queue.reason`.
package final class QueueReasons: Sendable {
    private let reasons = Mutex<[BuildID: String]>([:])

    package init() {}

    package func replace(_ new: [BuildID: String]) { reasons.withLock { $0 = new } }

    package func reason(for id: BuildID) -> String? { reasons.withLock { $0[id] } }
}
