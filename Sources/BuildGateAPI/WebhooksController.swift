import BuildGateCore
import Crypto
import Foundation
import ForgeWebhooks
import HTTPTypes
import Hummingbird

/// `POST /v1/webhooks/{forge}` and `/v1/webhooks/{forge}/{triggerId}`: signed deliveries from git forges.
///
/// Order matters: cap the body, verify the signature on the raw bytes (fail closed, 401 without detail), parse,
/// deduplicate on the forge's delivery id, then queue a build and answer at once. Fetching the code is the
/// dispatcher's job, so the forge gets its answer well within its 10 s limit. Outcomes: 202 with the build id,
/// 200 with a reason for valid events that build nothing, 401 for bad signatures, 400 for malformed payloads,
/// 413 for oversized bodies. A redelivery gets the stored answer of the first delivery.
struct WebhooksController<Context: AuthenticatedRequestContext>: Sendable {
    let triggers: any TriggerRepository
    let repository: any BuildRepository
    let logs: any BuildLogStore
    let limits: BuildGateAPILimits
    let limiter: TenantRateLimiter
    let observer: any BuildObserver
    let onQueued: @Sendable () -> Void

    func addRoutes(to group: RouterGroup<Context>) {
        group.post("{forge}", use: receive)
        group.post("{forge}/{trigger}", use: receive)
    }

    @Sendable func receive(_ request: Request, context: Context) async throws -> Response {
        guard let forge = Forge(rawValue: try context.parameters.require("forge")) else {
            throw BuildGateError(.notFound, "no such forge; use github, gitlab, gitea or bitbucket")
        }
        if let length = request.headers[.contentLength].flatMap(Int.init), length > limits.maxWebhookBody {
            throw BuildGateError(.contextTooLarge, "webhook bodies are limited to \(limits.maxWebhookBody) bytes")
        }
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: limits.maxWebhookBody)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw BuildGateError(.contextTooLarge, "webhook bodies are limited to \(limits.maxWebhookBody) bytes")
        }
        let delivery = WebhookDelivery(
            headers: request.headers.map { (name: $0.name.rawName, value: $0.value) }, body: Array(body.readableBytesView))

        let candidates: [(trigger: Trigger, secret: String)]
        if let id = context.parameters.get("trigger") {
            candidates = try await triggers.triggerWithSecret(id).map { [$0] }?.filter { $0.trigger.forge == forge.rawValue } ?? []
        } else {
            candidates = try await triggers.triggersWithSecrets(forge: forge.rawValue)
        }
        // The first trigger whose secret verifies the raw body; every check is constant-time.
        guard let trigger = candidates.first(where: { candidate in
            (try? WebhookSignature.verify(delivery, forge: forge, secret: candidate.secret)) != nil
        })?.trigger else {
            BuildGateMetrics.webhookDelivery(forge: forge.rawValue, outcome: "rejected")
            throw BuildGateError(.unauthorized, "the delivery is not signed by a known trigger")
        }

        let parsed: ForgeWebhookParser.Parsed
        do {
            parsed = try ForgeWebhookParser.parse(delivery, forge: forge)
        } catch .malformed(let message) {
            throw BuildGateError(.invalidParameter, message)
        } catch {
            throw BuildGateError(.unauthorized, "the delivery is not signed by a known trigger")
        }
        // Without a delivery id the body's digest stands in: the same bytes are the same delivery.
        let deliveryID = parsed.deliveryID ?? "sha256:" + SHA256.hash(data: delivery.body).hexString

        let buildID = BuildID.generate()
        var build: Build?
        var answer = WebhookAnswer(status: "ignored", reason: nil, buildId: nil, trigger: trigger.id)
        switch Self.decide(parsed.event, for: trigger, buildID: buildID, defaultTimeout: limits.defaultBuildTimeout) {
        case .skip(let reason):
            answer.reason = reason
        case .build(_, let source) where !GitSource.isHostAllowed(source.url, hosts: limits.allowedGitHosts):
            answer.reason = "git host not allowed"
        case .build(let buildRequest, let source):
            try await limiter.checkQueue(of: trigger.tenant)
            let now = Date()
            let policy = trigger.settings.runPolicy ?? .parallel
            build = Build(
                id: buildID, tenant: trigger.tenant, request: buildRequest, context: nil, gitSource: source,
                triggerID: trigger.id, createdAt: now,
                queueExpiresAt: now.addingTimeInterval(TimeInterval(limits.defaultQueueTTL)),
                // Run policies apply per trigger and ref: a newer push of the branch supersedes or follows the older.
                runKey: policy == .parallel ? nil : "\(trigger.tenant)/trigger:\(trigger.id):\(source.ref ?? "")",
                runPolicy: policy)
            answer = WebhookAnswer(status: "queued", reason: nil, buildId: buildID.rawValue, trigger: trigger.id)
        }
        let statusCode = build == nil ? 200 : 202
        let json = String(decoding: try BuildRepresentation.encoder.encode(answer), as: UTF8.self)
        let stored = try await triggers.recordDelivery(
            triggerID: trigger.id, deliveryID: deliveryID, build: build, statusCode: statusCode, response: json, at: Date())
        if !stored.isRedelivery, let build {
            try await logs.appendGatewayLine(
                "\(BuildsController<Context>.queuedLine(build)) (trigger \(trigger.id), delivery \(deliveryID))", to: build.id)
            await observer.buildChanged(build)
            try await BuildsController<Context>.supersedeOlder(than: build, repository: repository, logs: logs, observer: observer)
            onQueued()
        }
        var headers: HTTPFields = [.contentType: "application/json"]
        if stored.isRedelivery { headers[HTTPField.Name("X-BuildGate-Redelivery")!] = "true" }
        BuildGateMetrics.webhookDelivery(
            forge: forge.rawValue, outcome: stored.isRedelivery ? "redelivery" : build == nil ? "ignored" : "queued")
        return Response(
            status: HTTPResponse.Status(code: stored.statusCode), headers: headers,
            body: .init(byteBuffer: ByteBuffer(string: stored.response)))
    }

    /// What a forge event means for `trigger`: the forge-neutral event planned by `TriggerPlanner`, or the reason
    /// the forge gave nothing to build (ping, deletion…).
    static func decide(
        _ event: ForgeEvent, for trigger: Trigger, buildID: BuildID, defaultTimeout: Int
    ) -> TriggerPlanner.Decision {
        let source: SourceEvent
        switch event {
        case .ignored(let reason):
            return .skip(reason: reason)
        case .push(let push):
            let kind: SourceEvent.Kind = if let tag = push.tag { .tag(tag) } else { .branch(push.branch ?? push.ref) }
            source = SourceEvent(
                kind: kind, repository: push.repository.fullName, cloneURL: push.repository.cloneURL, ref: push.ref,
                commit: push.commit, headCommitMessage: push.headCommitMessage)
        case .pullRequest(let pull):
            source = SourceEvent(
                kind: .pullRequest(number: pull.number, sourceBranch: pull.sourceBranch), repository: pull.repository.fullName,
                cloneURL: pull.repository.cloneURL, ref: pull.ref, commit: pull.commit, headCommitMessage: nil)
        }
        return TriggerPlanner.plan(source, for: trigger, buildID: buildID, defaultTimeout: defaultTimeout)
    }
}

/// The JSON a forge gets back.
struct WebhookAnswer: Encodable {
    /// `queued` or `ignored`.
    var status: String
    var reason: String?
    var buildId: String?
    var trigger: String
}
