import BuildGateAPI
import BuildGateCore
import Foundation
import HTTPTypes
import Hummingbird
import Mustache
import NIOCore

/// The dashboard under `/ui/`: server-rendered pages (swift-mustache templates) for people, with a little plain
/// JavaScript for live updates (`/v1/events`, a build's log as Server-Sent Events). Pages read without JavaScript.
///
/// The dashboard is a client of the API, in process: every page and action is an API call made with the signed-in
/// person's own token, so a session sees and does exactly what that token's tenant and scopes allow (another
/// tenant's build is a 404 here as there). Sign-in takes a pasted API token and keeps it in a sealed `HttpOnly`,
/// `SameSite=Strict` cookie (`SessionCookie`); forms that change anything carry the session's CSRF token.
package struct Dashboard<Context: AuthenticatedRequestContext>: Sendable {
    /// The API's responder (the router before the dashboard's routes were added).
    private let api: any HTTPResponder<Context>
    private let sessions: SessionCookie
    private let library: MustacheLibrary
    private let assets: [String: (type: String, body: ByteBuffer)]

    package init(api: any HTTPResponder<Context>, sessions: SessionCookie) throws {
        self.api = api
        self.sessions = sessions
        guard let resources = Bundle.module.url(forResource: "Resources", withExtension: nil)?.path else {
            throw BuildGateError(.internalError, "the dashboard's templates are not installed beside the binary")
        }
        var library = MustacheLibrary()
        var assets: [String: (type: String, body: ByteBuffer)] = [:]
        for file in try FileManager.default.contentsOfDirectory(atPath: resources) {
            let text = try String(contentsOfFile: "\(resources)/\(file)", encoding: .utf8)
            if file.hasSuffix(".mustache") {
                try library.register(text, named: String(file.dropLast(".mustache".count)))
            } else if let type = ["css": "text/css", "js": "text/javascript"][(file as NSString).pathExtension] {
                assets[file] = ("\(type); charset=utf-8", ByteBuffer(string: text))
            }
        }
        self.library = library
        self.assets = assets
    }

    package func addRoutes(to group: RouterGroup<Context>) {
        group.get { _, _ in Response.redirect(to: "/ui/builds") }
        group.get("sign-in") { request, _ in
            // Only a present value may reach the template: an absent one wrapped as `Any` still renders its section.
            try page("sign-in", request.uri.queryParameters["error"].map { ["error": String($0)] } ?? [:])
        }
        group.post("sign-in", use: signIn)
        group.post("sign-out", use: signOut)
        group.get("builds", use: builds)
        group.get("builds/{id}", use: build)
        group.post("builds/{id}/cancel") { request, context in try await act("cancel", request, context) }
        group.post("builds/{id}/rerun") { request, context in try await act("rerun", request, context) }
        group.get("builders", use: builders)
        group.get("triggers", use: triggers)
        group.get("assets/{file}") { _, context in
            guard let asset = assets[try context.parameters.require("file")] else {
                throw HTTPError(.notFound)
            }
            return Response(
                status: .ok, headers: [.contentType: asset.type, .cacheControl: "max-age=300"],
                body: .init(byteBuffer: asset.body))
        }
    }

    // MARK: - Sign-in

    @Sendable func signIn(_ request: Request, context: Context) async throws -> Response {
        let form = try await Self.form(request)
        let token = (form["token"] ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        let session = sessions.start(token: token, now: Date())
        // The token is checked the way every page will use it: by reading the tenant's builds.
        let (status, _) = try await call(.get, "/v1/builds?limit=1", session: session, context: context)
        guard status == .ok else {
            let reason =
                status == .forbidden ? "that token cannot read builds" : "that token is unknown, revoked or expired"
            return Response.redirect(to: "/ui/sign-in?error=\(URLQuery.percentEncoded(reason))", type: .found)
        }
        var response = Response.redirect(to: "/ui/builds", type: .found)
        response.headers[.setCookie] = try sessions.setCookie(session)
        return response
    }

    @Sendable func signOut(_ request: Request, context: Context) async throws -> Response {
        _ = try await session(request, checkingCSRF: true)
        var response = Response.redirect(to: "/ui/sign-in", type: .found)
        response.headers[.setCookie] = sessions.clearCookie
        return response
    }

    // MARK: - Pages

    @Sendable func builds(_ request: Request, context: Context) async throws -> Response {
        guard let session = try await session(request) else { return Self.toSignIn }
        let status = request.uri.queryParameters["status"].map(String.init).flatMap { $0.isEmpty ? nil : $0 }
        let search = (request.uri.queryParameters["q"].map(String.init) ?? "").trimmingCharacters(in: .whitespaces)
        var query = [("limit", "200")]
        if let status { query.append(("status", status)) }
        let (code, body) = try await call(
            .get, "/v1/builds" + URLQuery.encode(query), session: session, context: context)
        guard code == .ok else { return try errorPage(code, body, session: session) }
        let list = Self.items(body, under: "builds")
        let rows = list.filter { build in
            search.isEmpty
                || (build["images"] as? [[String: Any]] ?? []).contains {
                    ($0["reference"] as? String)?.localizedCaseInsensitiveContains(search) == true
                }
        }.prefix(50).map(Self.row)
        let statuses = ["queued", "starting", "running", "succeeded", "failed", "cancelled", "timedOut", "expired"].map
        {
            ["name": $0, "selected": $0 == status]
        }
        return try page(
            "builds",
            ["builds": Array(rows), "statuses": statuses, "search": search, "empty": rows.isEmpty, "nav": "builds"],
            session: session)
    }

    @Sendable func build(_ request: Request, context: Context) async throws -> Response {
        guard let session = try await session(request) else { return Self.toSignIn }
        let id = try context.parameters.require("id")
        let (code, body) = try await call(
            .get, "/v1/builds/\(URLQuery.percentEncoded(id))", session: session, context: context)
        guard code == .ok, var build = Self.json(body) as? [String: Any]
        else {
            return try errorPage(code, body, session: session)
        }
        // The page carries the log's first MiB; a longer one is shown as far as that, with the rest a download
        // away (a build printing gigabytes must not make a page of them).
        let (_, log, cut) = try await call(
            .get, "/v1/builds/\(URLQuery.percentEncoded(id))/logs", session: session, context: context,
            keepingAtMost: Self.logShown)
        let text = String(buffer: log)
        build = Self.row(build)
        let steps = (build["steps"] as? [[String: Any]] ?? []).map(Self.step)
        return try page(
            "build",
            [
                "build": build, "steps": steps, "hasSteps": !steps.isEmpty,
                "logHTML": AnsiHTML.lines(text), "logOffset": log.readableBytes,
                "logCut": cut,
                "parameters": Self.parameters(build), "nav": "builds",
            ], session: session)
    }

    @Sendable func builders(_ request: Request, context: Context) async throws -> Response {
        try await listPage("builders", request, context) { builder in
            var row = builder
            row["platformList"] = (builder["platforms"] as? [String] ?? []).joined(separator: ", ")
            return row
        }
    }

    @Sendable func triggers(_ request: Request, context: Context) async throws -> Response {
        try await listPage("triggers", request, context) { trigger in
            var row = trigger
            for key in ["branches", "tags", "events", "images"] {
                row["\(key)List"] = (trigger[key] as? [String] ?? []).joined(separator: ", ")
            }
            return row
        }
    }

    /// The page `name` listing what `GET /v1/<name>` answers under the key `name`, each item shaped by `row`.
    private func listPage(
        _ name: String, _ request: Request, _ context: Context, row: ([String: Any]) -> [String: Any]
    ) async throws -> Response {
        guard let session = try await session(request) else { return Self.toSignIn }
        let (code, body) = try await call(.get, "/v1/\(name)", session: session, context: context)
        guard code == .ok else { return try errorPage(code, body, session: session) }
        let rows = Self.items(body, under: name).map(row)
        return try page(name, [name: rows, "empty": rows.isEmpty, "nav": name], session: session)
    }

    /// An API answer's JSON without its nulls: a template section must not open for an absent value (JSON's null,
    /// like Swift's nil wrapped in `Any`, is a value to the renderer).
    static func json(_ body: ByteBuffer) -> Any? {
        func clean(_ value: Any) -> Any? {
            switch value {
            case is NSNull: nil
            case let object as [String: Any]: object.compactMapValues(clean)
            case let list as [Any]: list.compactMap(clean)
            default: value
            }
        }
        return (try? JSONSerialization.jsonObject(with: Data(buffer: body))).flatMap(clean)
    }

    /// The list of objects under `key` in a JSON answer.
    private static func items(_ body: ByteBuffer, under key: String) -> [[String: Any]] {
        (json(body) as? [String: Any])?[key] as? [[String: Any]]
            ?? []
    }

    /// Cancel or rerun, from the build page's forms; back to the build (the new one, for a rerun).
    private func act(_ action: String, _ request: Request, _ context: Context) async throws -> Response {
        guard let session = try await session(request, checkingCSRF: true) else { return Self.toSignIn }
        let id = try context.parameters.require("id")
        let (code, body) = try await call(
            .post, "/v1/builds/\(URLQuery.percentEncoded(id))/\(action)", session: session, context: context)
        guard code.code < 300 else { return try errorPage(code, body, session: session) }
        let target =
            (Self.json(body) as? [String: Any])?["id"] as? String ?? id
        return Response.redirect(to: "/ui/builds/\(URLQuery.percentEncoded(target))", type: .found)
    }

    // MARK: - Plumbing

    private static var toSignIn: Response { Response.redirect(to: "/ui/sign-in", type: .found) }

    /// The request's session (nil: not signed in). With `checkingCSRF`, a form's `csrf` field must match it: a POST
    /// without it is refused 403, whatever its cookie.
    private func session(_ request: Request, checkingCSRF: Bool = false) async throws -> SessionCookie.Session? {
        let session = sessions.session(in: request.headers, now: Date())
        if checkingCSRF {
            let form = try await Self.form(request)
            guard let session, let given = form["csrf"],
                Data(given.utf8).count == Data(session.csrf.utf8).count,
                zip(given.utf8, session.csrf.utf8).reduce(0, { $0 | ($1.0 ^ $1.1) }) == 0
            else {
                throw BuildGateError(.forbidden, "the form's CSRF token does not match this session; reload the page")
            }
        }
        return session
    }

    /// The most log bytes a build page carries.
    static var logShown: Int { 1 << 20 }

    /// Calls the API in process as `session`'s token.
    private func call(
        _ method: HTTPRequest.Method, _ path: String, session: SessionCookie.Session, context: Context
    ) async throws -> (HTTPResponse.Status, ByteBuffer) {
        let (status, body, _) = try await call(
            method, path, session: session, context: context, keepingAtMost: 16 << 20)
        return (status, body)
    }

    /// The same, keeping at most `limit` bytes of the answer's body (the handler is stopped there); the third value
    /// says whether the body was longer.
    private func call(
        _ method: HTTPRequest.Method, _ path: String, session: SessionCookie.Session, context: Context,
        keepingAtMost limit: Int
    ) async throws -> (HTTPResponse.Status, ByteBuffer, Bool) {
        var head = HTTPRequest(method: method, scheme: "http", authority: "buildgate", path: path)
        head.headerFields[.authorization] = "Bearer \(session.token)"
        let request = Request(head: head, body: .init(buffer: ByteBuffer()))
        var apiContext = context
        apiContext.principal = nil
        let response: Response
        do {
            response = try await api.respond(to: request, context: apiContext)
        } catch let error as any HTTPResponseError {
            response = try error.response(from: request, context: apiContext)
        }
        let collector = BodyCollector(limit: limit)
        do {
            try await response.body.write(collector.writer)
        } catch is BodyCollector.Full {
            return (response.status, collector.buffer.value, true)
        }
        return (response.status, collector.buffer.value, false)
    }

    private func page(_ template: String, _ values: [String: Any], session: SessionCookie.Session? = nil) throws
        -> Response
    {
        var values = values
        values["signedIn"] = session != nil
        values["csrf"] = session?.csrf ?? ""
        if let nav = values["nav"] as? String { values["nav_\(nav)"] = true }
        guard let html = library.render(values, withTemplate: template) else {
            throw BuildGateError(.internalError, "no template \(template)")
        }
        return Response(
            status: .ok,
            headers: [
                .contentType: "text/html; charset=utf-8", .cacheControl: "no-store",
                HTTPField.Name("Content-Security-Policy")!:
                    "default-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
            ],
            body: .init(byteBuffer: ByteBuffer(string: html)))
    }

    /// The API's refusal as a page with its status (a 404 stays a 404).
    private func errorPage(_ status: HTTPResponse.Status, _ body: ByteBuffer, session: SessionCookie.Session) throws
        -> Response
    {
        if status == .unauthorized { return Self.toSignIn }
        let error =
            (Self.json(body) as? [String: Any])?["error"] as? [String: Any]
        var response = try page(
            "error",
            ["status": status.code].merging(error ?? [:]) { first, _ in first },
            session: session)
        response.status = status
        return response
    }

    /// A build's JSON with what the templates show besides (duration, a status class, digests).
    private static func row(_ build: [String: Any]) -> [String: Any] {
        var row = build
        let status = build["status"] as? String ?? ""
        row["terminal"] = ["succeeded", "failed", "cancelled", "timedOut", "expired"].contains(status)
        row["imageList"] = (build["images"] as? [[String: Any]] ?? []).compactMap { $0["reference"] as? String }
            .joined(separator: " ")
        row["duration"] = duration(from: build["startedAt"] as? String, to: build["finishedAt"] as? String)
        return row
    }

    private static func step(_ step: [String: Any]) -> [String: Any] {
        var row = step
        row["duration"] = duration(from: step["startedAt"] as? String, to: step["completedAt"] as? String)
        return row
    }

    private static func parameters(_ build: [String: Any]) -> [[String: String]] {
        guard let parameters = build["parameters"] as? [String: Any] else { return [] }
        return parameters.keys.sorted().compactMap { key in
            let value = parameters[key]
            let text: String
            switch value {
            case let list as [Any]: text = list.map { "\($0)" }.joined(separator: ", ")
            case let map as [String: Any]:
                text = map.keys.sorted().map { "\($0)=\(map[$0] ?? "")" }.joined(separator: ", ")
            case let flag as Bool: text = flag ? "yes" : "no"
            case nil, is NSNull: return nil
            default: text = "\(value ?? "")"
            }
            return text.isEmpty ? nil : ["name": key, "value": text]
        }
    }

    private static func duration(from start: String?, to end: String?) -> String? {
        guard let from = APITimestamp.date(start), let to = APITimestamp.date(end) else { return nil }
        let seconds = to.timeIntervalSince(from)
        return seconds < 60
            ? String(format: "%.1fs", seconds) : String(format: "%dm %02ds", Int(seconds) / 60, Int(seconds) % 60)
    }

    /// A form body (`application/x-www-form-urlencoded`, at most 16 KiB).
    private static func form(_ request: Request) async throws -> [String: String] {
        let body = try await request.body.collect(upTo: 16 * 1024)
        var fields: [String: String] = [:]
        for pair in String(buffer: body).split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1).map {
                $0.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? ""
            }
            if parts.count == 2 { fields[parts[0]] = parts[1] }
        }
        return fields
    }
}

/// Collects a response body written by the API's handlers, up to `limit` bytes: past it the handler's next write
/// throws `Full`, which stops it (a log of gigabytes is not read to be thrown away).
private struct BodyCollector {
    struct Full: Error {}

    final class Buffer: @unchecked Sendable {
        var value = ByteBuffer()
    }
    let buffer = Buffer()
    let limit: Int

    struct Writer: ResponseBodyWriter {
        let buffer: Buffer
        let limit: Int
        mutating func write(_ piece: ByteBuffer) async throws {
            let room = limit - buffer.value.readableBytes
            var kept = piece.getSlice(at: piece.readerIndex, length: min(room, piece.readableBytes)) ?? ByteBuffer()
            buffer.value.writeBuffer(&kept)
            if piece.readableBytes > room { throw Full() }
        }
        consuming func finish(_ trailingHeaders: HTTPFields?) async throws {}
    }

    var writer: Writer { Writer(buffer: buffer, limit: limit) }
}

extension Data {
    fileprivate init(buffer: ByteBuffer) {
        self.init(buffer.readableBytesView)
    }
}
