import BuildGateCore
import ContextArchive
import ForgeWebhooks
import Foundation
import HTTPTypes
import Hummingbird

/// `/v1/triggers`: register a repository's webhook, list, show and delete them (scope `triggers:admin`).
/// Secrets and clone credentials are write-only: accepted here, never returned.
struct TriggersController<Context: AuthenticatedRequestContext>: Sendable {
    let triggers: any TriggerRepository
    let limits: BuildGateAPILimits
    let admission: BuildAdmission

    func addRoutes(to group: RouterGroup<Context>) {
        group.post(use: create)
        group.get(use: list)
        group.get("{id}", use: show)
        group.delete("{id}", use: delete)
    }

    @Sendable func create(_ request: Request, context: Context) async throws -> Response {
        let principal = try context.require(.triggersAdmin)
        let bytes = try await request.body.collect(upTo: 64 * 1024)
        let body: TriggerBody
        do {
            body = try JSONDecoder().decode(TriggerBody.self, from: Data(bytes.readableBytesView))
        } catch {
            throw BuildGateError(
                .invalidParameter, "the body must be a trigger: {\"forge\",\"repository\",\"secret\",\"images\",…}")
        }
        guard Forge(rawValue: body.forge) != nil else {
            throw BuildGateError(
                .invalidParameter, "'forge' must be one of \(Forge.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard !body.repository.isEmpty, body.repository.count <= 255 else {
            throw BuildGateError(.invalidParameter, "'repository' is the repository's full name, e.g. owner/name")
        }
        guard body.secret.utf8.count >= 12 else {
            throw BuildGateError(
                .invalidParameter, "'secret' must be at least 12 characters (the forge signs deliveries with it)")
        }
        guard !body.images.isEmpty else { throw BuildGateError(.invalidParameter, "give at least one image template") }
        var settings = TriggerSettings(images: body.images)
        settings.branches = body.branches ?? settings.branches
        settings.tags = body.tags ?? settings.tags
        if let events = body.events {
            settings.events = try events.map { name in
                guard let event = TriggerEvent(rawValue: name) else {
                    throw BuildGateError(.invalidParameter, "unknown event '\(name)'; known: push, tag, pullRequest")
                }
                return event
            }
        }
        settings.cloneURL = body.cloneURL
        if let dockerfile = body.dockerfile {
            guard let normalized = ContextPath.normalize(dockerfile), normalized != "." else {
                throw BuildGateError(.invalidParameter, "'dockerfile' must be a relative path inside the repository")
            }
            settings.dockerfile = normalized
        }
        settings.target = body.target
        settings.buildArgs = body.buildArgs ?? [:]
        settings.platform = body.platform
        settings.timeout = body.timeout
        settings.buildSecrets = body.buildSecrets
        settings.cacheFrom = body.cacheFrom
        settings.cacheTo = body.cacheTo
        if let policy = body.runPolicy {
            guard let value = RunPolicy(rawValue: policy) else {
                throw BuildGateError(.invalidParameter, "'runPolicy' must be parallel, serial or latestOnly")
            }
            settings.runPolicy = value
        }
        settings.callbackURL = body.callbackURL
        settings.statusAPIURL = body.statusAPIURL
        if body.forge == "gitea" && body.statusToken != nil && body.statusAPIURL == nil {
            throw BuildGateError(
                .invalidParameter, "a Gitea trigger with a statusToken needs statusAPIURL (your Gitea's URL)")
        }
        try validate(settings)
        try await admission.check(try sampleRequest(settings), tenant: principal.tenant)

        let credential: GitCredential? =
            switch (
                body.cloneCredentials?.username, body.cloneCredentials?.password, body.cloneCredentials?.sshPrivateKey
            ) {
            case (let username?, let password?, nil): .basic(username: username, password: password)
            case (nil, nil, let key?): .sshKey(privateKey: key)
            case (nil, nil, nil): nil
            default:
                throw BuildGateError(
                    .invalidParameter, "'cloneCredentials' is {\"username\",\"password\"} or {\"sshPrivateKey\"}")
            }
        let trigger = Trigger(
            id: Trigger.generateID(), tenant: principal.tenant, forge: body.forge, repository: body.repository,
            settings: settings, createdAt: Date())
        try await triggers.createTrigger(
            trigger, secret: body.secret, cloneCredential: credential, statusToken: body.statusToken)
        var response = try APIResponse.json(TriggerRepresentation(trigger), status: .created)
        response.headers[.location] = "/v1/triggers/\(trigger.id)"
        return response
    }

    /// The build a push would make, for the intake checks (limits, a capable builder, the named secrets stored).
    private func sampleRequest(_ settings: TriggerSettings) throws -> BuildRequest {
        var draft = BuildDraft()
        // As many images as a push would give; the templates themselves are checked in `validate`.
        draft.images = settings.images.indices.map { "sample.invalid/sample\($0):1" }
        draft.buildArgs = settings.buildArgs
        draft.secrets = settings.buildSecrets ?? []
        draft.cacheFrom = settings.cacheFrom
        draft.cacheTo = settings.cacheTo
        return try draft.validated(.init(defaultTimeout: 1, maxTimeout: 1, defaultQueueTTL: 1, maxQueueTTL: 1)).request
    }

    /// Checks the templates and filters with sample values, so a bad trigger fails now, not at the first push.
    private func validate(_ settings: TriggerSettings) throws {
        let sample = [
            "branch": "main", "tag": "v1.0.0", "sha": String(repeating: "a", count: 40), "shortSha": "aaaaaaa",
            "buildId": BuildID.generate().rawValue, "pr": "1",
        ]
        for template in settings.images {
            _ = try ImageReference(parsing: TriggerPlanner.render(template, sample))
        }
        if let url = settings.cloneURL {
            _ = try GitSource(url: url, ref: "refs/heads/main", commit: nil)
            guard GitSource.isHostAllowed(url, hosts: limits.allowedGitHosts) else {
                throw BuildGateError(.invalidParameter, "git host of \(GitSource.redacted(url)) is not allowed here")
            }
        }
        if let platform = settings.platform { _ = try Platform(parsing: platform) }
        if let timeout = settings.timeout, !(1...limits.maxBuildTimeout).contains(timeout) {
            throw BuildGateError(.invalidParameter, "'timeout' must be from 1 to \(limits.maxBuildTimeout) seconds")
        }
        for (name, url) in [("callbackURL", settings.callbackURL), ("statusAPIURL", settings.statusAPIURL)] {
            if let url, !(url.hasPrefix("https://") || url.hasPrefix("http://")) {
                throw BuildGateError(.invalidParameter, "'\(name)' must be an http(s) URL")
            }
        }
    }

    @Sendable func list(_ request: Request, context: Context) async throws -> Response {
        let principal = try context.require(.triggersAdmin)
        var all: [TriggerRepresentation] = []
        for trigger in try await triggers.triggers(of: principal.tenant) {
            all.append(
                TriggerRepresentation(
                    trigger, deliveries: try await triggers.recentDeliveries(forTrigger: trigger.id, limit: 5)))
        }
        return try APIResponse.json(["triggers": all], status: .ok)
    }

    @Sendable func show(_ request: Request, context: Context) async throws -> Response {
        let trigger = try await find(context)
        return try APIResponse.json(
            TriggerRepresentation(
                trigger, deliveries: try await triggers.recentDeliveries(forTrigger: trigger.id, limit: 5)),
            status: .ok)
    }

    @Sendable func delete(_ request: Request, context: Context) async throws -> Response {
        let trigger = try await find(context)
        _ = try await triggers.deleteTrigger(trigger.id, tenant: trigger.tenant)
        return Response(status: .noContent)
    }

    private func find(_ context: Context) async throws -> Trigger {
        let principal = try context.require(.triggersAdmin)
        let id = try context.parameters.require("id")
        guard let trigger = try await triggers.trigger(id), trigger.tenant == principal.tenant else {
            throw BuildGateError(.notFound, "no trigger '\(id)'")
        }
        return trigger
    }
}

/// The body of `POST /v1/triggers`.
struct TriggerBody: Decodable {
    struct CloneCredentials: Decodable {
        var username: String?
        var password: String?
        var sshPrivateKey: String?
    }
    var forge: String
    var repository: String
    var secret: String
    var images: [String]
    var branches: [String]?
    var tags: [String]?
    var events: [String]?
    var cloneURL: String?
    var cloneCredentials: CloneCredentials?
    var dockerfile: String?
    var target: String?
    var buildArgs: [String: String]?
    var platform: String?
    var timeout: Int?
    /// Stored build secrets to mount (`secret` is the webhook secret).
    var buildSecrets: [String]?
    var cacheFrom: String?
    var cacheTo: String?
    var runPolicy: String?
    var callbackURL: String?
    /// A forge API token allowed to set commit statuses (write-only).
    var statusToken: String?
    var statusAPIURL: String?
}

/// A trigger as JSON: everything but its secret and credentials, plus the URLs to paste into the forge.
struct TriggerRepresentation: Encodable {
    var id: String
    var forge: String
    var repository: String
    var events: [String]
    var branches: [String]
    var tags: [String]
    var images: [String]
    var cloneURL: String?
    var dockerfile: String
    var target: String?
    var buildArgs: [String: String]
    var platform: String?
    var timeout: Int?
    var buildSecrets: [String]
    var cacheFrom: String?
    var cacheTo: String?
    var runPolicy: String
    var callbackURL: String?
    var statusAPIURL: String?
    var createdAt: Date
    /// The trigger's own webhook URL path (verified with this trigger's secret only).
    var webhookPath: String
    /// The forge's shared webhook URL path.
    var sharedWebhookPath: String
    /// The latest deliveries (up to 5, newest first): when, the answer's status code, and what it led to.
    var lastDeliveries: [Delivery]

    struct Delivery: Encodable {
        var deliveryId: String
        var receivedAt: Date
        var statusCode: Int
        /// `queued`, `ignored`, `alreadyQueued`… as the forge was answered.
        var outcome: String?
        var buildId: String?
    }

    init(_ trigger: Trigger, deliveries: [DeliveryRecord] = []) {
        id = trigger.id
        forge = trigger.forge
        repository = trigger.repository
        events = trigger.settings.events.map(\.rawValue)
        branches = trigger.settings.branches
        tags = trigger.settings.tags
        images = trigger.settings.images
        cloneURL = trigger.settings.cloneURL.map(GitSource.redacted)
        dockerfile = trigger.settings.dockerfile
        target = trigger.settings.target
        buildArgs = trigger.settings.buildArgs
        platform = trigger.settings.platform
        timeout = trigger.settings.timeout
        buildSecrets = trigger.settings.buildSecrets ?? []
        cacheFrom = trigger.settings.cacheFrom
        cacheTo = trigger.settings.cacheTo
        runPolicy = (trigger.settings.runPolicy ?? .parallel).rawValue
        callbackURL = trigger.settings.callbackURL
        statusAPIURL = trigger.settings.statusAPIURL
        createdAt = trigger.createdAt
        webhookPath = "/v1/webhooks/\(trigger.forge)/\(trigger.id)"
        sharedWebhookPath = "/v1/webhooks/\(trigger.forge)"
        lastDeliveries = deliveries.map { record in
            struct Answer: Decodable {
                var status: String?
                var buildId: String?
            }
            let answer = try? JSONDecoder().decode(Answer.self, from: Data(record.response.utf8))
            return Delivery(
                deliveryId: record.deliveryID, receivedAt: record.receivedAt, statusCode: record.statusCode,
                outcome: answer?.status, buildId: answer?.buildId)
        }
    }
}
