import Foundation

/// Runs builds on one kind of engine. One driver value serves every endpoint of its engine.
///
/// Call order: the dispatcher calls `run` once per claimed build, possibly many at once on the same endpoint (up to
/// its capacity). `run` reports progress through `events` in order, never concurrently, and returns the outcome.
///
/// Cancellation: when the calling task is cancelled (user cancel or timeout), the driver stops the engine's build
/// as far as the engine allows and returns `.failed(.cancelled, …)`, but **only once the engine has really stopped
/// working on it**, so the caller can free the endpoint's slot without overbooking the engine.
///
/// `run` does not throw: every failure is an outcome with a reason (`builderUnavailable`, `buildFailed`,
/// `pushFailed`, `cancelled`).
package protocol BuilderDriver: Sendable {
    func run(
        _ job: BuildJob,
        on endpoint: BuilderEndpoint,
        events: @escaping @Sendable (BuildEvent) async -> Void
    ) async -> BuildOutcome

    /// Asks the engine whether it answers, and what it is: a health probe. Throws when it does not answer.
    func probe(_ endpoint: BuilderEndpoint) async throws -> BuilderProbe
}

/// What a health probe learned of a builder.
package struct BuilderProbe: Sendable, Equatable {
    /// Engine, version and address, e.g. "Podman Engine 4.3.1 (API 1.41) at unix:///run/podman.sock".
    package var version: String
    /// The platforms it builds for; empty when the engine does not say.
    package var platforms: [Platform]

    package init(version: String, platforms: [Platform] = []) {
        self.version = version
        self.platforms = platforms
    }
}

/// Everything a driver needs for one build.
package struct BuildJob: Sendable {
    package var id: BuildID
    package var request: BuildRequest
    package var context: BuildContext
    /// Path of the stored context archive (tar or gzip tar) to send to the engine.
    package var contextPath: String
    /// Credentials for the registries this build pushes to, by registry host.
    package var registryCredentials: [String: RegistryCredential]
    /// The build secrets the request names (`RUN --mount=type=secret,id=NAME`), by name.
    package var secrets: [String: SecretValue]

    package init(
        id: BuildID,
        request: BuildRequest,
        context: BuildContext,
        contextPath: String,
        registryCredentials: [String: RegistryCredential],
        secrets: [String: SecretValue] = [:]
    ) {
        self.id = id
        self.request = request
        self.context = context
        self.contextPath = contextPath
        self.registryCredentials = registryCredentials
        self.secrets = secrets
    }
}

/// A build secret's bytes. Its description never shows them.
package struct SecretValue: Sendable, Equatable, CustomStringConvertible {
    package var bytes: [UInt8]

    package init(_ bytes: [UInt8]) { self.bytes = bytes }

    package var description: String { "SecretValue(<\(bytes.count) bytes redacted>)" }
}

/// What a driver reports while a build runs.
package enum BuildEvent: Sendable, Equatable {
    /// The engine accepted the build; `engine` names it and its version for the log header.
    case accepted(engine: String)
    /// Output from the engine, as text for the log.
    case output(String)
    /// About to push this image.
    case pushing(ImageReference)
    /// Pushed; the registry stored the manifest under `digest`.
    case pushed(PushedImage)
    /// The build's steps so far, each with what the engine reported of it (sent again as they change).
    case steps([BuildStep])
}
