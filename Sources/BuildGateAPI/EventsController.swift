import BuildGateCore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import ServiceLifecycle

/// `GET /v1/events`: the tenant's build status changes as Server-Sent Events, for pages that list builds. Each event
/// is `build`, its `id` the change's durable sequence, its data `{"buildId","status","reason","at"}`; a reader that
/// reconnects with `Last-Event-ID` (or asks `?after=N`) gets every later change once. Without either, the stream
/// starts at the present. Only the token's own tenant's builds are seen.
struct EventsController<Context: AuthenticatedRequestContext>: Sendable {
    let events: any BuildEventFeed
    /// Changes read at once.
    let batch = 500

    func addRoutes(to group: RouterGroup<Context>) {
        group.get(use: stream)
    }

    @Sendable func stream(_ request: Request, context: Context) async throws -> Response {
        let principal = try context.require(.buildsRead)
        if let unknown = request.uri.queryParameters.first(where: { $0.key != "after" }) {
            throw BuildGateError(.invalidParameter, "unknown parameter '\(unknown.key)'; known: after")
        }
        let given =
            request.headers[HTTPField.Name("Last-Event-ID")!] ?? request.uri.queryParameters["after"].map(String.init)
        let start: Int64
        if let given {
            guard let sequence = Int64(given.trimmingCharacters(in: .whitespaces)), sequence >= 0 else {
                throw BuildGateError(.invalidParameter, "Last-Event-ID (or after) must be an event id (0 or more)")
            }
            start = sequence
        } else {
            start = try await events.lastSequence()
        }
        let tenant = principal.tenant
        return Response(
            status: .ok, headers: ServerSentEvents.headers,
            body: ResponseBody { [events, batch] writer in
                try await request.body.consumeWithCancellationOnInboundClose { _ in
                    try await writer.write(ServerSentEvents.retry(milliseconds: 2000))
                    var after = start
                    var lastWrite = ContinuousClock.now
                    while !Task.isCancelled && !Task.isShuttingDownGracefully {
                        // Everything recorded up to here is read below: a wait for changes past it misses none.
                        let horizon = try await events.lastSequence()
                        let changes = try await events.changes(of: tenant, after: after, limit: batch)
                        for change in changes {
                            try await writer.write(Self.event(change))
                            after = change.sequence
                            lastWrite = .now
                        }
                        if changes.count == batch { continue }
                        await events.waitForChanges(after: horizon, timeout: .seconds(15))
                        if ContinuousClock.now - lastWrite >= .seconds(15) {
                            try await writer.write(ServerSentEvents.heartbeat)
                            lastWrite = .now
                        }
                    }
                }
                try await writer.finish(nil)
            })
    }

    private static func event(_ change: BuildStateChange) -> ByteBuffer {
        let data =
            (try? BuildRepresentation.encoder.encode(
                BuildChangeJSON(
                    buildId: change.buildID.rawValue, status: change.status.rawValue, reason: change.reason?.rawValue,
                    at: change.at))) ?? Data()
        return ServerSentEvents.event("build", id: String(change.sequence), data: Array(data))
    }
}

/// The data of a `build` event.
private struct BuildChangeJSON: Encodable {
    var buildId: String
    var status: String
    var reason: String?
    var at: Date
}
