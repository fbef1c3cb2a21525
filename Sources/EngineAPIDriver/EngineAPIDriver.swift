import AsyncHTTPClient
import BuildGateCore
import BuildKitProgress
import ContextArchive
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOFileSystem
import NIOHTTP1
import ServiceLifecycle

/// Runs builds through the Docker-compatible Engine API (`POST /build`, `POST /images/{name}/push`), as served by
/// `podman system service` and by dockerd.
///
/// The stored context archive is streamed as the request body; the JSON message stream becomes log text; an
/// `error` message means failure even though the HTTP status stays 200. Each image is then pushed and the digest
/// the registry stored is read from the push stream.
///
/// Engine difference that shapes cancellation: dockerd cancels a build when its client disconnects, Podman 4.3
/// keeps building. So after a cancelled Podman build this driver waits (bounded by `engineStopTimeout`) until the
/// engine has no build container left that appeared during the build, and only then returns.
package struct EngineAPIDriver: BuilderDriver {
    package struct Configuration: Sendable {
        /// Registries reached over plain HTTP or with self-signed certificates (`tlsVerify=false` on push); loopback
        /// registries (`localhost`, 127.0.0.0/8, `::1`) are always.
        package var insecureRegistries: Set<String> = []
        /// How long to wait for a cancelled Podman build to stop before giving its slot back anyway.
        package var engineStopTimeout: Duration = .seconds(600)
        /// How often to look whether a cancelled Podman build has stopped.
        package var engineStopPollInterval: Duration = .seconds(1)

        package init() {}
    }

    private let httpClient: HTTPClient
    private let configuration: Configuration
    private let logger: Logger
    /// Platforms by engine description ("Podman Engine 4.3.1 (API 1.41) at unix:///…"), as `/version` told them.
    private let platformsSeen = NIOLockedValueBox<[String: [Platform]]>([:])

    package init(httpClient: HTTPClient, configuration: Configuration = .init(), logger: Logger) {
        self.httpClient = httpClient
        self.configuration = configuration
        self.logger = logger
    }

    package func run(
        _ job: BuildJob,
        on endpoint: BuilderEndpoint,
        events: @escaping @Sendable (BuildEvent) async -> Void
    ) async -> BuildOutcome {
        let engine = EngineAPIClient(endpoint: endpoint, httpClient: httpClient)
        let description: String
        let containersBefore: Set<String>
        do {
            description = try await engine.ping()
            containersBefore = endpoint.engine == .podman ? try await engine.buildContainers() : []
        } catch {
            if Task.isCancelled { return .failed(.cancelled, message: "cancelled before the engine was reached") }
            return .failed(
                .builderUnavailable,
                message: "builder \(endpoint.name) is unreachable: \(EngineAPIClient.explain(error))")
        }

        let built = await build(job, endpoint: endpoint, engine: engine, description: description, events: events)
        if Task.isCancelled {
            if endpoint.engine == .podman {
                await events(
                    .output("[buildgate] waiting for Podman to stop the build (it keeps building after a disconnect)\n")
                )
                await waitForPodmanToStop(engine, ignoring: containersBefore)
            }
            return .failed(.cancelled, message: "the build was stopped")
        }
        guard case .succeeded = built else { return built }

        var pushed: [PushedImage] = []
        for image in job.request.images {
            await events(.pushing(image))
            switch await push(image, job: job, engine: engine, events: events) {
            case .pushed(let digest):
                let result = PushedImage(reference: image, digest: digest)
                pushed.append(result)
                await events(.pushed(result))
            case .failed(let outcome):
                return Task.isCancelled ? .failed(.cancelled, message: "the build was stopped while pushing") : outcome
            }
        }
        return .succeeded(pushed)
    }

    /// `/_ping` on every probe; `/version` (for the platform) only for an engine not seen before at that address
    /// and version, since Podman takes about 270 ms of its own CPU to answer it.
    package func probe(_ endpoint: BuilderEndpoint) async throws -> BuilderProbe {
        let engine = EngineAPIClient(endpoint: endpoint, httpClient: httpClient)
        let description = try await engine.ping()
        if let known = platformsSeen.withLockedValue({ $0[description] }) {
            return BuilderProbe(version: description, platforms: known)
        }
        let platforms = try await engine.platforms()
        platformsSeen.withLockedValue { seen in
            // Pods come and go under new addresses: forget them all now and then rather than keep every one.
            if seen.count >= 1024 { seen.removeAll() }
            seen[description] = platforms
        }
        return BuilderProbe(version: description, platforms: platforms)
    }

    // MARK: - Build

    private func build(
        _ job: BuildJob,
        endpoint: BuilderEndpoint,
        engine: EngineAPIClient,
        description: String,
        events: @escaping @Sendable (BuildEvent) async -> Void
    ) async -> BuildOutcome {
        let request = job.request
        let engineRequest = EngineBuildRequest(job, endpoint: endpoint)
        let prefix = ByteBuffer(
            bytes: ArchivePrefix.entries(engineRequest.secretFiles, gzip: job.context.compression == .gzip))

        do {
            return try await FileSystem.shared.withFileHandle(forReadingAt: FilePath(job.contextPath)) { file in
                let response = try await engine.execute(
                    .POST, "/v1.41/build", query: engineRequest.query, headers: engineRequest.headers,
                    body: .stream(
                        PrefixedChunks(prefix: prefix, rest: file.readChunks(chunkLength: .kibibytes(256))),
                        length: .known(Int64(prefix.readableBytes) + job.context.size)),
                    timeout: .seconds(Int64(request.timeoutSeconds) + 60))
                guard response.status == .ok else {
                    let message = try await EngineAPIClient.errorMessage(of: response)
                    return .failed(
                        .buildFailed, message: "the engine refused the build (\(response.status.code)): \(message)")
                }
                await events(.accepted(engine: description))
                var decoder = EngineStreamDecoder()
                var stream = EngineBuildStream()
                for try await buffer in response.body {
                    for event in stream.events(of: decoder.decode(buffer.readableBytesView), at: Date()) {
                        await events(event)
                    }
                }
                for event in stream.events(of: decoder.finish(), at: Date()) + stream.finish(at: Date()) {
                    await events(event)
                }
                if let failure = stream.failure { return .failed(.buildFailed, message: failure) }
                return .succeeded([])
            }
        } catch let error as EngineAPIClient.RequestHeadTooLarge {
            return .failed(.buildFailed, message: error.description)
        } catch {
            if Task.isCancelled { return .failed(.cancelled, message: "the build was stopped") }
            return .failed(
                .builderUnavailable, message: "lost the builder during the build: \(EngineAPIClient.explain(error))")
        }
    }

    // MARK: - Push

    private func push(
        _ image: ImageReference,
        job: BuildJob,
        engine: EngineAPIClient,
        events: @escaping @Sendable (BuildEvent) async -> Void
    ) async -> PushResult {
        var query = [("tag", image.tag)]
        if configuration.insecureRegistries.contains(image.registry) || image.isLoopbackRegistry {
            query.append(("tlsVerify", "false"))
        }
        var headers = HTTPHeaders()
        headers.add(
            name: "X-Registry-Auth",
            value: Self.registryAuth(job.registryCredentials[image.registry], for: image.registry))
        do {
            let response = try await engine.execute(
                .POST, "/v1.41/images/\(image.name)/push", query: query, headers: headers, body: nil,
                timeout: .seconds(3600))
            guard response.status == .ok else {
                let message = try await EngineAPIClient.errorMessage(of: response)
                return .failed(
                    .failed(.pushFailed, message: "pushing \(image) failed (\(response.status.code)): \(message)"))
            }
            var decoder = EngineStreamDecoder()
            var digest: String?
            var failure: String?
            for try await buffer in response.body {
                for message in decoder.decode(buffer.readableBytesView) {
                    switch message {
                    case .error(let text): failure = text
                    case .status(let text, _, _): digest = EngineStreamDecoder.pushedDigest(in: text) ?? digest
                    default: break
                    }
                }
            }
            for case .error(let text) in decoder.finish() { failure = text }
            if let failure {
                await events(.output("ERROR: \(failure.trimmingCharacters(in: .newlines))\n"))
                return .failed(.failed(.pushFailed, message: "pushing \(image) failed: \(failure)"))
            }
            guard let digest else {
                return .failed(
                    .failed(.pushFailed, message: "pushing \(image): the engine reported no manifest digest"))
            }
            return .pushed(digest: digest)
        } catch {
            return .failed(.failed(.pushFailed, message: "pushing \(image) failed: \(EngineAPIClient.explain(error))"))
        }
    }

    private enum PushResult {
        case pushed(digest: String)
        case failed(BuildOutcome)
    }

    // MARK: - Cancellation on Podman

    /// Waits until the engine lists no build container that was not there before the build (checked twice in a
    /// row, as stages hand over between containers), or until `engineStopTimeout`.
    private func waitForPodmanToStop(_ engine: EngineAPIClient, ignoring before: Set<String>) async {
        let deadline = ContinuousClock.now + configuration.engineStopTimeout
        var quietChecks = 0
        // When the gateway shuts down, the build was settled as interrupted already: do not hold the exit for it.
        while ContinuousClock.now < deadline && quietChecks < 2 && !Task.isShuttingDownGracefully {
            // The task is cancelled; sleep and ask in a child that is not, so the wait really happens.
            let busy = await Task.detached { [configuration] in
                try? await Task.sleep(for: configuration.engineStopPollInterval)
                guard let now = try? await engine.buildContainers() else { return false }
                return !now.subtracting(before).isEmpty
            }.value
            quietChecks = busy ? 0 : quietChecks + 1
        }
        if quietChecks < 2 {
            logger.warning("a cancelled Podman build did not stop in time; giving its slot back")
        }
    }

    // MARK: - Encoding

    static func json(_ value: some Encodable) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? encoder.encode(value)) ?? Data("{}".utf8), as: UTF8.self)
    }

    private struct AuthConfig: Encodable {
        var username: String?
        var password: String?
        var serveraddress: String?
    }

    /// `X-Registry-Auth`: base64url of one auth config. dockerd insists on the header, so an empty config is sent
    /// when there are no credentials.
    static func registryAuth(_ credential: RegistryCredential?, for registry: String) -> String {
        let config =
            credential.map {
                AuthConfig(username: $0.username, password: $0.password, serveraddress: registry)
            } ?? AuthConfig()
        return base64URL((try? JSONEncoder().encode(config)) ?? Data("{}".utf8))
    }

    /// `X-Registry-Config`: base64url of a map from registry host to auth config, for pulls during the build.
    static func registryConfig(_ credentials: [String: RegistryCredential]) -> String {
        let map = credentials.mapValues { AuthConfig(username: $0.username, password: $0.password, serveraddress: nil) }
        return base64URL((try? JSONEncoder().encode(map)) ?? Data("{}".utf8))
    }

    private static func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
    }
}

/// A first buffer, then the chunks of `rest`: a request body with bytes in front of a file.
struct PrefixedChunks<Rest: AsyncSequence & Sendable>: AsyncSequence, Sendable where Rest.Element == ByteBuffer {
    let prefix: ByteBuffer
    let rest: Rest

    struct AsyncIterator: AsyncIteratorProtocol {
        var prefix: ByteBuffer?
        var rest: Rest.AsyncIterator

        mutating func next() async throws -> ByteBuffer? {
            if let first = prefix.take(), first.readableBytes > 0 { return first }
            return try await rest.next()
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(prefix: prefix, rest: rest.makeAsyncIterator()) }
}
