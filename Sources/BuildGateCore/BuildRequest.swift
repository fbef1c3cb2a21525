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
    /// Names of the tenant's stored secrets to mount (`RUN --mount=type=secret,id=NAME`), sorted.
    package var secrets: [String]
    /// Images to use as a layer cache.
    package var cacheFrom: [ImageReference]
    /// Where to export the build's layer cache.
    package var cacheTo: ImageReference?

    package init(
        images: [ImageReference],
        dockerfile: String = "Dockerfile",
        target: String? = nil,
        buildArgs: [String: String] = [:],
        labels: [String: String] = [:],
        platform: Platform? = nil,
        noCache: Bool = false,
        timeoutSeconds: Int = 3600,
        secrets: [String] = [],
        cacheFrom: [ImageReference] = [],
        cacheTo: ImageReference? = nil
    ) {
        self.images = images
        self.dockerfile = dockerfile
        self.target = target
        self.buildArgs = buildArgs
        self.labels = labels
        self.platform = platform
        self.noCache = noCache
        self.timeoutSeconds = timeoutSeconds
        self.secrets = secrets
        self.cacheFrom = cacheFrom
        self.cacheTo = cacheTo
    }

    private enum CodingKeys: String, CodingKey {
        case images, dockerfile, target, buildArgs, labels, platform, noCache, timeoutSeconds, secrets, cacheFrom,
            cacheTo
    }

    /// Rows stored before secrets and caches existed decode with none.
    package init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            images: try container.decode([ImageReference].self, forKey: .images),
            dockerfile: try container.decode(String.self, forKey: .dockerfile),
            target: try container.decodeIfPresent(String.self, forKey: .target),
            buildArgs: try container.decode([String: String].self, forKey: .buildArgs),
            labels: try container.decode([String: String].self, forKey: .labels),
            platform: try container.decodeIfPresent(Platform.self, forKey: .platform),
            noCache: try container.decode(Bool.self, forKey: .noCache),
            timeoutSeconds: try container.decode(Int.self, forKey: .timeoutSeconds),
            secrets: try container.decodeIfPresent([String].self, forKey: .secrets) ?? [],
            cacheFrom: try container.decodeIfPresent([ImageReference].self, forKey: .cacheFrom) ?? [],
            cacheTo: try container.decodeIfPresent(ImageReference.self, forKey: .cacheTo))
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
