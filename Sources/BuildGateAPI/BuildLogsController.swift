import BuildGateCore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import ServiceLifecycle

/// `GET /v1/builds/{id}/logs`: the build's output as the gateway stored it.
///
/// Modes: the whole text so far; `Range: bytes=N-` (206, or 416 with `Content-Range: bytes */LEN` when nothing is at
/// N yet); `?offset=N` (200 with the bytes from N); `?offset=N&wait=S` (long-poll up to S seconds for new bytes or
/// the end of the build); `?follow=true` (chunked, until the build is over). Every response carries
/// `X-Build-Status`, `X-Log-Complete` and `X-Next-Offset`.
///
/// Completeness rule: the build's status is read *before* the log snapshot; drivers' last bytes are written before
/// the terminal status is committed, so a terminal status read first means the snapshot holds every byte.
struct BuildLogsController<Context: AuthenticatedRequestContext>: Sendable {
    let repository: any BuildRepository
    let logs: any BuildLogStore
    /// The longest long-poll a client may ask for.
    let maxWait = 60
    /// Largest piece read from the file and written to the client at once.
    let chunkSize = 256 * 1024
    /// The same for followers: a thousand of them each holding a 256 KiB piece in flight reached 1 GB of RSS in
    /// `bench/log-fanout`; 32 KiB keeps that near 100 MB and costs them nothing they would notice.
    let followChunkSize = 32 * 1024
    /// The most one write to a follower carries: what it is behind by, up to 256 KiB (one flush, one `writev`; the
    /// pieces are shared with other followers at the same offsets, so it is no copy for those).
    let followBatchSize = 256 * 1024
    /// Followers at the same bytes send one buffer.
    let pieces = SharedLogPieces()

    func addRoutes(to group: RouterGroup<Context>) {
        group.get("{id}/logs", use: read)
    }

    private struct Query {
        var follow = false
        var offset: Int64?
        var wait: Int?
        /// `Range: bytes=from-[through]`.
        var range: (from: Int64, through: Int64?)?
    }

    @Sendable func read(_ request: Request, context: Context) async throws -> Response {
        let query = try parse(request)
        let build = try await context.build(in: repository, scope: .logsRead)
        let start = query.range?.from ?? query.offset ?? 0

        if request.headers[.accept]?.contains("text/event-stream") == true {
            // A reconnecting EventSource says where it got to; that wins over the URL's offset.
            var resume = start
            if let lastID = request.headers[HTTPField.Name("Last-Event-ID")!] {
                guard let offset = Int64(lastID.trimmingCharacters(in: .whitespaces)), offset >= 0 else {
                    throw BuildGateError(.invalidParameter, "Last-Event-ID must be a byte offset (0 or more)")
                }
                resume = offset
            }
            return eventStream(build, from: resume, request: request)
        }
        if query.follow {
            return await follow(build, from: start, request: request)
        }

        var status = build.status
        var snapshot = await logs.snapshot(build.id)
        if let wait = query.wait, snapshot.length <= start, !status.isTerminal {
            (status, snapshot) = await waitForBytes(of: build.id, beyond: start, seconds: wait)
        }
        let complete = status.isTerminal
        var headers = Self.headers(status: status, complete: complete, nextOffset: max(start, snapshot.length))

        if let range = query.range {
            let rangeFrom = range.from
            guard rangeFrom < snapshot.length else {
                headers[.contentRange] = "bytes */\(snapshot.length)"
                throw APIError(
                    status: .rangeNotSatisfiable, code: "rangeNotSatisfiable",
                    message: "the log has \(snapshot.length) bytes; nothing at \(rangeFrom) yet", headers: headers)
            }
            let end = min(snapshot.length, range.through.map { $0 + 1 } ?? snapshot.length)
            headers[.contentRange] = "bytes \(rangeFrom)-\(end - 1)/\(complete ? String(snapshot.length) : "*")"
            headers[.nextOffset] = String(end)
            return Response(status: .partialContent, headers: headers, body: body(build.id, from: rangeFrom, to: end))
        }
        return Response(status: .ok, headers: headers, body: body(build.id, from: start, to: snapshot.length))
    }

    /// Streams `[from, to)` of the file in chunks; the length is known up front.
    private func body(_ id: BuildID, from: Int64, to end: Int64) -> ResponseBody {
        let length = max(0, end - from)
        return ResponseBody(contentLength: Int(length)) { [logs, chunkSize] writer in
            var offset = from
            while offset < end {
                let bytes = try await logs.read(id, from: offset, maxLength: Int(min(Int64(chunkSize), end - offset)))
                guard !bytes.isEmpty else { break }
                offset += Int64(bytes.count)
                try await writer.write(ByteBuffer(bytes: bytes))
            }
            try await writer.finish(nil)
        }
    }

    /// Long-poll: returns once the log grows past `offset`, the build ends, or `seconds` pass.
    private func waitForBytes(of id: BuildID, beyond offset: Int64, seconds: Int) async -> (
        BuildStatus, BuildLogSnapshot
    ) {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while true {
            let status = (try? await repository.build(id))?.status ?? .failed
            let snapshot = await logs.snapshot(id)
            let remaining = deadline - ContinuousClock.now
            if status.isTerminal || snapshot.length > offset || snapshot.isFinished || remaining <= .zero {
                return (status, snapshot)
            }
            // Wake on new bytes; re-read the status at least every second (another process may settle the build).
            _ = await logs.waitForChange(id, beyond: offset, timeout: min(remaining, .seconds(1)))
        }
    }

    private func follow(_ build: Build, from start: Int64, request: Request) async -> Response {
        // A build already over has its whole log now (its status was read before this snapshot): the headers say so
        // and name the final offset; a running one's say where the body starts.
        let ended = build.status.isTerminal ? await logs.snapshot(build.id).length : nil
        var headers = Self.headers(
            status: build.status, complete: ended != nil, nextOffset: ended.map { max($0, start) } ?? start)
        headers[.cacheControl] = "no-store"
        // The server closes the connection once a followed response ends (it watches the connection for the client
        // going away); said up front, so clients do not try to reuse it.
        headers[.connection] = "close"
        return Response(
            status: .ok, headers: headers,
            body: ResponseBody {
                [logs, repository, pieces, chunkSize = followChunkSize, followBatchSize = followBatchSize] writer in
                BuildGateMetrics.logFollowers.increment()
                defer { BuildGateMetrics.logFollowers.decrement() }
                try await request.body.consumeWithCancellationOnInboundClose { _ in
                    var offset = start
                    var terminal = build.status.isTerminal
                    while !Task.isCancelled {
                        let snapshot = await logs.snapshot(build.id)
                        if snapshot.length > offset {
                            // What this follower has not had yet (up to `followBatchSize`) in one write: a
                            // follower that fell behind catches up in few large writes, not a write per piece.
                            var buffers: [ByteBuffer] = []
                            var batched = 0
                            while offset < snapshot.length && batched < followBatchSize {
                                let bytes = try await logs.read(
                                    build.id, from: offset,
                                    maxLength: Int(min(Int64(chunkSize), snapshot.length - offset)))
                                guard !bytes.isEmpty else { break }  // removed meanwhile (retention)
                                buffers.append(pieces.buffer(bytes, of: build.id, at: offset))
                                offset += Int64(bytes.count)
                                batched += bytes.count
                            }
                            guard !buffers.isEmpty else { break }
                            try await writer.write(contentsOf: buffers)
                            continue
                        }
                        if terminal || snapshot.isFinished { break }
                        if Task.isShuttingDownGracefully { break }
                        let changed = await logs.waitForChange(build.id, beyond: offset, timeout: .seconds(2))
                        if changed.length <= offset && !changed.isFinished {
                            // Quiet for a while: check whether the build ended without this process seeing it.
                            terminal = (try await repository.build(build.id))?.status.isTerminal ?? true
                        }
                    }
                }
                try await writer.finish(nil)
            })
    }

    /// The log as Server-Sent Events: `log` events whose `id` is the byte offset after their bytes, a `status`
    /// event at the start and on every change of the build's status, and an `end` event with the result once the
    /// build is over and every byte is sent; a comment every 15 s of quiet. A reader that reconnects with
    /// `Last-Event-ID` gets every byte after it, once.
    private func eventStream(_ build: Build, from start: Int64, request: Request) -> Response {
        var headers = ServerSentEvents.headers
        headers[.buildStatus] = build.status.rawValue
        return Response(
            status: .ok, headers: headers,
            body: ResponseBody {
                [logs, repository, pieces, chunkSize = followChunkSize, followBatchSize = followBatchSize] writer in
                BuildGateMetrics.logFollowers.increment()
                defer { BuildGateMetrics.logFollowers.decrement() }
                try await request.body.consumeWithCancellationOnInboundClose { _ in
                    try await writer.write(ServerSentEvents.retry(milliseconds: 2000))
                    var offset = start
                    var status = build.status
                    try await writer.write(Self.statusEvent(status))
                    var lastWrite = ContinuousClock.now
                    var lastStatusRead = ContinuousClock.now
                    while !Task.isCancelled {
                        // The status is read before the snapshot: a terminal one means the snapshot is the whole log.
                        let snapshot = await logs.snapshot(build.id)
                        let over = status.isTerminal || snapshot.isFinished
                        var heldBack = offset
                        if snapshot.length > offset {
                            // What this reader has not had yet, up to `followBatchSize`, as events of a piece each
                            // (framed once for every reader of these bytes: `SharedLogPieces`) in one write.
                            var events: [ByteBuffer] = []
                            var batched = 0
                            var removed = false
                            while offset < snapshot.length && batched < followBatchSize {
                                guard
                                    let (bytes, count) = try await Self.eventBytes(
                                        of: build.id, from: offset, in: snapshot, over: over, chunkSize: chunkSize,
                                        logs: logs)
                                else {
                                    removed = true
                                    break
                                }
                                if count > 0 {
                                    events.append(
                                        pieces.buffer(
                                            bytes.prefix(count), of: build.id, at: offset, as: .serverSentEvent))
                                    offset += Int64(count)
                                    batched += count
                                }
                                if count < bytes.count {
                                    // An unfinished character or line end waits for the rest.
                                    heldBack = offset + Int64(bytes.count - count)
                                    break
                                }
                            }
                            if !events.isEmpty {
                                try await writer.write(contentsOf: events)
                                lastWrite = .now
                                continue
                            }
                            if removed { break }
                        }
                        if over && offset >= snapshot.length {
                            let ended = try await repository.build(build.id)
                            try await writer.write(Self.endEvent(ended, status: status))
                            break
                        }
                        if Task.isShuttingDownGracefully { break }
                        let changed = await logs.waitForChange(build.id, beyond: heldBack, timeout: .seconds(2))
                        // The status, when the log is quiet and at most once a second while it is not.
                        if changed.length <= heldBack || ContinuousClock.now - lastStatusRead >= .seconds(1) {
                            let now = (try await repository.build(build.id))?.status ?? .failed
                            lastStatusRead = .now
                            if now != status {
                                status = now
                                try await writer.write(Self.statusEvent(status))
                                lastWrite = .now
                            }
                        }
                        if ContinuousClock.now - lastWrite >= .seconds(15) {
                            try await writer.write(ServerSentEvents.heartbeat)
                            lastWrite = .now
                        }
                    }
                }
                try await writer.finish(nil)
            })
    }

    /// The bytes of the next `log` event from `offset` (a piece, up to `chunkSize`) and how many of them can go out
    /// now (`ServerSentEvents.sendablePrefix`); nil when the log was removed meanwhile (retention). Reads stop at a
    /// piece's end, which may cut a character or a `\r\n`: then the next piece's first bytes (a character has at most
    /// 3 more) are taken too, else the same held-back bytes would be read again and again.
    private static func eventBytes(
        of id: BuildID, from offset: Int64, in snapshot: BuildLogSnapshot, over: Bool, chunkSize: Int,
        logs: any BuildLogStore
    ) async throws -> (bytes: ArraySlice<UInt8>, sendable: Int)? {
        var bytes = try await logs.read(
            id, from: offset, maxLength: Int(min(Int64(chunkSize), snapshot.length - offset)))
        guard !bytes.isEmpty else { return nil }
        var end = offset + Int64(bytes.count)
        var sendable = ServerSentEvents.sendablePrefix(of: bytes, final: over && end == snapshot.length)
        while sendable < bytes.count && end < snapshot.length {
            let more = try await logs.read(id, from: end, maxLength: Int(min(3, snapshot.length - end)))
            guard !more.isEmpty else { break }
            bytes = (Array(bytes) + more)[...]
            end += Int64(more.count)
            sendable = ServerSentEvents.sendablePrefix(of: bytes, final: over && end == snapshot.length)
        }
        return (bytes, sendable)
    }

    private static func statusEvent(_ status: BuildStatus) -> ByteBuffer {
        ServerSentEvents.event("status", data: Array(#"{"status":"\#(status.rawValue)"}"#.utf8))
    }

    private static func endEvent(_ build: Build?, status: BuildStatus) -> ByteBuffer {
        let end = BuildLogEnd(
            status: (build?.status ?? status).rawValue, reason: build?.reason?.rawValue, message: build?.message)
        let data = (try? BuildRepresentation.encoder.encode(end)) ?? Data(#"{"status":"\#(status.rawValue)"}"#.utf8)
        return ServerSentEvents.event("end", data: Array(data))
    }

    // MARK: - Parsing and headers

    private func parse(_ request: Request) throws -> Query {
        var query = Query()
        let parameters = request.uri.queryParameters
        if let unknown = parameters.first(where: { !["follow", "offset", "wait", "access_token"].contains($0.key) }) {
            throw BuildGateError(.invalidParameter, "unknown parameter '\(unknown.key)'; known: follow, offset, wait")
        }
        switch parameters["follow"].map(String.init) {
        case nil, "false", "0": break
        case "true", "1", "": query.follow = true
        case let other?: throw BuildGateError(.invalidParameter, "'follow' must be true or false, got '\(other)'")
        }
        if let text = parameters["offset"] {
            guard let value = Int64(text), value >= 0 else {
                throw BuildGateError(.invalidParameter, "'offset' must be a byte offset (0 or more)")
            }
            query.offset = value
        }
        if let text = parameters["wait"] {
            let digits = text.hasSuffix("s") ? text.dropLast() : text[...]
            guard let value = Int(digits), (0...maxWait).contains(value) else {
                throw BuildGateError(.invalidParameter, "'wait' must be whole seconds from 0 to \(maxWait)")
            }
            query.wait = value
        }
        if let range = request.headers[.range] {
            let spec = range.trimmingCharacters(in: .whitespaces)
            guard spec.hasPrefix("bytes="), !spec.contains(",") else {
                throw BuildGateError(.invalidParameter, "Range must be 'bytes=N-' or 'bytes=N-M'")
            }
            let bounds = spec.dropFirst("bytes=".count).split(separator: "-", omittingEmptySubsequences: false)
            guard bounds.count == 2, let from = Int64(bounds[0]), from >= 0 else {
                throw BuildGateError(.invalidParameter, "Range must be 'bytes=N-' or 'bytes=N-M'")
            }
            var through: Int64?
            if !bounds[1].isEmpty {
                guard let to = Int64(bounds[1]), to >= from else {
                    throw BuildGateError(.invalidParameter, "Range must be 'bytes=N-' or 'bytes=N-M' with M ≥ N")
                }
                through = to
            }
            query.range = (from, through)
        }
        return query
    }

    private static func headers(status: BuildStatus, complete: Bool, nextOffset: Int64) -> HTTPFields {
        var headers: HTTPFields = [:]
        headers[.contentType] = "text/plain; charset=utf-8"
        headers[.buildStatus] = status.rawValue
        headers[.logComplete] = complete ? "true" : "false"
        headers[.nextOffset] = String(nextOffset)
        headers[.acceptRanges] = "bytes"
        return headers
    }
}

extension HTTPField.Name {
    static let buildStatus = Self("X-Build-Status")!
    static let logComplete = Self("X-Log-Complete")!
    static let nextOffset = Self("X-Next-Offset")!
    static let idempotencyKey = Self("Idempotency-Key")!
}

/// The data of a log stream's `end` event.
private struct BuildLogEnd: Encodable {
    var status: String
    var reason: String?
    var message: String?
}
