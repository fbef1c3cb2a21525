import Foundation
import HTTPTypes
import HummingbirdCore
import NIOCore
import NIOHTTP1
import NIOHTTPTypes

/// How long a client may take to send a request: slow clients hold a connection, a task and (for uploads) a temporary
/// file, so each phase of a request has a bound, as Apache's `mod_reqtimeout` gives them.
package struct RequestTimeouts: Sendable, Equatable {
    /// From the connection's start (or the end of the previous response) to the request's whole head. Past it the
    /// client gets `408 requestTimeout` and the connection is closed.
    package var head: Duration = .seconds(30)
    /// The longest silence between two pieces of a request body; also the time allowed before `bodyMinRate` counts.
    package var bodyIdle: Duration = .seconds(60)
    /// The slowest average a body may arrive at, in bytes per second (0: no minimum): by `bodyIdle` plus one second
    /// per `bodyMinRate` bytes after the head, the body must have arrived. A body trickling a byte a second is cut
    /// after `bodyIdle` although it is never silent.
    package var bodyMinRate = 1024

    package init() {}
}

/// The request that timed out, as the route reading its body sees it: answered 408 with the JSON error.
package struct RequestTimeoutError: Error, CustomStringConvertible {
    package var description: String
}

/// Enforces `RequestTimeouts` on one HTTP/1 connection, and answers what the HTTP parser refuses before a request
/// exists with the API's JSON error instead of an empty 400.
///
/// Sits after the HTTP types codec. While a head is awaited a timer runs; it answers 408 itself (no request exists
/// yet) and closes. While a body arrives, a timer checks silence and average rate, and on expiry raises
/// `RequestTimeoutError` into the request's body stream, so the route reading it fails, removes what it kept
/// and answers 408 through the usual error path. A response that ends before its request did closes the
/// connection, so a client cannot hold it by trickling the rest of a body nobody reads.
package final class RequestDeadlineHandler: ChannelDuplexHandler, RemovableChannelHandler {
    package typealias InboundIn = HTTPRequestPart
    package typealias InboundOut = HTTPRequestPart
    package typealias OutboundIn = HTTPResponsePart
    package typealias OutboundOut = HTTPResponsePart

    /// Where the inbound side is.
    private enum State {
        /// No part of the next request has been parsed yet.
        case betweenRequests
        /// A head arrived at `start`; `received` body bytes so far, the last at `lastRead`.
        case receivingBody(start: NIODeadline, received: Int64, lastRead: NIODeadline)
        /// The connection is being closed (a refusal was written or a deadline passed).
        case closing
    }

    private let timeouts: RequestTimeouts
    private var state = State.betweenRequests
    /// Requests whose head arrived and whose response has not ended (more than one when a client pipelines).
    private var unanswered = 0
    private var timer: Scheduled<Void>?
    /// Since when the server has asked for more bytes and not had them: only that time is the client's. While the
    /// server is not reading (a slow disk behind an upload), the body's clocks stand still.
    private var readRequestedAt: NIODeadline?
    /// Since when the server has not asked for more (nil while it waits), and how long it did not ask in all, during
    /// the current body.
    private var serverPausedSince: NIODeadline?
    private var serverPaused = TimeAmount.zero

    /// Idle: nothing is owed to the client and nothing of a request has arrived, so a head is awaited.
    private var awaitingHead: Bool {
        if case .betweenRequests = state { unanswered == 0 } else { false }
    }

    package init(timeouts: RequestTimeouts) {
        self.timeouts = timeouts
    }

    package func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { armHeadTimer(context: context) }
    }

    package func channelActive(context: ChannelHandlerContext) {
        armHeadTimer(context: context)
        context.fireChannelActive()
    }

    package func handlerRemoved(context: ChannelHandlerContext) {
        cancelTimer()
    }

    package func channelInactive(context: ChannelHandlerContext) {
        cancelTimer()
        context.fireChannelInactive()
    }

    package func read(context: ChannelHandlerContext) {
        if readRequestedAt == nil {
            let now = context.eventLoop.now
            readRequestedAt = now
            if let since = serverPausedSince { serverPaused = serverPaused + (now - since) }
            serverPausedSince = nil
        }
        context.read()
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // The event loop's time: one reading per part, and a clock tests can move (EmbeddedEventLoop).
        let now = context.eventLoop.now
        readRequestedAt = nil
        serverPausedSince = now
        switch unwrapInboundIn(data) {
        case .head:
            unanswered += 1
            serverPaused = .zero
            state = .receivingBody(start: now, received: 0, lastRead: now)
            armBodyTimer(context: context)
        case .body(let buffer):
            if case .receivingBody(let start, let received, _) = state {
                state = .receivingBody(start: start, received: received + Int64(buffer.readableBytes), lastRead: now)
            }
        case .end:
            if case .receivingBody = state {
                state = .betweenRequests
                cancelTimer()
            }
        }
        context.fireChannelRead(data)
    }

    package func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .end = unwrapOutboundIn(data) else {
            context.write(data, promise: promise)
            return
        }
        unanswered = max(0, unanswered - 1)
        switch state {
        case .receivingBody where unanswered == 0:
            // Answered before the request was whole: nobody reads the rest, so the connection ends with the answer.
            state = .closing
            cancelTimer()
            let written = promise ?? context.eventLoop.makePromise()
            context.write(data, promise: written)
            written.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        case .betweenRequests where unanswered == 0:
            context.write(data, promise: promise)
            armHeadTimer(context: context)
        case .betweenRequests, .receivingBody, .closing:
            context.write(data, promise: promise)
        }
    }

    package func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard awaitingHead, error is HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        // No request exists to answer through the router: refuse here, in the API's shape.
        refuse(
            context: context, status: .badRequest, code: "malformedRequest",
            message: "the request is not valid HTTP/1.1: \(error)")
    }

    // MARK: - Timers

    private func cancelTimer() {
        timer?.cancel()
        timer = nil
    }

    private func armHeadTimer(context: ChannelHandlerContext) {
        guard awaitingHead else { return }
        cancelTimer()
        let limit = timeouts.head
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(limit)) { [self] in
            guard self.awaitingHead else { return }
            self.refuse(
                context: context, status: .requestTimeout, code: "requestTimeout",
                message: "the request head did not arrive within \(limit.formattedSeconds)")
        }
    }

    /// When the body goes silent too long, and (with a minimum rate) when it has fallen behind that rate; the time
    /// the server was not reading is not counted against the client.
    private func bodyDeadlines(now: NIODeadline) -> (idle: NIODeadline, rate: NIODeadline?)? {
        guard case .receivingBody(let start, let received, let lastRead) = state else { return nil }
        let notReading = serverPaused + (serverPausedSince.map { now - $0 } ?? .zero)
        // Silence counts from when the server last asked for bytes after the last ones came.
        let idle =
            readRequestedAt.map { max($0, lastRead) + TimeAmount(timeouts.bodyIdle) } ?? now
            + TimeAmount(timeouts.bodyIdle)
        guard timeouts.bodyMinRate > 0 else { return (idle, nil) }
        let earned = TimeAmount.nanoseconds(Int64(min(Double(received) / Double(timeouts.bodyMinRate), 1e9) * 1e9))
        return (idle, start + TimeAmount(timeouts.bodyIdle) + earned + notReading)
    }

    /// Fires at the earliest moment a body deadline could pass, and re-arms itself while the body keeps up (so the
    /// timer is not touched for every piece of a fast upload).
    private func armBodyTimer(context: ChannelHandlerContext) {
        cancelTimer()
        guard let (idle, rate) = bodyDeadlines(now: context.eventLoop.now) else { return }
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: min(idle, rate ?? idle)) { [self] in
            let now = context.eventLoop.now
            guard let (idle, rate) = self.bodyDeadlines(now: now) else { return }
            let message: String
            if now >= idle {
                message = "the request body stalled: nothing arrived for \(self.timeouts.bodyIdle.formattedSeconds)"
            } else if let rate, now >= rate {
                message = "the request body arrived slower than \(self.timeouts.bodyMinRate) bytes a second on average"
            } else {
                self.armBodyTimer(context: context)
                return
            }
            self.state = .closing
            self.timer = nil
            // The route reading the body fails with this, cleans up, and answers 408.
            context.fireErrorCaught(RequestTimeoutError(description: message))
        }
    }

    /// Writes a JSON error response and closes the connection.
    private func refuse(context: ChannelHandlerContext, status: HTTPResponse.Status, code: String, message: String) {
        state = .closing
        cancelTimer()
        let body = (try? JSONEncoder().encode(ErrorBody(error: .init(code: code, message: message)))) ?? Data()
        let head = HTTPResponse(
            status: status,
            headerFields: [.contentType: "application/json", .contentLength: "\(body.count)", .connection: "close"])
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(ByteBuffer(bytes: body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }
}

extension Duration {
    /// "30 s", "0.5 s".
    fileprivate var formattedSeconds: String {
        let (seconds, attoseconds) = components
        return attoseconds == 0 ? "\(seconds) s" : "\(Double(seconds) + Double(attoseconds) / 1e18) s"
    }
}
