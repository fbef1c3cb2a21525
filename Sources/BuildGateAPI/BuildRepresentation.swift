import BuildGateCore
import Foundation

/// The build as JSON, the shape `openapi.yaml` documents as `Build`.
struct BuildRepresentation: Encodable {
    struct Context: Encodable {
        var digest: String
        var size: Int64
        var compression: String
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
    var context: Context
    var images: [Image]
    var parameters: Parameters
    var links: Links

    init(_ build: Build) {
        id = build.id.rawValue
        status = build.status.rawValue
        reason = build.reason?.rawValue
        message = build.message
        createdAt = build.createdAt
        startedAt = build.startedAt
        finishedAt = build.finishedAt
        builder = build.builder
        cancelRequested = build.cancelRequested
        context = Context(
            digest: build.context.digest.description, size: build.context.size,
            compression: build.context.compression.rawValue)
        images = build.request.images.map { image in
            Image(
                reference: image.description,
                digest: build.pushedImages.first { $0.reference == image }?.digest)
        }
        let request = build.request
        parameters = Parameters(
            dockerfile: request.dockerfile, target: request.target, buildArgs: request.buildArgs, labels: request.labels,
            platform: request.platform?.description, noCache: request.noCache, timeout: request.timeoutSeconds)
        let path = "/v1/builds/\(build.id)"
        links = Links(self: path, logs: "\(path)/logs", cancel: "\(path)/cancel")
    }

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true)))
        }
        return encoder
    }()
}
