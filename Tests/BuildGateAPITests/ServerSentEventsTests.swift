import AsyncHTTPClient
import BuildGateCore
import BuildGateTesting
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@testable import BuildGateAPI

/// An `EventSource` as the WHATWG standard reads a stream: fields per line, events at blank lines, `data` lines
/// joined with `\n`, `id` kept for the reconnect.
struct EventSourceReader {
    struct Event: Equatable {
        var name: String
        var id: String?
        var data: String
    }

    private var pending: [UInt8] = []
    private var name = ""
    private var data: [String] = []
    private(set) var lastEventID: String?
    private var id: String?

    /// The events completed by `bytes`.
    mutating func feed(_ bytes: some Sequence<UInt8>) -> [Event] {
        pending += bytes
        var events: [Event] = []
        while let end = pending.firstIndex(where: { $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "\r") }) {
            let line = String(decoding: pending[..<end], as: UTF8.self)
            var next = end + 1
            if pending[end] == UInt8(ascii: "\r"), next < pending.count, pending[next] == UInt8(ascii: "\n") {
                next += 1
            }
            pending.removeFirst(next)
            if line.isEmpty {
                if !data.isEmpty {
                    events.append(
                        Event(name: name.isEmpty ? "message" : name, id: id, data: data.joined(separator: "\n")))
                }
                if let id { lastEventID = id }
                name = ""
                data = []
                id = nil
                continue
            }
            if line.hasPrefix(":") { continue }
            let field = line.prefix { $0 != ":" }
            var value = line.dropFirst(field.count)
            if value.hasPrefix(":") { value = value.dropFirst() }
            if value.hasPrefix(" ") { value = value.dropFirst() }
            switch field {
            case "event": name = String(value)
            case "data": data.append(String(value))
            case "id": id = String(value)
            default: break
            }
        }
        return events
    }
}

struct ServerSentEventsFramingTests {
    @Test func dataComesBackByteForByteThroughAnEventSource() {
        for text in ["a\nb\n", "abc", "\n", "one line\n", "x\n\ny", "emoji 🚀\n"] {
            var reader = EventSourceReader()
            let events = reader.feed(ServerSentEvents.event("log", id: "7", data: Array(text.utf8)).readableBytesView)
            #expect(events == [.init(name: "log", id: "7", data: text)], "\(text.debugDescription)")
            #expect(reader.lastEventID == "7")
        }
        var reader = EventSourceReader()
        #expect(
            reader.feed(ServerSentEvents.event("log", data: Array("a\r\nb\rc".utf8)).readableBytesView).first?.data
                == "a\nb\nc")
    }

    @Test func anUnfinishedCharacterOrCarriageReturnWaitsForTheRest() {
        let rocket = Array("🚀".utf8)
        #expect(ServerSentEvents.sendablePrefix(of: (Array("ab".utf8) + rocket.prefix(2))[...], final: false) == 2)
        #expect(ServerSentEvents.sendablePrefix(of: (Array("ab".utf8) + rocket)[...], final: false) == 6)
        #expect(ServerSentEvents.sendablePrefix(of: Array("ab\r".utf8)[...], final: false) == 2)
        #expect(ServerSentEvents.sendablePrefix(of: Array("ab\r".utf8)[...], final: true) == 3)
        #expect(ServerSentEvents.sendablePrefix(of: Array("é".utf8).prefix(1), final: false) == 0)
    }
}

/// The log and the tenant's changes as event streams, read by a client that drops the connection and resumes.
struct ServerSentEventsStreamTests {
    /// Reads `path` as an event stream until `stop` says so (or the stream ends), then drops the connection.
    func read(
        _ path: String, port: Int, headers: HTTPFields, lastEventID: String? = nil,
        until stop: ([EventSourceReader.Event]) -> Bool
    ) async throws -> (events: [EventSourceReader.Event], lastEventID: String?) {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
        for field in headers { request.headers.add(name: field.name.rawName, value: field.value) }
        request.headers.add(name: "Accept", value: "text/event-stream")
        if let lastEventID { request.headers.add(name: "Last-Event-ID", value: lastEventID) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        #expect(response.status == .ok)
        #expect(response.headers.first(name: "Content-Type")?.hasPrefix("text/event-stream") == true)
        var reader = EventSourceReader()
        var events: [EventSourceReader.Event] = []
        for try await piece in response.body {
            events += reader.feed(piece.readableBytesView)
            if stop(events) { break }
        }
        return (events, reader.lastEventID)
    }

    /// A live gateway with one queued build (an upload), whose log the test writes.
    private func withQueuedBuild(
        _ body: @escaping @Sendable (any TestClientProtocol, APIHarness, _ port: Int, BuildID) async throws -> Void
    ) async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        try await harness.application().test(.live) { client in
            let port = try #require(client.port)
            let created = try await client.execute(
                uri: "/v1/builds?image=r.example.com/a:1", method: .post, headers: harness.auth,
                body: ByteBuffer(bytes: sampleContext()))
            try await body(client, harness, port, try #require(BuildID(try created.decode(BuildJSON.self).id)))
        }
    }

    @Test func aReaderThatDropsAndResumesWithLastEventIDGetsEveryByteOnce() async throws {
        try await withQueuedBuild { client, harness, port, id in
            for line in 1...40 { try await harness.logs.append(Array("line \(line) ✓\n".utf8), to: id) }

            // The first reader leaves after a few events.
            let first = try await read("/v1/builds/\(id)/logs", port: port, headers: harness.auth) { events in
                events.filter { $0.name == "log" }.count >= 1
            }
            #expect(first.events.first?.name == "status" && first.events.first?.data == #"{"status":"queued"}"#)
            let resumeAt = try #require(first.lastEventID)

            // More output, then the build ends: the second reader starts where the first left off.
            for line in 41...60 { try await harness.logs.append(Array("line \(line) ✓\n".utf8), to: id) }
            let cancel = try await client.execute(uri: "/v1/builds/\(id)/cancel", method: .post, headers: harness.auth)
            #expect(cancel.status == .ok)
            let second = try await read(
                "/v1/builds/\(id)/logs", port: port, headers: harness.auth, lastEventID: resumeAt
            ) { _ in false }
            #expect(second.events.last?.name == "end")
            #expect(second.events.last?.data.contains(#""status":"cancelled""#) == true)

            let whole = try await harness.logs.text(id)
            let received = (first.events + second.events).filter { $0.name == "log" }.map(\.data).joined()
            #expect(received == whole, "every byte exactly once across the reconnect")
            #expect(second.events.filter { $0.name == "log" }.last?.id == String(whole.utf8.count))

            // A log-read token works as ?access_token= (EventSource cannot send headers).
            let minted = try await client.execute(
                uri: "/v1/builds/\(id)/log-tokens", method: .post, headers: harness.auth)
            struct Minted: Decodable { var token: String }
            let token = try minted.decode(Minted.self).token
            let viaToken = try await read("/v1/builds/\(id)/logs?access_token=\(token)", port: port, headers: [:]) {
                _ in false
            }
            #expect(viaToken.events.filter { $0.name == "log" }.map(\.data).joined() == whole)
        }
    }

    /// A reader far behind gets its events a batch at a time (several pieces per write): still every byte once,
    /// and no event cuts a character where a 32 KiB piece does (3-byte characters, so pieces end mid-character).
    /// Such a cut once made the stream spin: the piece's last bytes were held back for the rest of the character,
    /// and the next read, stopping at the same piece end, returned only them again.
    @Test(.timeLimit(.minutes(1)))
    func aReaderFarBehindGetsEveryByteInWholeCharacters() async throws {
        try await withQueuedBuild { client, harness, port, id in
            for line in 1...24 {
                try await harness.logs.append(Array("\(line) \(String(repeating: "✓", count: 10_000))\n".utf8), to: id)
            }
            let cancel = try await client.execute(uri: "/v1/builds/\(id)/cancel", method: .post, headers: harness.auth)
            #expect(cancel.status == .ok)

            let read = try await read("/v1/builds/\(id)/logs", port: port, headers: harness.auth) { _ in false }
            let whole = try await harness.logs.text(id)
            #expect(whole.utf8.count > 700_000)
            let logs = read.events.filter { $0.name == "log" }
            #expect(logs.map(\.data).joined() == whole, "every byte once")
            #expect(logs.allSatisfy { !$0.data.contains("\u{FFFD}") }, "no character cut in two")
            #expect(logs.count >= whole.utf8.count / (32 * 1024), "an event per piece")
            #expect(logs.last?.id == String(whole.utf8.count))
            #expect(read.events.last?.name == "end")
        }
    }

    @Test func theTenantsChangesStreamFromTheirDurableSequence() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        try await harness.application().test(.live) { client in
            let port = try #require(client.port)
            let other = try await harness.auth(tenant: "other", scopes: [.admin])
            func upload(_ headers: HTTPFields) async throws -> String {
                let created = try await client.execute(
                    uri: "/v1/builds?image=r.example.com/a:1", method: .post, headers: headers,
                    body: ByteBuffer(bytes: sampleContext()))
                return try created.decode(BuildJSON.self).id
            }
            let mine = try await upload(harness.auth)
            let theirs = try await upload(other)
            _ = try await client.execute(uri: "/v1/builds/\(mine)/cancel", method: .post, headers: harness.auth)

            // From the start of the sequence: this tenant's changes only.
            let replay = try await read("/v1/events?after=0", port: port, headers: harness.auth) { $0.count >= 2 }
            #expect(replay.events.map(\.name) == ["build", "build"])
            #expect(
                replay.events[0].data.contains(#""buildId":"\#(mine)""#)
                    && replay.events[0].data.contains(#""status":"queued""#))
            #expect(replay.events[1].data.contains(#""status":"cancelled""#))
            #expect(!replay.events.contains { $0.data.contains(theirs) })

            // Resumed from the last id seen: only what came after, here a build queued meanwhile.
            let later = try await upload(harness.auth)
            let resumed = try await read(
                "/v1/events", port: port, headers: harness.auth, lastEventID: replay.lastEventID
            ) {
                !$0.isEmpty
            }
            #expect(resumed.events.count == 1 && resumed.events[0].data.contains(later))
            #expect(Int(resumed.lastEventID ?? "") ?? 0 > Int(replay.lastEventID ?? "") ?? 0)
        }
    }
}
