import AsyncHTTPClient
import BuildGateCore
import Foundation
import NIOCore
import NIOHTTP1

/// Commit statuses on the forges, as each documents its API:
/// - GitHub: `POST {api}/repos/{owner}/{repo}/statuses/{sha}` with `{"state","target_url","description","context"}`,
///   states `pending|success|failure|error`, `Authorization: Bearer <token>`.
/// - GitLab: `POST {api}/api/v4/projects/{url-encoded path}/statuses/{sha}` with `state`, `name`, `description`,
///   `target_url`, states `pending|running|success|failed|canceled`, `PRIVATE-TOKEN: <token>`.
/// - Gitea / Forgejo: `POST {api}/api/v1/repos/{owner}/{repo}/statuses/{sha}` with `{"state","target_url",
///   "description","context"}`, states `pending|success|error|failure`, `Authorization: token <token>`.
/// Bitbucket is not supported yet.
package enum ForgeCommitStatus {
    package static let context = "buildgate"

    /// The request that sets the commit status for `build`, or nil when the forge has no status API here.
    package static func request(
        forge: String, apiURL: String?, repository: String, commit: String, build: Build, targetURL: String?,
        token: String
    ) -> HTTPClientRequest? {
        let description = describe(build)
        switch forge {
        case "github", "gitea":
            // Gitea's statuses API takes GitHub's body; the path and the token scheme differ.
            let isGitHub = forge == "github"
            guard let base = apiURL ?? (isGitHub ? "https://api.github.com" : nil) else { return nil }
            let path =
                isGitHub ? "/repos/\(repository)/statuses/\(commit)" : "/api/v1/repos/\(repository)/statuses/\(commit)"
            var request = HTTPClientRequest(url: base + path)
            request.method = .POST
            request.headers.add(name: "Authorization", value: isGitHub ? "Bearer \(token)" : "token \(token)")
            if isGitHub { request.headers.add(name: "Accept", value: "application/vnd.github+json") }
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(
                ByteBuffer(
                    bytes: json([
                        "state": githubState(build.status), "description": description, "context": context,
                        "target_url": targetURL,
                    ])))
            return request
        case "gitlab":
            let base = apiURL ?? "https://gitlab.com"
            let project = URLQuery.percentEncoded(repository)
            var items = [("state", gitlabState(build.status)), ("name", context), ("description", description)]
            if let targetURL { items.append(("target_url", targetURL)) }
            var request = HTTPClientRequest(
                url: "\(base)/api/v4/projects/\(project)/statuses/\(commit)\(URLQuery.encode(items))")
            request.method = .POST
            request.headers.add(name: "PRIVATE-TOKEN", value: token)
            return request
        default:
            return nil
        }
    }

    static func githubState(_ status: BuildStatus) -> String {
        switch status {
        case .queued, .starting, .running: "pending"
        case .succeeded: "success"
        case .failed: "failure"
        case .cancelled, .timedOut, .expired: "error"
        }
    }

    static func gitlabState(_ status: BuildStatus) -> String {
        switch status {
        case .queued, .starting: "pending"
        case .running: "running"
        case .succeeded: "success"
        case .failed, .timedOut, .expired: "failed"
        case .cancelled: "canceled"
        }
    }

    static func describe(_ build: Build) -> String {
        let text =
            switch build.status {
            case .queued: "queued"
            case .starting: "starting on \(build.builder ?? "a builder")"
            case .running: "building"
            case .succeeded: "built and pushed"
            case .failed: "failed (\(build.reason?.rawValue ?? "error"))"
            case .cancelled: "cancelled"
            case .timedOut: "timed out"
            case .expired: "expired in the queue"
            }
        return String(text.prefix(140))
    }

    private static func json(_ fields: [String: String?]) -> [UInt8] {
        let present = fields.compactMapValues { $0 }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(present)) ?? Data("{}".utf8))
    }
}
