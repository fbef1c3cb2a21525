import BuildGateAPI
import HTTPTypes
import NIOCore
import NIOEmbedded
import NIOHTTPTypes
import Testing

/// The request deadlines on an embedded channel whose clock the test moves: slow clients are cut at the second the
/// rules say, whatever the machine's load, and without waiting for that time to pass.
struct RequestDeadlineHandlerTests {
    static let timeouts = RequestTimeouts()  // head 30 s, body idle 60 s, 1,024 bytes/s

    private func connected() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel(handler: RequestDeadlineHandler(timeouts: Self.timeouts))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return channel
    }

    private func upload(_ channel: EmbeddedChannel) throws {
        try channel.writeInbound(
            HTTPRequestPart.head(HTTPRequest(method: .post, scheme: nil, authority: "x", path: "/v1/builds")))
        channel.read()  // the server asks for the body
    }

    /// What the channel raised into the request's body stream, if anything.
    private func timeout(_ channel: EmbeddedChannel) -> RequestTimeoutError? {
        do {
            try channel.throwIfErrorCaught()
            return nil
        } catch {
            return error as? RequestTimeoutError
        }
    }

    @Test func aHeadNotWholeWithinItsTimeIsAnswered408AndTheConnectionClosed() throws {
        let channel = try connected()
        channel.embeddedEventLoop.advanceTime(by: .seconds(29))
        #expect(try channel.readOutbound(as: HTTPResponsePart.self) == nil)
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        guard case .head(let head)? = try channel.readOutbound(as: HTTPResponsePart.self) else {
            Issue.record("no answer after 30 s")
            return
        }
        #expect(head.status == .requestTimeout)
        #expect(head.headerFields[.connection] == "close")
        guard case .body(let body)? = try channel.readOutbound(as: HTTPResponsePart.self) else {
            Issue.record("no body")
            return
        }
        #expect(String(buffer: body).contains(#""code":"requestTimeout""#))
        #expect(!channel.isActive)
    }

    /// One byte a second is never silent, yet far below the minimum rate: cut once it falls behind.
    @Test func aBodyTricklingOneByteASecondIsCutWhenItFallsBehindTheMinimumRate() throws {
        let channel = try connected()
        try upload(channel)
        var cut: RequestTimeoutError?
        var seconds = 0
        while cut == nil && seconds < 120 {
            channel.embeddedEventLoop.advanceTime(by: .seconds(1))
            seconds += 1
            cut = timeout(channel)
            guard cut == nil else { break }
            try channel.writeInbound(HTTPRequestPart.body(ByteBuffer(bytes: [0x61])))
            channel.read()
        }
        // 60 s, plus a second per 1,024 bytes received (here 59 ms).
        #expect(seconds == 61, "cut after \(seconds) s")
        #expect(cut?.description.contains("slower than 1024 bytes a second") == true, "\(String(describing: cut))")
    }

    @Test func aBodyThatFallsSilentIsCutAfterTheIdleTime() throws {
        let channel = try connected()
        try upload(channel)
        try channel.writeInbound(HTTPRequestPart.body(ByteBuffer(bytes: Array(repeating: 0, count: 100_000))))
        channel.read()
        channel.embeddedEventLoop.advanceTime(by: .seconds(59))
        #expect(timeout(channel) == nil)
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(timeout(channel)?.description.contains("stalled") == true)
    }

    /// A steady upload is never cut, and while the server does not ask for more (back-pressure), the client's clocks
    /// stand still.
    @Test func aSteadyBodyAndAServerThatStopsReadingAreNotTimeouts() throws {
        let channel = try connected()
        try upload(channel)
        for _ in 0..<600 {
            channel.embeddedEventLoop.advanceTime(by: .milliseconds(100))
            try channel.writeInbound(HTTPRequestPart.body(ByteBuffer(bytes: Array(repeating: 0, count: 1024))))
            channel.read()
        }
        #expect(timeout(channel) == nil)
        // The last piece came; the server does not ask for the next one for ten minutes.
        try channel.writeInbound(HTTPRequestPart.body(ByteBuffer(bytes: [0])))
        channel.embeddedEventLoop.advanceTime(by: .seconds(600))
        #expect(timeout(channel) == nil)
        channel.read()
        channel.embeddedEventLoop.advanceTime(by: .seconds(60))
        #expect(timeout(channel)?.description.contains("stalled") == true)
    }
}
