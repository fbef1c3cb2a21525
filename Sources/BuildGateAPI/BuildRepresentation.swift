import BuildGateCore
import Foundation

/// The build as JSON, the shape `openapi.yaml` documents as `Build`.
struct BuildRepresentation: Encodable {
    struct Context: Encodable {
        var digest: String
        var size: Int64
        var compression: String
    }

    struct Source: Encodable {
        struct Git: Encodable {
            var url: String
            var ref: String?
            var commit: String?
        }
        var git: Git
    }

    struct Image: Encodable {
        var reference: String
        /// The manifest digest the registry stored, once pushed.
        var digest: String?
    }

    struct Parameters: Encodable {
        var dockerfile: String
        var target: String?
        var buildArgs: [String: String]
        var labels: [String: String]
        var platform: String?
        var noCache: Bool
        var timeout: Int
        /// Names of the stored secrets mounted into the build (never their values).
        var secrets: [String]
        var cacheFrom: [String]
        var cacheTo: String?
    }

    struct Step: Encodable {
        var name: String
        var startedAt: Date?
        var completedAt: Date?
        var cached: Bool
        var error: String?
    }

    /// Where a queued build stands.
    struct Queue: Encodable {
        /// 1 for the next build to be considered, across the gateway.
        var position: Int
        /// Why it waits, once the dispatcher has looked at it (e.g. "waiting for capacity in pool podman").
        var reason: String?
    }

    struct Links: Encodable {
        var `self`: String
        var logs: String
        var cancel: String
    }

    var id: String
    var status: String
    var reason: String?
    var message: String?
    var createdAt: Date
    var startedAt: Date?
    var finishedAt: Date?
    var builder: String?
    var cancelRequested: Bool
    /// Absent for a git build until its source is fetched.
    var context: Context?
    var source: Source?
    var triggerId: String?
    var images: [Image]
    var parameters: Parameters
    /// Per-step timings where the engine reports them (BuildKit: every vertex; classic builders: each instruction).
    var steps: [Step]
    /// Only while queued.
    var queue: Queue?
    /// 1, or the retry number after builders vanished mid-build.
    var attempt: Int
    var queueExpiresAt: Date?
    var runPolicy: String
    var runKey: String?
    var links: Links

    init(_ build: Build, queue: Queue? = nil) {
        self.queue = queue
        attempt = build.attempt
        queueExpiresAt = build.queueExpiresAt
        runPolicy = build.runPolicy.rawValue
        // Stored under the tenant's namespace; shown as given.
        runKey = build.runKey.map { String($0.drop { $0 != "/" }.dropFirst()) }
        id = build.id.rawValue
        status = build.status.rawValue
        reason = build.reason?.rawValue
        message = build.message
        createdAt = build.createdAt
        startedAt = build.startedAt
        finishedAt = build.finishedAt
        builder = build.builder
        cancelRequested = build.cancelRequested
        context = build.context.map {
            Context(digest: $0.digest.description, size: $0.size, compression: $0.compression.rawValue)
        }
        source = build.gitSource.map {
            Source(git: .init(url: GitSource.redacted($0.url), ref: $0.ref, commit: $0.commit))
        }
        triggerId = build.triggerID
        images = build.request.images.map { image in
            Image(
                reference: image.description,
                digest: build.pushedImages.first { $0.reference == image }?.digest)
        }
        let request = build.request
        parameters = Parameters(
            dockerfile: request.dockerfile, target: request.target, buildArgs: request.buildArgs,
            labels: request.labels,
            platform: request.platform?.description, noCache: request.noCache, timeout: request.timeoutSeconds,
            secrets: request.secrets, cacheFrom: request.cacheFrom.map(\.description),
            cacheTo: request.cacheTo?.description)
        steps = build.steps.map {
            Step(
                name: $0.name, startedAt: $0.startedAt, completedAt: $0.completedAt, cached: $0.cached, error: $0.error)
        }
        let path = "/v1/builds/\(build.id)"
        links = Links(self: path, logs: "\(path)/logs", cancel: "\(path)/cancel")
    }

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(date.formatted(APITimestamp.style))
        }
        return encoder
    }()
}
