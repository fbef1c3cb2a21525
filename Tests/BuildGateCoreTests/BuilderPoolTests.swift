import BuildGateCore
import Foundation
import Testing

struct BuilderPoolTests {
    func endpoint(_ name: String, _ engine: BuilderEngine = .podman, capacity: Int = 1) -> BuilderEndpoint {
        BuilderEndpoint(
            name: name, engine: engine, address: .tcp(host: "10.0.0.\(name.hashValue & 0x7f)", port: 8888),
            capacity: capacity)
    }

    func build(repository: String = "app", platform: String? = nil, secrets: [String] = []) throws -> Build {
        var request = BuildRequest(
            images: [try ImageReference(parsing: "r.example.com/\(repository):1")], secrets: secrets)
        request.platform = try platform.map { text throws(BuildGateError) in try Platform(parsing: text) }
        return Build(id: .generate(), request: request, context: nil, createdAt: Date())
    }

    func pool(_ endpoints: [BuilderEndpoint]) -> BuilderPool {
        let pool = BuilderPool()
        pool.update(endpoints, from: "static")
        for endpoint in endpoints { pool.record(endpoint.name, health: .healthy) }
        return pool
    }

    func chosen(_ choice: BuilderPool.Choice) -> String? {
        if case .endpoint(let endpoint) = choice { endpoint.name } else { nil }
    }

    @Test func theSameKeyLandsOnTheSameBuilderAndKeysSpreadAcrossBuilders() throws {
        let pool = pool((1...4).map { endpoint("b\($0)") })
        let first = chosen(pool.choose(for: try build(repository: "app")))
        for _ in 0..<10 { #expect(chosen(pool.choose(for: try build(repository: "app"))) == first) }
        let spread = Set(try (0..<40).map { chosen(pool.choose(for: try build(repository: "app\($0)"))) })
        #expect(spread.count == 4)
    }

    @Test func aHotKeySpillsWhenItsBuilderIsFullAndCapacityIsNeverExceeded() throws {
        let pool = pool([endpoint("a"), endpoint("b")])
        var placed: [String] = []
        for _ in 0..<2 {
            let next = try build(repository: "hot")
            let name = try #require(chosen(pool.choose(for: next)))
            #expect(pool.reserve(name, for: next.id))
            placed.append(name)
        }
        #expect(Set(placed) == ["a", "b"])
        #expect(pool.choose(for: try build(repository: "hot")) == .wait(reason: "waiting for capacity in pool podman"))
        #expect(!pool.reserve("a", for: BuildID.generate()))
    }

    @Test func addingOrRemovingABuilderMovesOnlyItsShareOfKeys() throws {
        let four = (1...4).map { endpoint("b\($0)") }
        let before = pool(four)
        let after = pool(four + [endpoint("b5")])
        let keys = try (0..<200).map { try build(repository: "k\($0)") }
        let moved = keys.filter { chosen(before.choose(for: $0)) != chosen(after.choose(for: $0)) }
        // Rendezvous hashing: only keys that now prefer b5 move (about a fifth).
        #expect(moved.allSatisfy { chosen(after.choose(for: $0)) == "b5" })
        #expect((20...70).contains(moved.count), "\(moved.count) of 200 moved")

        let removed = pool(Array(four.dropLast()))
        let movedOnRemoval = keys.filter { chosen(before.choose(for: $0)) != chosen(removed.choose(for: $0)) }
        #expect(movedOnRemoval.allSatisfy { chosen(before.choose(for: $0)) == "b4" })
    }

    @Test func unhealthyUnprobedAndIncapableBuildersAreNotChosenAndTheReasonSaysWhy() throws {
        let pool = BuilderPool()
        pool.update([endpoint("p"), endpoint("d", .docker)], from: "static")
        #expect(pool.choose(for: try build()) == .wait(reason: "no healthy builder"))
        pool.record("d", health: .healthy, platforms: [try Platform(parsing: "linux/amd64")])
        #expect(chosen(pool.choose(for: try build())) == "d")
        #expect(
            pool.choose(for: try build(secrets: ["npmrc"])) == .wait(reason: "no healthy builder supporting secret"))
        #expect(
            pool.choose(for: try build(platform: "linux/arm64")) == .wait(reason: "no healthy builder for linux/arm64"))
        pool.record("p", health: .healthy)
        #expect(chosen(pool.choose(for: try build(secrets: ["npmrc"]))) == "p")
        pool.record("p", health: .unhealthy, error: "connection refused")
        #expect(
            pool.choose(for: try build(secrets: ["npmrc"])) == .wait(reason: "no healthy builder supporting secret"))
    }

    @Test func aBuilderThatLeavesWhileBuildingKeepsItsBuildsCountedUntilTheyEnd() throws {
        let pool = pool([endpoint("a"), endpoint("b")])
        let running = try build()
        #expect(pool.reserve("a", for: running.id))
        pool.update([endpoint("b")], from: "static")
        #expect(pool.members.map(\.endpoint.name) == ["a", "b"])
        #expect(pool.members.first?.source == nil)
        #expect(chosen(pool.choose(for: try build())) == "b")
        pool.release("a", for: running.id)
        #expect(pool.members.map(\.endpoint.name) == ["b"])
        // Another source's builders are untouched by this source's updates.
        pool.update([endpoint("k1")], from: "kubernetes:buildkit")
        pool.update([], from: "static")
        #expect(pool.members.map(\.endpoint.name) == ["k1"])
    }
}

struct DNSBuilderDiscoveryTests {
    @Test func everyAddressOfTheNameIsABuilderAndAFailedLookupKeepsTheLastAnswer() throws {
        let pool = BuilderPool()
        var template = BuilderTemplate(engine: .podman, port: .number(8888))
        template.capacity = 2
        DNSBuilderDiscovery(name: "localhost", template: template, pool: pool, logger: .init(label: "test"))
            .resolveOnce()
        let found = pool.members.map(\.endpoint)
        #expect(
            found.contains {
                $0.name == "localhost/127.0.0.1" && $0.address == .tcp(host: "127.0.0.1", port: 8888)
                    && $0.capacity == 2
            })
        #expect(found.allSatisfy { $0.name.hasPrefix("localhost/") && $0.engine == .podman })

        // The same source with a name that does not resolve: the pool keeps what it had.
        let broken = DNSBuilderDiscovery(
            name: "no-such-host.invalid", template: template, pool: pool, logger: .init(label: "test"))
        broken.resolveOnce()
        #expect(pool.members.map(\.endpoint) == found)
    }
}
