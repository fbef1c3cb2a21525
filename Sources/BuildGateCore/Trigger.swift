import Foundation

/// A forge webhook registration: which repository, which events, what to build and where to push it.
package struct Trigger: Sendable, Equatable {
    package var id: String
    package var tenant: TenantID
    /// `github`, `gitlab`, `gitea` (also Forgejo) or `bitbucket`.
    package var forge: String
    /// The repository's full name as the forge sends it (`owner/name`).
    package var repository: String
    package var settings: TriggerSettings
    package var createdAt: Date

    package init(
        id: String, tenant: TenantID, forge: String, repository: String, settings: TriggerSettings, createdAt: Date
    ) {
        self.id = id
        self.tenant = tenant
        self.forge = forge
        self.repository = repository
        self.settings = settings
        self.createdAt = createdAt
    }

    package static func generateID() -> String {
        "t" + BuildID.generate().rawValue.dropFirst()
    }
}

/// The kinds of forge events a trigger may build.
package enum TriggerEvent: String, Sendable, Codable, CaseIterable {
    case push
    case tag
    case pullRequest
}

package struct TriggerSettings: Sendable, Equatable, Codable {
    /// Branch globs that build on push (`*` within a segment, `**` across). Default: every branch.
    package var branches: [String] = ["**"]
    /// Tag globs that build on tag push. Default: every tag.
    package var tags: [String] = ["**"]
    /// Default: push and tag; pull requests are off unless listed.
    package var events: [TriggerEvent] = [.push, .tag]
    /// Image reference templates: `{{branch}}`, `{{tag}}`, `{{sha}}`, `{{shortSha}}`, `{{buildId}}`, `{{pr}}`.
    package var images: [String]
    /// Clone URL to use instead of the one in the payload.
    package var cloneURL: String?
    package var dockerfile: String = "Dockerfile"
    package var target: String?
    package var buildArgs: [String: String] = [:]
    package var platform: String?
    package var timeout: Int?
    /// Stored build secrets to mount (`secret` of `POST /v1/builds`); nil: none.
    package var buildSecrets: [String]?
    package var cacheFrom: String?
    package var cacheTo: String?
    /// How builds of one ref go (nil: `parallel`); `latestOnly` suits branch pushes, `serial` deploy pipelines.
    package var runPolicy: RunPolicy?
    /// Receives a signed JSON event on every state change of the trigger's builds.
    package var callbackURL: String?
    /// The forge's API base for commit statuses (default: `https://api.github.com`, `https://gitlab.com`; Gitea
    /// needs its own). Statuses are posted only when the trigger has a status token.
    package var statusAPIURL: String?

    package init(images: [String]) {
        self.images = images
    }
}

/// What a forge event means for one trigger, independent of the forge.
package struct SourceEvent: Sendable, Equatable {
    package enum Kind: Sendable, Equatable {
        case branch(String)
        case tag(String)
        case pullRequest(number: Int, sourceBranch: String)
    }

    package var kind: Kind
    package var repository: String
    package var cloneURL: String?
    package var ref: String
    package var commit: String
    package var headCommitMessage: String?

    package init(
        kind: Kind, repository: String, cloneURL: String?, ref: String, commit: String, headCommitMessage: String?
    ) {
        self.kind = kind
        self.repository = repository
        self.cloneURL = cloneURL
        self.ref = ref
        self.commit = commit
        self.headCommitMessage = headCommitMessage
    }
}

/// Decides, purely, whether a trigger builds an event and with what request.
package enum TriggerPlanner {
    package enum Decision: Sendable, Equatable {
        case build(BuildRequest, GitSource)
        case skip(reason: String)
    }

    package static func plan(
        _ event: SourceEvent, for trigger: Trigger, buildID: BuildID, defaultTimeout: Int
    ) -> Decision {
        let settings = trigger.settings
        guard event.repository.lowercased() == trigger.repository.lowercased() else {
            return .skip(reason: "repository \(event.repository) is not this trigger's (\(trigger.repository))")
        }
        var values = ["sha": event.commit, "shortSha": String(event.commit.prefix(7)), "buildId": buildID.rawValue]
        switch event.kind {
        case .branch(let branch):
            guard settings.events.contains(.push) else { return .skip(reason: "push events are not enabled") }
            guard settings.branches.contains(where: { Glob.matches($0, branch) }) else {
                return .skip(reason: "branch \(branch) does not match \(settings.branches.joined(separator: ", "))")
            }
            values["branch"] = branch
        case .tag(let tag):
            guard settings.events.contains(.tag) else { return .skip(reason: "tag events are not enabled") }
            guard settings.tags.contains(where: { Glob.matches($0, tag) }) else {
                return .skip(reason: "tag \(tag) does not match \(settings.tags.joined(separator: ", "))")
            }
            values["tag"] = tag
        case .pullRequest(let number, let sourceBranch):
            guard settings.events.contains(.pullRequest) else {
                return .skip(reason: "pull request events are not enabled")
            }
            values["pr"] = String(number)
            values["branch"] = sourceBranch
        }
        if let message = event.headCommitMessage?.lowercased(),
            ["[skip ci]", "[ci skip]", "[no ci]", "[skip build]"].contains(where: message.contains)
        {
            return .skip(reason: "the head commit asks to skip CI")
        }
        let images: [ImageReference]
        do {
            images = try settings.images.map { template throws(BuildGateError) in
                try ImageReference(parsing: render(template, values))
            }
        } catch {
            return .skip(reason: "the image template does not give a valid reference: \(error.message)")
        }
        guard let url = settings.cloneURL ?? event.cloneURL else {
            return .skip(reason: "the payload has no clone URL and the trigger names none")
        }
        let source: GitSource
        let platform: Platform?
        let cacheFrom: ImageReference?
        let cacheTo: ImageReference?
        do {
            source = try GitSource(url: url, ref: event.ref, commit: event.commit)
            platform = try settings.platform.map { text throws(BuildGateError) in try Platform(parsing: text) }
            cacheFrom = try settings.cacheFrom.map { text throws(BuildGateError) in try ImageReference(parsing: text) }
            cacheTo = try settings.cacheTo.map { text throws(BuildGateError) in try ImageReference(parsing: text) }
        } catch {
            return .skip(reason: error.message)
        }
        let request = BuildRequest(
            images: images, dockerfile: settings.dockerfile, target: settings.target, buildArgs: settings.buildArgs,
            platform: platform, timeoutSeconds: settings.timeout ?? defaultTimeout,
            secrets: (settings.buildSecrets ?? []).sorted(), cacheFrom: cacheFrom.map { [$0] } ?? [], cacheTo: cacheTo)
        return .build(request, source)
    }

    /// The run key of a trigger's builds of one ref: run policies apply per trigger and ref, so a newer push of a
    /// branch supersedes (or follows) the older one. Nil under `parallel`.
    package static func runKey(of trigger: Trigger, ref: String?) -> String? {
        guard (trigger.settings.runPolicy ?? .parallel) != .parallel else { return nil }
        return "\(trigger.tenant)/trigger:\(trigger.id):\(ref ?? "")"
    }

    /// Replaces `{{name}}` placeholders. Values are made tag-safe (`feature/x` → `feature-x`); an unknown or absent
    /// placeholder renders empty, which the reference check then refuses. Two scans, as every webhook delivery renders
    /// its images: the known placeholders are filled in, then every `{{…}}` left (no `}` inside) is dropped.
    package static func render(_ template: String, _ values: [String: String]) -> String {
        let safe = values.mapValues { value in
            String(value.map { $0.isASCII && ($0.isLetter || $0.isNumber || "_.-".contains($0)) ? $0 : "-" })
        }
        // Names and values hold no braces, so placeholders never overlap and the order of filling does not matter.
        let filled = replacingPlaceholders(in: template) { safe[String($0)] }
        return replacingPlaceholders(in: filled) { $0.contains("}") ? nil : "" }
    }

    /// `text` with each `{{name}}`, leftmost first, replaced by `replacement(name)`; where that is nil, the
    /// placeholder is not one and the scan goes on from its second brace.
    private static func replacingPlaceholders(in text: String, _ replacement: (Substring) -> String?) -> String {
        var result = ""
        var rest = text[...]
        while let open = rest.firstRange(of: "{{") {
            result += rest[..<open.lowerBound]
            if let close = rest[open.upperBound...].firstRange(of: "}}"),
                let value = replacement(rest[open.upperBound..<close.lowerBound])
            {
                result += value
                rest = rest[close.upperBound...]
            } else {
                result += "{"
                rest = rest[rest.index(after: open.lowerBound)...]
            }
        }
        return result + rest
    }
}

/// Triggers and webhook deliveries. Every call is one durable transaction.
package protocol TriggerRepository: Sendable {
    /// Stores a trigger with its webhook secret, optional clone credentials and forge status token (sealed).
    func createTrigger(_ trigger: Trigger, secret: String, cloneCredential: GitCredential?, statusToken: String?)
        async throws
    /// The forge API token for commit statuses, if the trigger has one.
    func statusToken(forTrigger id: String) async throws -> String?
    func trigger(_ id: String) async throws -> Trigger?
    func triggers(of tenant: TenantID) async throws -> [Trigger]
    /// Deletes the tenant's trigger; false when there is none.
    func deleteTrigger(_ id: String, tenant: TenantID) async throws -> Bool
    /// Every trigger for `forge`, with its secret (for verifying deliveries on the shared webhook URL).
    func triggersWithSecrets(forge: String) async throws -> [(trigger: Trigger, secret: String)]
    /// One trigger with its secret, for its own webhook URL.
    func triggerWithSecret(_ id: String) async throws -> (trigger: Trigger, secret: String)?
    func cloneCredential(forTrigger id: String) async throws -> GitCredential?
    /// The trigger's latest recorded deliveries, newest first (kept 8 days).
    func recentDeliveries(forTrigger id: String, limit: Int) async throws -> [DeliveryRecord]

    /// Records a delivery exactly once, in one transaction: if `(triggerID, deliveryID)` was seen, returns the stored
    /// answer and writes nothing. Else, when `build` would build a ref and commit that a build of the same trigger
    /// already queued or running builds (a replayed delivery under a new id), that build is the outcome and nothing
    /// new is queued; otherwise `build` (if any) is stored. The answer `answer` makes of the outcome is stored with
    /// the delivery and returned.
    func recordDelivery(
        triggerID: String, deliveryID: String, build: Build?, at date: Date,
        answer: @escaping @Sendable (DeliveryOutcome) throws -> (statusCode: Int, response: String)
    ) async throws -> RecordedDelivery
}

/// A delivery as it was recorded: its id, when it came, and the answer the forge got.
package struct DeliveryRecord: Sendable, Equatable {
    package var deliveryID: String
    package var receivedAt: Date
    package var statusCode: Int
    /// The JSON answer (`{"status","reason","buildId",…}`).
    package var response: String

    package init(deliveryID: String, receivedAt: Date, statusCode: Int, response: String) {
        self.deliveryID = deliveryID
        self.receivedAt = receivedAt
        self.statusCode = statusCode
        self.response = response
    }
}

/// What a new delivery led to.
package enum DeliveryOutcome: Sendable, Equatable {
    /// A build was queued.
    case queued(Build)
    /// A build of the same trigger, ref and commit is already queued or running: this one.
    case alreadyActive(Build)
    /// The delivery builds nothing.
    case nothing
}

/// A delivery as recorded: its answer, whether it was seen before, and the build it queued, if it queued one now.
package struct RecordedDelivery: Sendable {
    package var statusCode: Int
    package var response: String
    package var isRedelivery: Bool
    package var queued: Build?

    package init(statusCode: Int, response: String, isRedelivery: Bool, queued: Build?) {
        self.statusCode = statusCode
        self.response = response
        self.isRedelivery = isRedelivery
        self.queued = queued
    }
}
