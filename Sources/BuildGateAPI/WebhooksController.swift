import BuildGateCore
import Crypto
import ForgeWebhooks
import Foundation
import HTTPTypes
import Hummingbird

/// `POST /v1/webhooks/{forge}` and `/v1/webhooks/{forge}/{triggerId}`: signed deliveries from git forges.
///
/// Order matters: cap the body, verify the signature on the raw bytes (fail closed, 401 without detail), parse,
/// deduplicate on the forge's delivery id, then queue a build and answer at once. Fetching the code is the
/// dispatcher's job, so the forge gets its answer well within its 10 s limit. Outcomes: 202 with the build id,
/// 200 with a reason for valid events that build nothing (or with the build already building that ref and commit,
/// for a replayed push), 401 for bad signatures, 400 for malformed payloads, 413 for oversized bodies. A redelivery
/// gets the stored answer of the first delivery. Every trigger whose secret verifies the delivery is tried.
struct WebhooksController<Context: AuthenticatedRequestContext>: Sendable {
    let triggers: any TriggerRepository
    let limits: BuildGateAPILimits
    let limiter: TenantRateLimiter
    let intake: BuildIntake

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
        let body = try await request.body.collect(upTo: limits.maxWebhookBody)
        let delivery = WebhookDelivery(
            headers: request.headers.map { (name: $0.name.rawName, value: $0.value) },
            body: Array(body.readableBytesView))

        let candidates: [(trigger: Trigger, secret: String)]
        if let id = context.parameters.get("trigger") {
            candidates =
                try await triggers.triggerWithSecret(id).map { [$0] }?.filter { $0.trigger.forge == forge.rawValue }
                ?? []
        } else {
            candidates = try await triggers.triggersWithSecrets(forge: forge.rawValue)
        }
        // Every trigger whose secret verifies the raw body (two triggers of one repository may share a webhook);
        // every check is constant-time.
        let verified = candidates.filter { candidate in
            (try? WebhookSignature.verify(delivery, forge: forge, secret: candidate.secret)) != nil
        }.map(\.trigger)
        guard !verified.isEmpty else {
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

        var results: [RecordedDelivery] = []
        for trigger in verified {
            results.append(try await receive(parsed.event, for: trigger, deliveryID: deliveryID))
        }
        return try Self.response(combining: results)
    }

    /// One trigger's part of a delivery: what it builds (or why nothing), recorded once per delivery id.
    private func receive(_ event: ForgeEvent, for trigger: Trigger, deliveryID: String) async throws -> RecordedDelivery
    {
        let buildID = BuildID.generate()
        var build: Build?
        var skipped: String?
        switch Self.decide(event, for: trigger, buildID: buildID, defaultTimeout: limits.defaultBuildTimeout) {
        case .skip(let reason):
            skipped = reason
        case .build(_, let source) where !GitSource.isHostAllowed(source.url, hosts: limits.allowedGitHosts):
            skipped = "git host not allowed"
        case .build(let buildRequest, let source):
            try await limiter.checkQueue(of: trigger.tenant)
            let now = Date()
            build = Build(
                id: buildID, tenant: trigger.tenant, request: buildRequest, context: nil, gitSource: source,
                triggerID: trigger.id, createdAt: now,
                queueExpiresAt: now.addingTimeInterval(TimeInterval(limits.defaultQueueTTL)),
                runKey: TriggerPlanner.runKey(of: trigger, ref: source.ref),
                runPolicy: trigger.settings.runPolicy ?? .parallel)
        }
        let stored = try await triggers.recordDelivery(
            triggerID: trigger.id, deliveryID: deliveryID, build: build, at: Date()
        ) { [skipped] outcome in
            let answer =
                switch outcome {
                case .queued(let build):
                    WebhookAnswer(status: "queued", reason: nil, buildId: build.id.rawValue, trigger: trigger.id)
                case .alreadyActive(let build):
                    WebhookAnswer(
                        status: "alreadyQueued",
                        reason: "build \(build.id) of this trigger already builds this ref and commit",
                        buildId: build.id.rawValue, trigger: trigger.id)
                case .nothing:
                    WebhookAnswer(status: "ignored", reason: skipped, buildId: nil, trigger: trigger.id)
                }
            let statusCode = if case .queued = outcome { 202 } else { 200 }
            return (statusCode, String(decoding: try BuildRepresentation.encoder.encode(answer), as: UTF8.self))
        }
        if let build = stored.queued {
            try await intake.announce(build, origin: "trigger \(trigger.id), delivery \(deliveryID)")
        }
        BuildGateMetrics.webhookDelivery(
            forge: trigger.forge,
            outcome: stored.isRedelivery ? "redelivery" : stored.queued == nil ? "ignored" : "queued")
        return stored
    }

    /// The forge's answer: one trigger's stored answer as it is; for several, the first that queued a build (else the
    /// first) with every trigger's answer under `results`. 202 when any queued a build.
    private static func response(combining results: [RecordedDelivery]) throws -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        if results.allSatisfy(\.isRedelivery) { headers[HTTPField.Name("X-BuildGate-Redelivery")!] = "true" }
        let lead = results.first { $0.statusCode == 202 } ?? results[0]
        var body = lead.response
        if results.count > 1 {
            let answers = try results.map { try JSONSerialization.jsonObject(with: Data($0.response.utf8)) }
            guard var combined = answers[results.firstIndex { $0.statusCode == 202 } ?? 0] as? [String: Any] else {
                throw BuildGateError(.internalError, "a stored webhook answer is not a JSON object")
            }
            combined["results"] = answers
            body = String(
                decoding: try JSONSerialization.data(
                    withJSONObject: combined, options: [.sortedKeys, .withoutEscapingSlashes]),
                as: UTF8.self)
        }
        return Response(
            status: HTTPResponse.Status(code: lead.statusCode), headers: headers,
            body: .init(byteBuffer: ByteBuffer(string: body)))
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
                kind: .pullRequest(number: pull.number, sourceBranch: pull.sourceBranch),
                repository: pull.repository.fullName,
                cloneURL: pull.repository.cloneURL, ref: pull.ref, commit: pull.commit, headCommitMessage: nil)
        }
        return TriggerPlanner.plan(source, for: trigger, buildID: buildID, defaultTimeout: defaultTimeout)
    }
}

/// The JSON a forge gets back.
struct WebhookAnswer: Encodable {
    /// `queued`, `alreadyQueued` or `ignored`.
    var status: String
    var reason: String?
    var buildId: String?
    var trigger: String
}
