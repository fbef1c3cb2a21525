import BuildGateCore
import ContextArchive
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// `/v1/builds`: intake, status, listing, cancellation. Logs are `BuildLogsController`'s.
struct BuildsController<Context: AuthenticatedRequestContext>: Sendable {
    struct Configuration: Sendable {
        var upload = ContextIntake.Limits()
        var defaultTimeout = 3600
        var maxTimeout = 6 * 3600
        var defaultQueueTTL = 3600
        var maxQueueTTL = 7 * 86_400
        var minFreeDiskBytes: Int64 = 1 << 30

        var bounds: BuildDraft.Bounds {
            .init(
                defaultTimeout: defaultTimeout, maxTimeout: maxTimeout, defaultQueueTTL: defaultQueueTTL,
                maxQueueTTL: maxQueueTTL)
        }
    }

    let repository: any BuildRepository
    let allowedGitHosts: [String]
    let contexts: any ContextStore
    let tokens: any AccessTokenRepository
    let limiter: TenantRateLimiter
    let admission: BuildAdmission
    let queueReasons: QueueReasons
    let freeDiskBytes: @Sendable () -> Int64?
    let settler: BuildSettler
    let intake: BuildIntake
    let configuration: Configuration

    func addRoutes(to group: RouterGroup<Context>) {
        group.post(use: create)
        group.get(use: list)
        group.get("{id}", use: show)
        group.post("{id}/cancel", use: cancel)
        group.post("{id}/rerun", use: rerun)
        group.post("{id}/log-tokens", use: createLogToken)
    }

    // MARK: - POST /v1/builds

    @Sendable func create(_ request: Request, context: Context) async throws -> Response {
        let principal = try context.require(.buildsWrite)
        // A retry with the key of an earlier build gets that build, before any limit or body is looked at.
        // Keys are per tenant: another tenant's key must never return (or reveal) this tenant's build.
        let idempotencyKey = try Self.idempotencyKey(request.headers).map { "\(principal.tenant):\($0)" }
        if let idempotencyKey, let existing = try await repository.build(idempotencyKey: idempotencyKey) {
            return try APIResponse.build(existing, status: .ok)
        }
        try await limiter.checkQueue(of: principal.tenant)
        if request.headers[.contentType]?.lowercased().hasPrefix("application/json") == true {
            return try await createFromGit(request, principal: principal, idempotencyKey: idempotencyKey)
        }
        if let raw = request.uri.query, raw.utf8.count > BuildDraft.Limits.maxQueryBytes {
            throw BuildGateError(
                .invalidParameter,
                "the query string is \(raw.utf8.count) bytes, over the limit of \(BuildDraft.Limits.maxQueryBytes)")
        }
        var query = request.uri.queryParameters.map { (name: String($0.key), value: String($0.value)) }
        let storedDigest = query.first { $0.name == "context" }?.value
        query.removeAll { $0.name == "context" }
        let draft = try BuildDraft(query: query)
        let (buildRequest, scheduling) = try draft.validated(configuration.bounds)
        try await admission.check(buildRequest, tenant: principal.tenant)
        if let storedDigest {
            // A context this tenant uploaded before: nothing is sent again.
            let stored = try await storedContext(storedDigest, tenant: principal.tenant)
            let hasBody: Bool
            if let length = request.headers[.contentLength].flatMap({ Int($0) }) {
                hasBody = length > 0
            } else {
                do { hasBody = try await request.body.collect(upTo: 0).readableBytes > 0 } catch is NIOTooManyBytesError
                {
                    hasBody = true
                }
            }
            guard !hasBody else {
                throw BuildGateError(.invalidParameter, "a build of a stored context (context=) has no body")
            }
            let now = Date()
            return try await store(
                Build(
                    id: .generate(), tenant: principal.tenant, request: buildRequest, context: stored, createdAt: now,
                    idempotencyKey: idempotencyKey,
                    queueExpiresAt: now.addingTimeInterval(TimeInterval(scheduling.queueTTL)),
                    runKey: scheduling.storedRunKey(tenant: principal.tenant, request: buildRequest),
                    runPolicy: scheduling.runPolicy))
        }
        if let length = request.headers[.contentLength].flatMap({ Int64($0) }),
            length > configuration.upload.maxContextSize
        {
            throw BuildGateError(
                .contextTooLarge,
                "the context (\(length) bytes) is larger than the limit of \(configuration.upload.maxContextSize) bytes"
            )
        }

        // Refused before a byte is read: the upload would need the room, and a full disk fails every build.
        let incoming = request.headers[.contentLength].flatMap { Int64($0) } ?? 0
        if let free = freeDiskBytes(), free - incoming < configuration.minFreeDiskBytes {
            throw BuildGateError(
                .insufficientStorage,
                "the gateway's data directory is short of space (\(free >> 20) MiB free, \(configuration.minFreeDiskBytes >> 20) MiB kept free); retry later"
            )
        }
        let upload = ContextIntake(store: contexts, limits: configuration.upload)
        BuildGateMetrics.activeUploads.increment()
        defer { BuildGateMetrics.activeUploads.decrement() }
        let buildContext = try await upload.receive(request.body, dockerfile: buildRequest.dockerfile)
        BuildGateMetrics.uploadedBytes.increment(by: buildContext.size)
        let now = Date()
        let build = Build(
            id: .generate(), tenant: principal.tenant, request: buildRequest, context: buildContext, createdAt: now,
            idempotencyKey: idempotencyKey, queueExpiresAt: now.addingTimeInterval(TimeInterval(scheduling.queueTTL)),
            runKey: scheduling.storedRunKey(tenant: principal.tenant, request: buildRequest),
            runPolicy: scheduling.runPolicy)
        return try await store(build)
    }

    /// The context `text` (`sha256:<hex>`) names, if this tenant stored it and it is still kept; kept on for a new
    /// build from now on.
    private func storedContext(_ text: String, tenant: TenantID) async throws -> BuildContext {
        guard let digest = ContextDigest(text) else {
            throw BuildGateError(.invalidParameter, "'context' must be sha256:<64 lowercase hex digits>")
        }
        guard let stored = try await repository.storedContext(digest, tenant: tenant), contexts.retain(stored) else {
            throw BuildGateError(.notFound, "no context \(digest) stored by this tenant (upload it)")
        }
        return stored
    }

    private func store(_ build: Build, origin: String? = nil) async throws -> Response {
        switch try await intake.queue(build, origin: origin) {
        case .existing(let earlier):
            return try APIResponse.build(earlier, status: .ok)
        case .created(let build):
            return try APIResponse.build(build, queue: try await queueInfo(build), status: .accepted)
        }
    }

    /// `POST /v1/builds` with `Content-Type: application/json`: a build from a git commit, fetched by the
    /// dispatcher. The fields mirror the upload's query parameters.
    private func createFromGit(_ request: Request, principal: Principal, idempotencyKey: String?) async throws
        -> Response
    {
        let bytes = try await request.body.collect(upTo: 64 * 1024)
        let body: GitBuildBody
        do {
            body = try JSONDecoder().decode(GitBuildBody.self, from: Data(bytes.readableBytesView))
        } catch {
            throw BuildGateError(
                .invalidParameter,
                "the JSON body must be {\"source\":{\"git\":{\"url\",\"ref\",\"commit\"}},\"images\":[…],…}")
        }
        // The same checks as the upload's query parameters.
        let (buildRequest, scheduling) = try body.draft.validated(configuration.bounds)
        try await admission.check(buildRequest, tenant: principal.tenant)
        let git = body.source.git
        let source = try GitSource(url: git.url, ref: git.ref, commit: git.commit)
        guard GitSource.isHostAllowed(source.url, hosts: allowedGitHosts) else {
            throw BuildGateError(.invalidParameter, "git host of \(GitSource.redacted(source.url)) is not allowed here")
        }
        let now = Date()
        return try await store(
            Build(
                id: .generate(), tenant: principal.tenant, request: buildRequest, context: nil, gitSource: source,
                createdAt: now, idempotencyKey: idempotencyKey,
                queueExpiresAt: now.addingTimeInterval(TimeInterval(scheduling.queueTTL)),
                runKey: scheduling.storedRunKey(tenant: principal.tenant, request: buildRequest),
                runPolicy: scheduling.runPolicy))
    }

    private static func idempotencyKey(_ headers: HTTPFields) throws -> String? {
        guard let key = headers[.idempotencyKey] else { return nil }
        guard (1...255).contains(key.utf8.count), key.utf8.allSatisfy({ (0x21...0x7e).contains($0) }) else {
            throw BuildGateError(.invalidParameter, "Idempotency-Key must be 1 to 255 visible ASCII characters")
        }
        return key
    }

    // MARK: - GET /v1/builds/{id}

    @Sendable func show(_ request: Request, context: Context) async throws -> Response {
        let build = try await context.build(in: repository, scope: .buildsRead)
        return try APIResponse.build(build, queue: try await queueInfo(build), status: .ok)
    }

    // MARK: - GET /v1/builds

    @Sendable func list(_ request: Request, context: Context) async throws -> Response {
        let principal = try context.require(.buildsRead)
        let parameters = request.uri.queryParameters
        if let unknown = parameters.first(where: { !["status", "limit", "cursor"].contains($0.key) }) {
            throw BuildGateError(.invalidParameter, "unknown parameter '\(unknown.key)'; known: cursor, limit, status")
        }
        var status: BuildStatus?
        if let text = parameters["status"] {
            guard let value = BuildStatus(rawValue: String(text)) else {
                throw BuildGateError(
                    .invalidParameter,
                    "'status' must be one of \(BuildStatus.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            status = value
        }
        var limit = 50
        if let text = parameters["limit"] {
            guard let value = Int(text), (1...200).contains(value) else {
                throw BuildGateError(.invalidParameter, "'limit' must be from 1 to 200")
            }
            limit = value
        }
        var cursor: BuildID?
        if let text = parameters["cursor"] {
            guard let id = BuildID(String(text)) else {
                throw BuildGateError(.invalidParameter, "'cursor' is not valid")
            }
            cursor = id
        }
        let builds = try await repository.list(
            tenant: principal.tenant, status: status, limit: limit + 1, after: cursor)
        let page = BuildPage(
            builds: builds.prefix(limit).map { BuildRepresentation($0) },
            nextCursor: builds.count > limit ? builds[limit - 1].id.rawValue : nil)
        return try APIResponse.json(page, status: .ok)
    }

    // MARK: - POST /v1/builds/{id}/rerun

    /// A new build of the same stored context (or git commit) with the same parameters, trigger and run policy.
    @Sendable func rerun(_ request: Request, context: Context) async throws -> Response {
        let original = try await context.build(in: repository, scope: .buildsWrite)
        try await limiter.checkQueue(of: original.tenant)
        try await admission.check(original.request, tenant: original.tenant)
        if let stored = original.context, !contexts.retain(stored) {
            throw BuildGateError(
                .conflict, "the context of build \(original.id) is no longer kept (retention): upload it again")
        }
        let now = Date()
        let queueTTL =
            original.queueExpiresAt.map { $0.timeIntervalSince(original.createdAt) }
            ?? TimeInterval(configuration.defaultQueueTTL)
        let build = Build(
            id: .generate(), tenant: original.tenant, request: original.request, context: original.context,
            gitSource: original.gitSource, triggerID: original.triggerID, createdAt: now,
            queueExpiresAt: now.addingTimeInterval(queueTTL), runKey: original.runKey, runPolicy: original.runPolicy)
        return try await store(build, origin: "rerun of \(original.id)")
    }

    // MARK: - POST /v1/builds/{id}/cancel

    @Sendable func cancel(_ request: Request, context: Context) async throws -> Response {
        let build = try await context.build(in: repository, scope: .buildsWrite)
        if build.status.isTerminal {
            if build.status == .cancelled { return try APIResponse.build(build, status: .ok) }
            throw BuildGateError(.conflict, "build \(build.id) already ended (\(build.status.rawValue))")
        }
        guard let after = try await settler.cancel(build, in: repository, at: Date()) else {
            throw BuildGateError(.notFound, "no build \(build.id)")
        }
        if after.status == .cancelled { return try APIResponse.build(after, status: .ok) }
        if after.status.isTerminal {
            throw BuildGateError(.conflict, "build \(after.id) already ended (\(after.status.rawValue))")
        }
        return try APIResponse.build(after, status: .accepted)
    }

    // MARK: - POST /v1/builds/{id}/log-tokens

    /// A short-lived token that can read only this build's status and logs, for dashboards (also accepted as
    /// `?access_token=`, since browsers' EventSource cannot send headers).
    ///
    /// Only a token with a build scope of its own may mint one (a log-read token may not mint another), and the new
    /// token never outlives its minter: it expires no later, and stops working when the minter is revoked.
    @Sendable func createLogToken(_ request: Request, context: Context) async throws -> Response {
        let build = try await context.build(in: repository, scope: .buildsRead)
        guard let minter = context.principal, minter.mayMintLogTokens, let minterID = minter.tokenID else {
            throw BuildGateError(
                .forbidden,
                "log-read tokens are minted with an API token that has 'builds:read', not with a log-read token")
        }
        var ttl = 3600
        if let text = request.uri.queryParameters["ttl"] {
            guard let seconds = Int(text), (60...86_400).contains(seconds) else {
                throw BuildGateError(.invalidParameter, "'ttl' must be seconds from 60 to 86400")
            }
            ttl = seconds
        }
        let now = Date()
        let expiresAt = min(now.addingTimeInterval(Double(ttl)), minter.expiresAt ?? .distantFuture)
        let (token, record) = try await tokens.createToken(
            tenant: build.tenant, name: "log-read \(build.id)", scopes: [.logsRead], buildID: build.id,
            expiresAt: expiresAt, parentID: minterID, at: now)
        return try APIResponse.json(
            LogTokenRepresentation(token: token, buildId: build.id.rawValue, expiresAt: record.expiresAt ?? now),
            status: .created)
    }

    private func queueInfo(_ build: Build) async throws -> BuildRepresentation.Queue? {
        guard build.status == .queued, let position = try await repository.queuePosition(of: build.id) else {
            return nil
        }
        return .init(position: position, reason: queueReasons.reason(for: build.id))
    }
}

/// One page of `GET /v1/builds`.
struct BuildPage: Encodable {
    var builds: [BuildRepresentation]
    /// Pass as `cursor` to get the next (older) page; absent on the last page.
    var nextCursor: String?
}

/// The answer of `POST /v1/builds/{id}/log-tokens`.
struct LogTokenRepresentation: Encodable {
    var token: String
    var buildId: String
    var expiresAt: Date
}

/// The JSON body of `POST /v1/builds` for a build from git.
struct GitBuildBody: Decodable {
    struct Source: Decodable {
        struct Git: Decodable { var url: String; var ref: String?; var commit: String? }
        var git: Git
    }
    var source: Source
    var images: [String]
    var dockerfile: String?
    var target: String?
    var buildArgs: [String: String]?
    var labels: [String: String]?
    var platform: String?
    var noCache: Bool?
    var timeout: Int?
    var secrets: [String]?
    var cacheFrom: String?
    var cacheTo: String?
    var queueTTL: Int?
    var runPolicy: String?
    var runKey: String?

    /// The build it asks for, to be checked as an upload's query parameters are.
    var draft: BuildDraft {
        var draft = BuildDraft()
        draft.images = images
        draft.dockerfile = dockerfile
        draft.target = target
        draft.buildArgs = buildArgs ?? [:]
        draft.labels = labels ?? [:]
        draft.platform = platform
        draft.noCache = noCache ?? false
        draft.timeout = timeout
        draft.secrets = secrets ?? []
        draft.cacheFrom = cacheFrom
        draft.cacheTo = cacheTo
        draft.queueTTL = queueTTL
        draft.runPolicy = runPolicy
        draft.runKey = runKey
        return draft
    }
}
