import Foundation

/// The one way a build enters the queue, whatever brought it: an upload, a git build, a trigger's webhook.
///
/// A new build is stored (queued), gets its first log line, is announced to the observer, applies its run policy
/// (a `latestOnly` build supersedes the queued older ones of its key), and wakes the dispatcher, in that order.
package struct BuildIntake: Sendable {
    private let repository: any BuildRepository
    private let logs: any BuildLogStore
    private let observer: any BuildObserver
    private let settler: BuildSettler
    private let onQueued: @Sendable () -> Void

    package init(
        repository: any BuildRepository, logs: any BuildLogStore, observer: any BuildObserver, settler: BuildSettler,
        onQueued: @escaping @Sendable () -> Void
    ) {
        self.repository = repository
        self.logs = logs
        self.observer = observer
        self.settler = settler
        self.onQueued = onQueued
    }

    /// Stores `build` and announces it (with `origin`, what brought it). When its idempotency key is taken, nothing
    /// is written and the earlier build is returned as `.existing`.
    package func queue(_ build: Build, origin: String? = nil) async throws -> BuildCreation {
        let creation = try await repository.create(build)
        if case .created(let build) = creation { try await announce(build, origin: origin) }
        return creation
    }

    /// Everything after storing, for a build stored in another transaction (a webhook delivery's): its first log
    /// line (with `origin`, what brought it, when given), the observer, its run policy, the dispatcher woken.
    package func announce(_ build: Build, origin: String? = nil) async throws {
        try await logs.appendGatewayLine(Self.queuedLine(build) + (origin.map { " (\($0))" } ?? ""), to: build.id)
        await observer.buildChanged(build)
        try await settler.supersede(olderThan: build, in: repository, at: Date())
        onQueued()
    }

    /// The first line of every build log.
    package static func queuedLine(_ build: Build) -> String {
        let source: String
        if let context = build.context {
            source = "context \(context.digest) (\(context.size) bytes)"
        } else if let git = build.gitSource {
            source = "git \(GitSource.redacted(git.url)) \(git.commit ?? git.ref ?? "")"
        } else {
            source = "no source"
        }
        let images = build.request.images.map(\.description).joined(separator: ", ")
        return "queued: \(source), image\(build.request.images.count == 1 ? "" : "s") \(images)"
    }
}
