import BuildGateCore
import Foundation
import GRDB

/// One row of the `build` table.
struct BuildRecord: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "build"
    /// Dates are stored as Unix seconds (REAL), so SQL can compare them with the times it is given; GRDB reads
    /// both those and the text dates of rows written before.
    static func databaseDateEncodingStrategy(for column: String) -> DatabaseDateEncodingStrategy {
        .timeIntervalSince1970
    }

    var id: String
    var tenantId: String
    var status: String
    var request: String
    var gitSource: String?
    var triggerId: String?
    var contextDigest: String?
    var contextSize: Int64?
    var contextCompression: String?
    var idempotencyKey: String?
    var createdAt: Date
    var startedAt: Date?
    var finishedAt: Date?
    var builder: String?
    var leaseOwner: String?
    var leaseExpiresAt: Date?
    var cancelRequested: Bool
    var reason: String?
    var message: String?
    var pushedImages: String
    var steps: String
    var attempt: Int
    var queueExpiresAt: Date?
    var runKey: String?
    var runPolicy: String
    var interruptedDispatches: Int

    init(_ build: Build) throws {
        id = build.id.rawValue
        tenantId = build.tenant.rawValue
        status = build.status.rawValue
        request = String(decoding: try JSONEncoder.sorted.encode(build.request), as: UTF8.self)
        gitSource = try build.gitSource.map { String(decoding: try JSONEncoder.sorted.encode($0), as: UTF8.self) }
        triggerId = build.triggerID
        contextDigest = build.context?.digest.description
        contextSize = build.context?.size
        contextCompression = build.context?.compression.rawValue
        idempotencyKey = build.idempotencyKey
        createdAt = build.createdAt
        startedAt = build.startedAt
        finishedAt = build.finishedAt
        builder = build.builder
        cancelRequested = build.cancelRequested
        reason = build.reason?.rawValue
        message = build.message
        pushedImages = String(decoding: try JSONEncoder.sorted.encode(build.pushedImages), as: UTF8.self)
        steps = String(decoding: try JSONEncoder.sorted.encode(build.steps), as: UTF8.self)
        attempt = build.attempt
        queueExpiresAt = build.queueExpiresAt
        runKey = build.runKey
        runPolicy = build.runPolicy.rawValue
        interruptedDispatches = build.interruptedDispatches
    }

    func build() throws -> Build {
        guard let id = BuildID(id), let tenant = TenantID(tenantId), let status = BuildStatus(rawValue: status) else {
            throw BuildGateError(.internalError, "build row \(id) does not decode")
        }
        var context: BuildContext?
        if let contextDigest, let contextSize, let contextCompression {
            guard let digest = ContextDigest(contextDigest),
                let compression = BuildContext.Compression(rawValue: contextCompression)
            else { throw BuildGateError(.internalError, "build row \(id) has a bad context") }
            context = BuildContext(digest: digest, size: contextSize, compression: compression)
        }
        return Build(
            id: id,
            tenant: tenant,
            status: status,
            request: try JSONDecoder().decode(BuildRequest.self, from: Data(request.utf8)),
            context: context,
            gitSource: try gitSource.map { try JSONDecoder().decode(GitSource.self, from: Data($0.utf8)) },
            triggerID: triggerId,
            createdAt: createdAt,
            startedAt: startedAt,
            finishedAt: finishedAt,
            builder: builder,
            reason: reason.flatMap(BuildFailureReason.init(rawValue:)),
            message: message,
            pushedImages: try JSONDecoder().decode([PushedImage].self, from: Data(pushedImages.utf8)),
            steps: try JSONDecoder().decode([BuildStep].self, from: Data(steps.utf8)),
            cancelRequested: cancelRequested,
            idempotencyKey: idempotencyKey,
            attempt: attempt,
            queueExpiresAt: queueExpiresAt,
            runKey: runKey,
            runPolicy: RunPolicy(rawValue: runPolicy) ?? .parallel,
            interruptedDispatches: interruptedDispatches
        )
    }
}

extension JSONEncoder {
    static var sorted: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }
}
