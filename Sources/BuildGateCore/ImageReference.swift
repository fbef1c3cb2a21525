/// A fully qualified image reference, `registry[:port]/path[:tag]`, as the gateway pushes it.
///
/// The registry is required: a build service that silently pushed `app:1` to Docker Hub would surprise everyone.
/// A missing tag means `latest`. Digest references (`@sha256:…`) cannot be pushed to and are refused.
package struct ImageReference: Hashable, Sendable, CustomStringConvertible {
    package let registry: String
    package let repository: String
    package let tag: String

    package var description: String { "\(registry)/\(repository):\(tag)" }
    /// `registry/repository`, without the tag.
    package var name: String { "\(registry)/\(repository)" }

    /// Whether the registry is on this machine's loopback (`localhost`, 127.0.0.0/8, `::1`, any port): reached
    /// without TLS verification by default, as dockerd treats it.
    package var isLoopbackRegistry: Bool { Self.isLoopback(registry: registry) }

    /// `registry` is `host[:port]` (an IPv6 host in brackets).
    package static func isLoopback(registry: String) -> Bool {
        var host = Substring(registry)
        if host.hasPrefix("[") {
            guard let end = host.firstIndex(of: "]") else { return false }
            host = host[host.index(after: host.startIndex)..<end]
            return host == "::1"
        }
        if let colon = host.lastIndex(of: ":") { host = host[..<colon] }
        if host.lowercased() == "localhost" { return true }
        let octets = host.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }

    package init(parsing text: String) throws(BuildGateError) {
        func invalid(_ why: String) -> BuildGateError {
            BuildGateError(.invalidParameter, "image '\(text)' is not a valid reference: \(why)")
        }
        guard !text.isEmpty, text.count <= 255 else { throw invalid("it must be 1 to 255 characters") }
        guard !text.contains("@") else { throw invalid("digest references cannot be pushed; give a tag") }
        guard let slash = text.firstIndex(of: "/") else {
            throw invalid("it must name a registry, e.g. registry.example.com/app:1")
        }
        let registry = String(text[..<slash])
        guard registry.contains(".") || registry.contains(":") || registry == "localhost" else {
            throw invalid("'\(registry)' is not a registry host; name one, e.g. registry.example.com/\(text)")
        }
        guard Self.isValidRegistry(registry) else { throw invalid("bad registry host '\(registry)'") }
        var remainder = text[text.index(after: slash)...]
        var tag = "latest"
        if let colon = remainder.lastIndex(of: ":") {
            tag = String(remainder[remainder.index(after: colon)...])
            remainder = remainder[..<colon]
            guard Self.isValidTag(tag) else { throw invalid("bad tag '\(tag)'") }
        }
        let repository = String(remainder)
        guard !repository.isEmpty,
            repository.split(separator: "/", omittingEmptySubsequences: false).allSatisfy(Self.isValidPathComponent)
        else { throw invalid("bad repository path '\(repository)' (lowercase letters, digits, '.', '_', '-')") }
        self.registry = registry
        self.repository = repository
        self.tag = tag
    }

    private static func isValidRegistry(_ host: String) -> Bool {
        let parts = host.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count <= 2, let hostname = parts.first, !hostname.isEmpty else { return false }
        if parts.count == 2 {
            guard let port = Int(parts[1]), (1...65535).contains(port) else { return false }
        }
        return hostname.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-") }
    }

    private static func isValidTag(_ tag: Substring) -> Bool { isValidTag(String(tag)) }

    private static func isValidTag(_ tag: String) -> Bool {
        guard let first = tag.first, tag.count <= 128, first.isASCII, first.isLetter || first.isNumber || first == "_"
        else { return false }
        return tag.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "_.-".contains($0)) }
    }

    private static func isValidPathComponent(_ component: Substring) -> Bool {
        guard let first = component.first, let last = component.last,
            first.isASCII, last.isASCII, first.isLowercase || first.isNumber, last.isLowercase || last.isNumber
        else { return false }
        return component.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber || "._-".contains($0)) }
    }
}

extension ImageReference: Codable {
    package init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        try self.init(parsing: text)
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
