/// The git forges whose webhooks the gateway accepts. Forgejo speaks Gitea's dialect.
public enum Forge: String, Sendable, CaseIterable, Codable {
    case github
    case gitlab
    case gitea
    case bitbucket
}

/// A webhook delivery as received: header fields (names compared case-insensitively) and the raw body bytes.
public struct WebhookDelivery: Sendable {
    public var headers: [String: String]
    public var body: [UInt8]

    /// - Parameter headers: header fields; names are lower-cased here, the first value of a repeated field wins.
    public init(headers: [(name: String, value: String)], body: [UInt8]) {
        var fields: [String: String] = [:]
        for (name, value) in headers where fields[name.lowercased()] == nil {
            fields[name.lowercased()] = value
        }
        self.headers = fields
        self.body = body
    }

    public subscript(_ name: String) -> String? { headers[name.lowercased()] }
}

/// What a delivery means for the gateway.
public enum ForgeEvent: Sendable, Equatable {
    /// Commits pushed to a branch or a tag.
    case push(PushEvent)
    /// A pull/merge request opened or updated.
    case pullRequest(PullRequestEvent)
    /// Valid, but nothing to build (ping, branch deletion, unknown event kind…); `reason` says why.
    case ignored(reason: String)
}

/// A repository as a forge describes it.
public struct ForgeRepository: Sendable, Equatable {
    /// `owner/name` (GitLab: `group/subgroup/name`).
    public var fullName: String
    /// The HTTPS clone URL, when the payload gives one.
    public var cloneURL: String?

    public init(fullName: String, cloneURL: String?) {
        self.fullName = fullName
        self.cloneURL = cloneURL
    }
}

public struct PushEvent: Sendable, Equatable {
    public var repository: ForgeRepository
    /// The full ref, e.g. `refs/heads/main` or `refs/tags/v1`.
    public var ref: String
    /// The commit the ref now points to (40 hex).
    public var commit: String
    /// Message of the head commit, when the payload has it (for `[skip ci]`).
    public var headCommitMessage: String?

    public init(repository: ForgeRepository, ref: String, commit: String, headCommitMessage: String?) {
        self.repository = repository
        self.ref = ref
        self.commit = commit
        self.headCommitMessage = headCommitMessage
    }

    /// The branch name for `refs/heads/…`, else nil.
    public var branch: String? { ref.hasPrefix("refs/heads/") ? String(ref.dropFirst("refs/heads/".count)) : nil }
    /// The tag name for `refs/tags/…`, else nil.
    public var tag: String? { ref.hasPrefix("refs/tags/") ? String(ref.dropFirst("refs/tags/".count)) : nil }
}

public struct PullRequestEvent: Sendable, Equatable {
    /// The repository the pull request targets.
    public var repository: ForgeRepository
    public var number: Int
    /// The ref to fetch the head commit from (`refs/pull/N/head`, `refs/merge-requests/N/head`…).
    public var ref: String
    public var commit: String
    /// The branch the pull request comes from.
    public var sourceBranch: String
    public var title: String?

    public init(
        repository: ForgeRepository, number: Int, ref: String, commit: String, sourceBranch: String, title: String?
    ) {
        self.repository = repository
        self.number = number
        self.ref = ref
        self.commit = commit
        self.sourceBranch = sourceBranch
        self.title = title
    }
}

/// Why a delivery was refused. `unauthorized` carries no detail on purpose: a caller learns nothing about which
/// part of the check failed.
public enum WebhookError: Error, Sendable, Equatable {
    case unauthorized
    case malformed(String)
}
