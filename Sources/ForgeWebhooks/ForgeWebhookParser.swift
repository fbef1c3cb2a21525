import Foundation

/// Turns a verified delivery into a `ForgeEvent`. Pure: headers and body in, event out.
///
/// Unknown event kinds, pings and branch deletions are `.ignored` with a reason (the forge gets a 2xx and stops
/// retrying); a body that is not the JSON its event promises is `.malformed`.
public enum ForgeWebhookParser {
    public struct Parsed: Sendable, Equatable {
        /// The forge's id for this delivery, repeated on redelivery (deduplication key).
        public var deliveryID: String?
        public var event: ForgeEvent
    }

    static let zeroCommit = String(repeating: "0", count: 40)

    public static func parse(_ delivery: WebhookDelivery, forge: Forge) throws(WebhookError) -> Parsed {
        switch forge {
        case .github: try github(delivery)
        case .gitea: try gitea(delivery)
        case .gitlab: try gitlab(delivery)
        case .bitbucket: try bitbucket(delivery)
        }
    }

    // MARK: - GitHub

    private struct GitHubRepository: Decodable {
        enum CodingKeys: String, CodingKey {
            case fullName = "full_name"
            case cloneUrl = "clone_url"
        }
        var fullName: String
        var cloneUrl: String?
        var repository: ForgeRepository { ForgeRepository(fullName: fullName, cloneURL: cloneUrl) }
    }

    private struct GitHubPush: Decodable {
        enum CodingKeys: String, CodingKey {
            case ref, after, deleted, repository
            case headCommit = "head_commit"
        }
        struct Commit: Decodable { var id: String; var message: String? }
        var ref: String
        var after: String
        var deleted: Bool?
        var headCommit: Commit?
        var repository: GitHubRepository
    }

    private struct GitHubPullRequest: Decodable {
        struct PullRequest: Decodable {
            struct Head: Decodable { var sha: String; var ref: String }
            var number: Int
            var title: String?
            var head: Head
        }
        enum CodingKeys: String, CodingKey {
            case action, repository
            case pullRequest = "pull_request"
        }
        var action: String
        var pullRequest: PullRequest
        var repository: GitHubRepository
    }

    private static func github(_ delivery: WebhookDelivery) throws(WebhookError) -> Parsed {
        try githubShaped(
            delivery, deliveryID: delivery["X-GitHub-Delivery"], event: delivery["X-GitHub-Event"],
            pullRequestUpdate: "synchronize")
    }

    // MARK: - Gitea / Forgejo (GitHub-shaped payloads)

    private static func gitea(_ delivery: WebhookDelivery) throws(WebhookError) -> Parsed {
        try githubShaped(
            delivery, deliveryID: delivery["X-Gitea-Delivery"] ?? delivery["X-Forgejo-Delivery"],
            event: delivery["X-Gitea-Event"] ?? delivery["X-Forgejo-Event"], pullRequestUpdate: "synchronized")
    }

    /// GitHub's payload shapes, which Gitea and Forgejo share (they name a pull request update differently).
    private static func githubShaped(
        _ delivery: WebhookDelivery, deliveryID id: String?, event: String?, pullRequestUpdate: String
    ) throws(WebhookError) -> Parsed {
        switch event {
        case "ping":
            return Parsed(deliveryID: id, event: .ignored(reason: "ping"))
        case "push":
            let push = try decode(GitHubPush.self, delivery.body)
            return Parsed(
                deliveryID: id,
                event: pushEvent(
                    repository: push.repository.repository, ref: push.ref, commit: push.after,
                    deleted: push.deleted == true, message: push.headCommit?.message))
        case "pull_request":
            let event = try decode(GitHubPullRequest.self, delivery.body)
            guard ["opened", pullRequestUpdate, "reopened"].contains(event.action) else {
                return Parsed(deliveryID: id, event: .ignored(reason: "pull request \(event.action)"))
            }
            let pull = event.pullRequest
            return Parsed(
                deliveryID: id,
                event: .pullRequest(
                    PullRequestEvent(
                        repository: event.repository.repository, number: pull.number,
                        ref: "refs/pull/\(pull.number)/head",
                        commit: pull.head.sha, sourceBranch: pull.head.ref, title: pull.title)))
        case let other:
            return Parsed(deliveryID: id, event: .ignored(reason: "event '\(other ?? "none")' is not built"))
        }
    }

    // MARK: - GitLab

    private struct GitLabProject: Decodable {
        enum CodingKeys: String, CodingKey {
            case pathWithNamespace = "path_with_namespace"
            case gitHttpUrl = "git_http_url"
        }
        var pathWithNamespace: String
        var gitHttpUrl: String?
        var repository: ForgeRepository { ForgeRepository(fullName: pathWithNamespace, cloneURL: gitHttpUrl) }
    }

    private struct GitLabPush: Decodable {
        enum CodingKeys: String, CodingKey {
            case ref, after, commits, project
            case checkoutSha = "checkout_sha"
        }
        struct Commit: Decodable { var id: String; var message: String? }
        var ref: String
        var after: String
        var checkoutSha: String?
        var commits: [Commit]?
        var project: GitLabProject
    }

    private struct GitLabMergeRequest: Decodable {
        struct Attributes: Decodable {
            enum CodingKeys: String, CodingKey {
                case iid, title, action
                case sourceBranch = "source_branch"
                case lastCommit = "last_commit"
            }
            struct Commit: Decodable { var id: String }
            var iid: Int
            var title: String?
            var sourceBranch: String
            var action: String?
            var lastCommit: Commit
        }
        enum CodingKeys: String, CodingKey {
            case project
            case objectAttributes = "object_attributes"
        }
        var objectAttributes: Attributes
        var project: GitLabProject
    }

    private static func gitlab(_ delivery: WebhookDelivery) throws(WebhookError) -> Parsed {
        let id = delivery["X-Gitlab-Event-UUID"] ?? delivery["Idempotency-Key"]
        switch delivery["X-Gitlab-Event"] {
        case "Push Hook", "Tag Push Hook":
            let push = try decode(GitLabPush.self, delivery.body)
            let commit = push.checkoutSha ?? push.after
            let message = push.commits?.first { $0.id == commit }?.message
            return Parsed(
                deliveryID: id,
                event: pushEvent(
                    repository: push.project.repository, ref: push.ref,
                    commit: push.after == zeroCommit ? zeroCommit : commit,
                    deleted: push.after == zeroCommit, message: message))
        case "Merge Request Hook":
            let event = try decode(GitLabMergeRequest.self, delivery.body)
            let attributes = event.objectAttributes
            guard ["open", "reopen", "update"].contains(attributes.action ?? "") else {
                return Parsed(deliveryID: id, event: .ignored(reason: "merge request \(attributes.action ?? "event")"))
            }
            return Parsed(
                deliveryID: id,
                event: .pullRequest(
                    PullRequestEvent(
                        repository: event.project.repository, number: attributes.iid,
                        ref: "refs/merge-requests/\(attributes.iid)/head", commit: attributes.lastCommit.id,
                        sourceBranch: attributes.sourceBranch, title: attributes.title)))
        case let other:
            return Parsed(deliveryID: id, event: .ignored(reason: "event '\(other ?? "none")' is not built"))
        }
    }

    // MARK: - Bitbucket Cloud

    private struct BitbucketPush: Decodable {
        struct Repository: Decodable {
            enum CodingKeys: String, CodingKey {
                case links
                case fullName = "full_name"
            }
            struct Links: Decodable { struct Link: Decodable { var href: String }; var html: Link? }
            var fullName: String
            var links: Links?
        }
        struct Push: Decodable {
            struct Change: Decodable {
                struct State: Decodable {
                    struct Target: Decodable { var hash: String; var message: String? }
                    var type: String
                    var name: String
                    var target: Target
                }
                var new: State?
            }
            var changes: [Change]
        }
        var repository: Repository
        var push: Push
    }

    private static func bitbucket(_ delivery: WebhookDelivery) throws(WebhookError) -> Parsed {
        let id = delivery["X-Request-UUID"]
        switch delivery["X-Event-Key"] {
        case "repo:push":
            let push = try decode(BitbucketPush.self, delivery.body)
            let repository = ForgeRepository(
                fullName: push.repository.fullName, cloneURL: "https://bitbucket.org/\(push.repository.fullName).git")
            // One delivery may carry several ref changes; the last change with a new state is built.
            guard let state = push.push.changes.last(where: { $0.new != nil })?.new else {
                return Parsed(deliveryID: id, event: .ignored(reason: "branch or tag deleted"))
            }
            let ref = state.type == "tag" ? "refs/tags/\(state.name)" : "refs/heads/\(state.name)"
            return Parsed(
                deliveryID: id,
                event: pushEvent(
                    repository: repository, ref: ref, commit: state.target.hash, deleted: false,
                    message: state.target.message))
        case let other:
            return Parsed(deliveryID: id, event: .ignored(reason: "event '\(other ?? "none")' is not built"))
        }
    }

    // MARK: - Shared

    private static func pushEvent(
        repository: ForgeRepository, ref: String, commit: String, deleted: Bool, message: String?
    ) -> ForgeEvent {
        if deleted || commit == zeroCommit { return .ignored(reason: "\(ref) was deleted") }
        guard ref.hasPrefix("refs/heads/") || ref.hasPrefix("refs/tags/") else {
            return .ignored(reason: "\(ref) is neither a branch nor a tag")
        }
        return .push(PushEvent(repository: repository, ref: ref, commit: commit, headCommitMessage: message))
    }

    private static func decode<T: Decodable>(_ type: T.Type, _ body: [UInt8]) throws(WebhookError) -> T {
        do {
            // Keys are named as the forges spell them (CodingKeys): `convertFromSnakeCase` would convert every key
            // of every object, and GitHub's repository object alone has about 90 (most of what parsing a push cost).
            return try JSONDecoder().decode(T.self, from: Data(body))
        } catch {
            throw .malformed("the payload is not the JSON this event carries")
        }
    }
}
