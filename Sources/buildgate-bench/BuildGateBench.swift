import AsyncHTTPClient
import BuildGateCore
import BuildGateStore
import Crypto
import Foundation
import GRDB
import NIOCore

/// The benchmarks' own programs, where a script's language would measure itself rather than the gateway.
///
/// `buildgate-bench queue [COUNT] [MIGRATIONS_DIR] [POSTGRES_URL]`: enqueue, claim and complete COUNT builds through
/// the real SQLite store (WAL, synchronous=FULL, one durable transaction each), or through the PostgreSQL store when
/// a URL is given (a database is created for the run and dropped), against a baseline of COUNT bare single-row
/// durable INSERT transactions on the same database, measured in the same run. Prints builds/s and the ratio; on
/// PostgreSQL also claims from two "gateways" (two pools) with four claimers each.
///
/// `buildgate-bench follow URL TOKEN BUILD FOLLOWERS MARKER EVERY LINES [sse]`: FOLLOWERS concurrent `?follow=true`
/// readers of one build's log (`bench/log-fanout`), or with `sse` readers of its event stream
/// (`Accept: text/event-stream`, the `log` events' data joined back into the log's bytes). Each stamps
/// (CLOCK_MONOTONIC) the arrival of every line `MARKER-N-padding` with N a multiple of EVERY below LINES, and hashes
/// what it got. Prints one JSON object.
@main
struct BuildGateBench {
    static func main() async throws {
        let arguments = Array(CommandLine.arguments.dropFirst())
        switch arguments.first {
        case "queue": try await queue(Array(arguments.dropFirst()))
        case "follow" where arguments.count == 8 || arguments.count == 9: try await follow(Array(arguments.dropFirst()))
        case "fill" where arguments.count == 5: try await fill(Array(arguments.dropFirst()))
        default:
            print("usage: buildgate-bench queue [COUNT] [MIGRATIONS_DIR]")
            print("       buildgate-bench follow URL TOKEN BUILD FOLLOWERS MARKER EVERY LINES [sse]")
            print("       buildgate-bench fill DATABASE COUNT TRIGGER MIGRATIONS_DIR")
        }
    }

    static func queue(_ arguments: [String]) async throws {
        let count = arguments.first.flatMap(Int.init) ?? 10_000
        let migrations = arguments.dropFirst().first ?? "migrations"
        if let url = arguments.dropFirst(2).first {
            try await PostgresQueueBench(count: count, migrations: migrations, serverURL: url).run()
            return
        }
        let directory = NSTemporaryDirectory() + "/buildgate-bench-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let database = try BuildGateDatabase(path: "\(directory)/db.sqlite", migrationsDirectory: migrations)
        let store = SQLiteBuildStore(database: database)

        func timed(_ body: () async throws -> Void) async rethrows -> Double {
            let start = ContinuousClock.now
            try await body()
            let elapsed = ContinuousClock.now - start
            return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        }

        try await database.writer.write { db in
            try db.execute(sql: "CREATE TABLE baseline (id INTEGER PRIMARY KEY, payload TEXT)")
        }
        let baseline = try await timed {
            for index in 0..<count {
                try await database.writer.write { db in
                    try db.execute(sql: "INSERT INTO baseline (id, payload) VALUES (?, ?)", arguments: [index, "x"])
                }
            }
        }
        let request = BuildRequest(images: [try ImageReference(parsing: "r.example.com/bench:1")])
        let context = BuildContext(
            digest: ContextDigest(hex: String(repeating: "a", count: 64))!, size: 1, compression: .none)
        let enqueue = try await timed {
            for _ in 0..<count {
                _ = try await store.create(
                    Build(id: .generate(), request: request, context: context, createdAt: Date()))
            }
        }
        var claimed: [BuildID] = []
        // As the dispatcher claims: a look at the oldest dispatchable builds, then one claim each.
        let claim = try await timed {
            while claimed.count < count {
                let candidates = try await store.dispatchable(limit: 200)
                guard !candidates.isEmpty else { break }
                for build in candidates {
                    let now = Date()
                    guard
                        let build = try await store.claim(
                            build.id, builder: "bench", capacity: nil, owner: "bench",
                            leaseUntil: now.addingTimeInterval(60), now: now)
                    else { continue }
                    claimed.append(build.id)
                }
            }
        }
        let complete = try await timed {
            for id in claimed {
                _ = try await store.settle(
                    id, expecting: .lease(owner: "bench"), to: BuildLifecycle.Transition(status: .succeeded),
                    pushedImages: [], at: Date())
            }
        }
        precondition(claimed.count == count, "claimed \(claimed.count) of \(count)")
        print("queue, \(count) builds, one durable transaction each (WAL, synchronous=FULL)")
        print("| operation | seconds | per second | vs bare INSERT |")
        print("|---|---|---|---|")
        for (name, seconds) in [
            ("bare INSERT (baseline)", baseline), ("enqueue", enqueue), ("claim", claim), ("complete", complete),
        ] {
            print(
                String(
                    format: "| %@ | %.2f | %.0f | %.2f× |", name, seconds, Double(count) / seconds, baseline / seconds))
        }
    }

    /// `buildgate-bench fill DATABASE COUNT TRIGGER MIGRATIONS_DIR`: queues COUNT builds of trigger TRIGGER (each a
    /// git build of its own commit, as deliveries queue them) in a gateway's SQLite database, running or not.
    static func fill(_ arguments: [String]) async throws {
        guard let count = Int(arguments[1]) else { throw BuildGateError(.invalidParameter, "COUNT is a number") }
        let store = SQLiteBuildStore(
            database: try BuildGateDatabase(path: arguments[0], migrationsDirectory: arguments[3]))
        let request = BuildRequest(images: [try ImageReference(parsing: "127.0.0.1:1/hello:fill")])
        for _ in 0..<count {
            let commit = (0..<40).map { _ in "0123456789abcdef".randomElement()! }
            let source = try GitSource(
                url: "https://github.com/Codertocat/Hello-World.git", ref: "refs/heads/master", commit: String(commit))
            _ = try await store.create(
                Build(
                    id: .generate(), request: request, context: nil, gitSource: source, triggerID: arguments[2],
                    createdAt: Date(),
                    queueExpiresAt: Date() + 86_400))
        }
    }

    static func follow(_ arguments: [String]) async throws {
        let (url, token, build, marker) = (arguments[0], arguments[1], arguments[2], arguments[4])
        guard let followers = Int(arguments[3]), let every = Int(arguments[5]), let lines = Int(arguments[6]) else {
            throw BuildGateError(.invalidParameter, "FOLLOWERS, EVERY and LINES are numbers")
        }
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = followers
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        let events = arguments.count > 7 && arguments[7] == "sse"
        let request = {
            var request = HTTPClientRequest(url: "\(url)/v1/builds/\(build)/logs?follow=true")
            request.headers.add(name: "Authorization", value: "Bearer \(token)")
            if events { request.headers.add(name: "Accept", value: "text/event-stream") }
            return request
        }()

        struct Follower: Encodable {
            var sha256: String
            var bytes: Int
            var done: Double
            /// [N, seconds] for each marked line, when its last byte arrived.
            var stamps: [[Double]]
        }
        let results = try await withThrowingTaskGroup(of: Follower.self) { group in
            for _ in 0..<followers {
                group.addTask {
                    let response = try await client.execute(request, timeout: .seconds(900))
                    guard response.status == .ok else {
                        throw BuildGateError(.internalError, "follow answered \(response.status.code)")
                    }
                    var hash = SHA256()
                    var bytes = 0
                    var decoder = EventStreamData()
                    var stamps: [[Double]] = []
                    var number = 0
                    var next = Array("\(marker)-\(number)-padding".utf8)
                    var carry: [UInt8] = []  // the end of the previous piece, for a marked line cut in two
                    for try await piece in response.body {
                        let now = monotonicSeconds()
                        if events {
                            bytes += decoder.take(piece) { hash.update(bufferPointer: $0) }
                        } else {
                            piece.withUnsafeReadableBytes { hash.update(bufferPointer: $0) }
                            bytes += piece.readableBytes
                        }
                        // Searched in place (a copy of every piece cost the followers more than the gateway spent
                        // sending it): first a marker begun in the previous piece, then the piece itself.
                        piece.withUnsafeReadableBytes { piece in
                            var start = 0
                            if number < lines, !carry.isEmpty {
                                let joint = carry + piece.prefix(next.count)
                                if let found = find(next, in: joint, from: 0), found < carry.count {
                                    stamps.append([Double(number), now])
                                    start = found + next.count - carry.count
                                    number += every
                                    next = Array("\(marker)-\(number)-padding".utf8)
                                }
                            }
                            while number < lines, let found = find(next, in: piece, from: start) {
                                stamps.append([Double(number), now])
                                start = found + next.count
                                number += every
                                next = Array("\(marker)-\(number)-padding".utf8)
                            }
                            carry = Array(piece[max(start, piece.count - next.count + 1)...])
                        }
                    }
                    let digest = hash.finalize().map { String(format: "%02x", $0) }.joined()
                    return Follower(sha256: digest, bytes: bytes, done: monotonicSeconds(), stamps: stamps)
                }
            }
            return try await group.reduce(into: [Follower]()) { $0.append($1) }
        }
        try await client.shutdown()
        FileHandle.standardOutput.write(try JSONEncoder().encode(["followers": results]))
    }

    /// The bytes of an event stream's `log` events, in order: each event's `data:` lines joined with `\n`, as a reader
    /// joins them, which gives the log back byte for byte.
    struct EventStreamData {
        private var line: [UInt8] = []
        private var event = ""
        private var dataLines = 0

        /// Feeds `piece`; hands each run of log bytes to `output`; returns how many there were.
        mutating func take(_ piece: ByteBuffer, _ output: (UnsafeRawBufferPointer) -> Void) -> Int {
            var count = 0
            piece.withUnsafeReadableBytes { bytes in
                var start = 0
                while start < bytes.count {
                    guard let base = bytes.baseAddress,
                        let hit = memchr(base + start, Int32(UInt8(ascii: "\n")), bytes.count - start)
                    else {
                        line += bytes[start...]
                        return
                    }
                    let end = base.distance(to: UnsafeRawPointer(hit))
                    if line.isEmpty {
                        count += complete(UnsafeRawBufferPointer(rebasing: bytes[start..<end]), output)
                    } else {
                        line += bytes[start..<end]
                        count += line.withUnsafeBytes { complete($0, output) }
                        line.removeAll(keepingCapacity: true)
                    }
                    start = end + 1
                }
            }
            return count
        }

        private mutating func complete(_ line: UnsafeRawBufferPointer, _ output: (UnsafeRawBufferPointer) -> Void)
            -> Int
        {
            if line.isEmpty {
                (event, dataLines) = ("", 0)
            } else if line.starts(with: "event: ".utf8) {
                event = String(decoding: line.dropFirst(7), as: UTF8.self)
            } else if event == "log", line.starts(with: "data: ".utf8) {
                let newline: [UInt8] = [UInt8(ascii: "\n")]
                var count = line.count - 6
                if dataLines > 0 {
                    newline.withUnsafeBytes(output)
                    count += 1
                }
                output(UnsafeRawBufferPointer(rebasing: line.dropFirst(6)))
                dataLines += 1
                return count
            }
            return 0
        }
    }

    /// Where `needle` first occurs in `haystack` at or after `start`: memchr for its first byte, memcmp for the rest
    /// (the generic `firstRange(of:)` cost the followers 200 s of CPU).
    static func find(_ needle: [UInt8], in haystack: [UInt8], from start: Int) -> Int? {
        haystack.withUnsafeBytes { find(needle, in: $0, from: start) }
    }

    static func find(_ needle: [UInt8], in hay: UnsafeRawBufferPointer, from start: Int) -> Int? {
        guard let base = hay.baseAddress, !needle.isEmpty else { return nil }
        return needle.withUnsafeBytes { pattern in
            var at = start
            while hay.count - at >= pattern.count {
                guard let hit = memchr(base + at, Int32(pattern[0]), hay.count - at) else { return nil }
                at = base.distance(to: UnsafeRawPointer(hit))
                guard hay.count - at >= pattern.count else { return nil }
                if memcmp(base + at, pattern.baseAddress!, pattern.count) == 0 { return at }
                at += 1
            }
            return nil
        }
    }

    /// CLOCK_MONOTONIC, as Python's `time.monotonic()` reads it.
    static func monotonicSeconds() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }
}
