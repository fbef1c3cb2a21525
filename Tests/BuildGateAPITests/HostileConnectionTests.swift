import BuildGateAPI
import BuildGateCore
import BuildGateTesting
import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import NIOPosix
import Testing

/// One TCP connection to the live server, written byte by byte as a hostile client would: no HTTP client library
/// between the test and the wire.
struct RawConnection: Sendable {
    let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>

    static func open(port: Int) async throws -> RawConnection {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(
                        wrappingChannelSynchronously: channel,
                        configuration: .init(isOutboundHalfClosureEnabled: true))
                }
            }
        return RawConnection(channel: channel)
    }

    /// Sends `text` (and `tail`, raw bytes), closes the writing side when `finish`, then reads until the server
    /// closes the connection, and gives what came back. (A server that never closes fails the suite's time limit.)
    func exchange(_ text: String, tail: [UInt8] = [], finish: Bool = false) async throws -> RawResponse {
        try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: text))
            if !tail.isEmpty { try await outbound.write(ByteBuffer(bytes: tail)) }
            if finish { outbound.finish() }
            var received: [UInt8] = []
            do {
                for try await buffer in inbound { received += buffer.readableBytesView }
            } catch {}
            return RawResponse(bytes: received)
        }
    }
}

/// A response read off the wire.
struct RawResponse: Sendable {
    let bytes: [UInt8]
    var text: String { String(decoding: bytes, as: UTF8.self) }
    var status: Int? { text.split(separator: " ", maxSplits: 2).dropFirst().first.flatMap { Int($0) } }
    var body: String { text.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n") }
    var error: ErrorEnvelope.Detail? {
        try? JSONDecoder().decode(ErrorEnvelope.self, from: Data(body.utf8)).error
    }
}

/// The hostile-input classes that need the real server: HTTP framing and slow clients (with the timing itself in
/// `RequestDeadlineHandlerTests`, on a clock the test moves).
@Suite(.timeLimit(.minutes(2)))
struct HostileConnectionTests {
    /// Short body timeouts, so each case ends in about a second; the defaults are checked in the configuration
    /// tests. The head deadline stays 10 s: these clients send their head in one write, but on a loaded CI machine
    /// one was not scheduled to send it within 1 s of connecting and was rightly answered 408 (the test of the head
    /// deadline itself sets 1 s).
    static let quick: RequestTimeouts = {
        var timeouts = RequestTimeouts()
        timeouts.head = .seconds(10)
        timeouts.bodyIdle = .seconds(1)
        timeouts.bodyMinRate = 1024
        return timeouts
    }()

    private func withServer(
        timeouts: RequestTimeouts = Self.quick, _ body: @Sendable (Int, APIHarness) async throws -> Void
    ) async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        try await harness.application(timeouts: timeouts).test(.live) { client in
            try await body(try #require(client.port), harness)
        }
    }

    /// The head of an authorized upload of `length` bytes, framed as `framing` (`Content-Length: N` by default).
    private func uploadHead(_ harness: APIHarness, length: Int? = nil, framing: String? = nil) -> String {
        "POST /v1/builds?image=r.example.com/a:1 HTTP/1.1\r\nHost: x\r\nAuthorization: \(harness.auth[.authorization] ?? "")\r\n"
            + (framing ?? "Content-Length: \(length ?? 0)") + "\r\n\r\n"
    }

    /// What a refused upload must leave: no build, no file.
    private func expectNothingKept(_ harness: APIHarness) async throws {
        #expect(try await harness.buildCount() == 0)
        #expect(harness.contextFiles.isEmpty, "\(harness.contextFiles)")
    }

    // MARK: - Slow clients

    /// 51 connections sending a header byte a second stayed open for two minutes and more.
    @Test func aHeadThatNeverCompletesIsAnswered408AndOthersAreServedMeanwhile() async throws {
        var timeouts = Self.quick
        timeouts.head = .seconds(1)
        try await withServer(timeouts: timeouts) { port, _ in
            let slow = try await RawConnection.open(port: port)
            async let answer = slow.exchange("POST /v1/builds?image=r.example.com/a:1 HTTP/1.1\r\nHost: x\r\nX-Slow: a")
            // Served while the slow one waits.
            let other = try await RawConnection.open(port: port)
            let healthy = try await other.exchange("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            #expect(healthy.status == 200)
            let response = try await answer
            #expect(response.status == 408, "\(response.text)")
            #expect(response.error?.code == "requestTimeout")
        }
    }

    /// A body shorter than its Content-Length from a client that then falls silent got no answer in 90 s.
    @Test func aBodyThatStallsIsAnswered408WithNothingKept() async throws {
        try await withServer { port, harness in
            let connection = try await RawConnection.open(port: port)
            let context = sampleContext()
            let response = try await connection.exchange(
                uploadHead(harness, length: context.count), tail: Array(context.prefix(100)))
            #expect(response.status == 408, "\(response.text)")
            #expect(response.error?.message.contains("stalled") == true)
            try await expectNothingKept(harness)
        }
    }

    /// The deadlines must not cut what well-behaved clients do: keep-alive and pipelined requests.
    @Test func keptAliveAndPipelinedRequestsAreAllAnswered() async throws {
        try await withServer { port, _ in
            let response = try await RawConnection.open(port: port).exchange(
                "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                    + "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            #expect(response.text.components(separatedBy: "HTTP/1.1 200").count == 4, "\(response.text)")
        }
    }

    // MARK: - Framing

    /// A body that ends before its Content-Length (then EOF), and a chunk size that is not hex, answered 500.
    @Test func brokenBodyFramingIsTheClientsError() async throws {
        try await withServer { port, harness in
            let context = sampleContext()
            let short = try await RawConnection.open(port: port).exchange(
                uploadHead(harness, length: context.count), tail: Array(context.prefix(100)), finish: true)
            #expect(short.status == 400, "\(short.text)")
            #expect(short.error?.code == "malformedRequest")

            let chunked = try await RawConnection.open(port: port).exchange(
                uploadHead(harness, framing: "Transfer-Encoding: chunked") + "zz\r\nhello\r\n0\r\n\r\n")
            #expect(chunked.status == 400, "\(chunked.text)")
            #expect(chunked.error?.code == "malformedRequest")
            try await expectNothingKept(harness)
        }
    }

    /// What the HTTP parser refuses before a request exists answered 400 with an empty body.
    @Test(arguments: [
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "h", count: 100_000))\r\n\r\n",
        "GET /healthz?\(String(repeating: "q", count: 1_000_000)) HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        "NOT-HTTP\r\n\r\n",
    ])
    func whatTheParserRefusesIsAnsweredWithTheJSONError(request: String) async throws {
        try await withServer { port, _ in
            let response = try await RawConnection.open(port: port).exchange(request)
            #expect(response.status == 400, "\(response.text.prefix(300))")
            #expect(response.error?.code == "malformedRequest", "\(response.text.prefix(300))")
        }
    }
}
