import AsyncHTTPClient
import BuildGateCore
import Crypto
import Foundation
import Logging
import NIOCore
import ServiceLifecycle

/// Tells the outside world about webhook builds: a signed JSON event to the trigger's callback URL, and the
/// commit status on the forge when the trigger has a status token. Every state change, in order.
///
/// `buildChanged` only queues; this service delivers, one event at a time (so a late `pending` never overwrites a
/// `success`), retrying failures with back-off. Callbacks carry `X-BuildGate-Signature-256: sha256=<hex
/// HMAC-SHA256(trigger secret, body)>`, `X-BuildGate-Event` and a unique `X-BuildGate-Delivery`. A delivery that
/// still fails after the last retry is logged and dropped; it never affects the build.
package final class BuildStatusNotifier: BuildObserver, Service {
    private let triggers: any TriggerRepository
    private let httpClient: HTTPClient
    private let publicURL: String?
    private let retryDelays: [Duration]
    private let logger: Logger
    private let events: AsyncStream<Build>
    private let continuation: AsyncStream<Build>.Continuation

    package init(
        triggers: any TriggerRepository, httpClient: HTTPClient, publicURL: String?,
        retryDelays: [Duration] = [.seconds(1), .seconds(5), .seconds(30)], logger: Logger
    ) {
        self.triggers = triggers
        self.httpClient = httpClient
        self.publicURL = publicURL
        self.retryDelays = retryDelays
        self.logger = logger
        (events, continuation) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(10_000))
    }

    package func buildChanged(_ build: Build) async {
        guard build.triggerID != nil else { return }
        continuation.yield(build)
    }

    package func run() async throws {
        await withGracefulShutdownHandler {
            for await build in events {
                await deliver(build)
            }
        } onGracefulShutdown: {
            self.continuation.finish()
        }
    }

    private func deliver(_ build: Build) async {
        guard let triggerID = build.triggerID,
            let (trigger, secret) = try? await triggers.triggerWithSecret(triggerID)
        else { return }
        let targetURL = publicURL.map { "\($0)/v1/builds/\(build.id)" }
        if let callback = trigger.settings.callbackURL {
            await send("callback", to: callback) {
                try Self.callbackRequest(build, trigger: trigger, secret: secret, url: callback)
            }
        }
        if let token = try? await triggers.statusToken(forTrigger: triggerID), let commit = build.gitSource?.commit,
            let request = ForgeCommitStatus.request(
                forge: trigger.forge, apiURL: trigger.settings.statusAPIURL, repository: trigger.repository,
                commit: commit, build: build, targetURL: targetURL, token: token)
        {
            await send("commit status", to: request.url) { request }
        }
    }

    /// The callback: the build as JSON, signed with the trigger's secret.
    static func callbackRequest(_ build: Build, trigger: Trigger, secret: String, url: String) throws
        -> HTTPClientRequest
    {
        let event = CallbackEvent(
            event: "build.status", trigger: trigger.id, repository: trigger.repository, build: .init(build),
            sentAt: Date())
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        let body = try encoder.encode(event)
        let signature = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Data(secret.utf8)))
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "BuildGate")
        request.headers.add(name: "X-BuildGate-Event", value: "build.status")
        request.headers.add(name: "X-BuildGate-Delivery", value: UUID().uuidString.lowercased())
        request.headers.add(
            name: "X-BuildGate-Signature-256", value: "sha256=" + signature.hexString)
        request.body = .bytes(ByteBuffer(bytes: body))
        return request
    }

    /// Sends with retries on connection errors and 5xx/429; 4xx other than 429 is final.
    private func send(_ what: String, to url: String, _ makeRequest: () throws -> HTTPClientRequest) async {
        for attempt in 0...retryDelays.count {
            do {
                let response = try await httpClient.execute(try makeRequest(), timeout: .seconds(10))
                _ = try? await response.body.collect(upTo: 64 * 1024)
                let code = response.status.code
                if code < 300 { return }
                if code < 500 && code != 429 {
                    logger.warning(
                        "\(what) refused", metadata: ["http.status": "\(code)", "buildgate.url": "\(Self.origin(url))"])
                    return
                }
            } catch {
                if Task.isCancelled { return }
            }
            guard attempt < retryDelays.count else { break }
            try? await Task.sleep(for: retryDelays[attempt])
        }
        logger.warning("\(what) could not be delivered", metadata: ["buildgate.url": "\(Self.origin(url))"])
    }

    /// Scheme, host and port of a URL: enough to recognise it, without paths that may carry tokens.
    private static func origin(_ url: String) -> String {
        guard let components = URLComponents(string: url), let host = components.host else { return "?" }
        return "\(components.scheme ?? "?")://\(host)\(components.port.map { ":\($0)" } ?? "")"
    }
}

/// The callback body.
struct CallbackEvent: Encodable {
    struct BuildSummary: Encodable {
        var id: String
        var status: String
        var reason: String?
        var commit: String?
        var ref: String?
        var images: [String]
        var digests: [String: String]

        init(_ build: Build) {
            id = build.id.rawValue
            status = build.status.rawValue
            reason = build.reason?.rawValue
            commit = build.gitSource?.commit
            ref = build.gitSource?.ref
            images = build.request.images.map(\.description)
            digests = Dictionary(
                build.pushedImages.map { ($0.reference.description, $0.digest) }, uniquingKeysWith: { a, _ in a })
        }
    }
    var event: String
    var trigger: String
    var repository: String
    var build: BuildSummary
    var sentAt: Date
}
