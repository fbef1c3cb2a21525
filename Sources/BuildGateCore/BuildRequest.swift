/// What the user asked for: everything about a build except its context bytes.
package struct BuildRequest: Hashable, Sendable, Codable {
    /// Where to push the result; at least one.
    package var images: [ImageReference]
    /// Path of the Dockerfile inside the context.
    package var dockerfile: String
    /// Build stage to stop at, if any.
    package var target: String?
    /// `--build-arg` values, ordered by key.
    package var buildArgs: [String: String]
    /// Labels set on the built image.
    package var labels: [String: String]
    package var platform: Platform?
    package var noCache: Bool
    /// Seconds the build may run (from dispatch to result) before it ends as `timedOut`.
    package var timeoutSeconds: Int

    package init(
        images: [ImageReference],
        dockerfile: String = "Dockerfile",
        target: String? = nil,
        buildArgs: [String: String] = [:],
        labels: [String: String] = [:],
        platform: Platform? = nil,
        noCache: Bool = false,
        timeoutSeconds: Int = 3600
    ) {
        self.images = images
        self.dockerfile = dockerfile
        self.target = target
        self.buildArgs = buildArgs
        self.labels = labels
        self.platform = platform
        self.noCache = noCache
        self.timeoutSeconds = timeoutSeconds
    }
}

/// The stored context a build runs on.
package struct BuildContext: Hashable, Sendable, Codable {
    package var digest: ContextDigest
    /// Size of the stored archive in bytes, as uploaded.
    package var size: Int64
    package var compression: Compression

    package enum Compression: String, Sendable, Codable {
        case none
        case gzip
    }

    package init(digest: ContextDigest, size: Int64, compression: Compression) {
        self.digest = digest
        self.size = size
        self.compression = compression
    }
}
