import HTTPTypes
import HummingbirdCore
import NIOCore
import NIOHTTPTypes

/// Answers `Expect: 100-continue` with an interim `100 Continue`, so clients that ask (curl does for `-T` uploads)
/// send the body at once instead of waiting a second for a reply Hummingbird would never send.
///
/// Sits in the HTTP/1 pipeline after the HTTP types codec; passes every part on unchanged.
package final class ExpectContinueHandler: ChannelInboundHandler, RemovableChannelHandler {
    package typealias InboundIn = HTTPRequestPart
    package typealias InboundOut = HTTPRequestPart
    package typealias OutboundOut = HTTPResponsePart

    package init() {}

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let request) = unwrapInboundIn(data),
            request.headerFields[.expect]?.lowercased() == "100-continue"
        {
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponse(status: .continue))), promise: nil)
        }
        context.fireChannelRead(data)
    }
}

/// The HTTP/1.1 server the gateway runs: bounds how long a request may take to arrive (`RequestTimeouts`), answers
/// the parser's refusals and `Expect: 100-continue`, and closes idle connections.
package func buildGateHTTPServer(
    timeouts: RequestTimeouts = .init(), idleTimeout: TimeAmount = .seconds(120)
) -> HTTPServerBuilder {
    .http1(
        configuration: .init(
            additionalChannelHandlers: [RequestDeadlineHandler(timeouts: timeouts), ExpectContinueHandler()],
            idleTimeout: idleTimeout))
}
