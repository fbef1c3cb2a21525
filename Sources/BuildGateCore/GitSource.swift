import Foundation

/// A build's source in git: exactly one commit of one repository.
///
/// Only `https://`, `ssh://` and `git://` URLs are accepted (plus scp-style `user@host:path` for ssh), never with
/// credentials inside (they belong in a trigger's clone credentials). `commit` is the full 40-hex id; when only
/// `ref` is given, the commit it pointed to at fetch time is recorded.
package struct GitSource: Hashable, Sendable, Codable {
    package var url: String
    package var ref: String?
    package var commit: String?

    package init(url: String, ref: String?, commit: String?) throws(BuildGateError) {
        guard let host = Self.host(of: url) else {
            throw BuildGateError(
                .invalidParameter,
                "git url '\(Self.redacted(url))' must be https://, ssh:// or git:// (or user@host:path)")
        }
        guard !host.isEmpty, !url.contains(" "), !url.hasPrefix("-") else {
            throw BuildGateError(.invalidParameter, "git url '\(Self.redacted(url))' is not valid")
        }
        if let commit {
            guard commit.count == 40, commit.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) else {
                throw BuildGateError(.invalidParameter, "git commit must be a full 40-character lowercase hex id")
            }
        }
        if let ref {
            guard !ref.isEmpty, !ref.hasPrefix("-"), !ref.contains(".."), ref.count <= 255,
                ref.allSatisfy({ $0.isASCII && !$0.isWhitespace && !"~^:?*[\\".contains($0) })
            else { throw BuildGateError(.invalidParameter, "git ref '\(ref)' is not a valid ref name") }
        }
        guard ref != nil || commit != nil else {
            throw BuildGateError(.invalidParameter, "a git source needs a ref, a commit, or both")
        }
        self.url = url
        self.ref = ref
        self.commit = commit
    }

    /// The host the URL points to, or nil when the scheme is not allowed or the URL carries credentials.
    package static func host(of url: String) -> String? {
        for scheme in ["https://", "ssh://", "git://"] where url.hasPrefix(scheme) {
            let rest = url.dropFirst(scheme.count)
            let authority = rest.prefix { $0 != "/" }
            if scheme == "https://" && authority.contains("@") { return nil }  // user:password@ in a URL
            let hostPort = authority.split(separator: "@").last.map(String.init) ?? ""
            if hostPort.hasPrefix("[") { return hostPort.split(separator: "]").first.map { String($0.dropFirst()) } }
            return hostPort.split(separator: ":").first.map(String.init)
        }
        // scp-like ssh: git@host:owner/repo.git
        if !url.contains("://"), let at = url.firstIndex(of: "@"), let colon = url[at...].firstIndex(of: ":") {
            return String(url[url.index(after: at)..<colon])
        }
        return nil
    }

    /// Whether the URL's host matches one of `hosts` (globs); an empty list allows every host.
    package static func isHostAllowed(_ url: String, hosts: [String]) -> Bool {
        guard let host = host(of: url)?.lowercased() else { return false }
        return hosts.isEmpty || hosts.contains { Glob.matches($0.lowercased(), host) }
    }

    /// The URL without anything that looks like credentials, for messages.
    package static func redacted(_ url: String) -> String {
        guard let schemeEnd = url.range(of: "://"), let at = url[schemeEnd.upperBound...].firstIndex(of: "@") else {
            return url
        }
        return String(url[..<schemeEnd.upperBound]) + "***" + String(url[at...])
    }
}

/// Credentials to fetch a private repository: a username and password/token over https, or an ssh private key.
package enum GitCredential: Sendable, Equatable, Codable, CustomStringConvertible {
    case basic(username: String, password: String)
    case sshKey(privateKey: String)

    package var description: String {
        switch self {
        case .basic(let username, _): "GitCredential.basic(\(username), <redacted>)"
        case .sshKey: "GitCredential.sshKey(<redacted>)"
        }
    }
}

/// Fetches a git source into the context store.
///
/// Called by the dispatcher for builds that have a git source and no context yet. Fetches exactly the commit
/// (shallow where the server allows), turns it into a context archive (`git archive`), validates it like an
/// upload (the Dockerfile must be there), stores it, and returns it with the commit id. Credentials never reach
/// the command line, the log or an error message. Cancellation stops the fetch.
package protocol SourceFetcher: Sendable {
    func fetch(
        _ source: GitSource, dockerfile: String, credential: GitCredential?,
        log: @escaping @Sendable (String) async -> Void
    ) async throws -> (context: BuildContext, commit: String)
}
