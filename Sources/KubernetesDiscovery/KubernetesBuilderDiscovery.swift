import AsyncHTTPClient
import BuildGateCore
import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// Keeps one pool of builder pods in `BuilderPool`: list, then watch, the pods matching a label selector in a
/// namespace, the way client-go's reflector does.
///
/// - Only Running, Ready pods with an IP and no deletion timestamp are builders.
/// - A pod may describe itself with labels or annotations, over the template's settings: `buildgate.dev/port` (a
///   number or a container port's name), `buildgate.dev/engine`, `buildgate.dev/capacity`, `buildgate.dev/buildkit`
///   (`true`: dockerd builds with BuildKit), `buildgate.dev/tls-server-name` (TLS with the pool's CA and client
///   certificate, expecting that name) and `buildgate.dev/tls: "false"` (plain HTTP in a pool with TLS material).
///   So pools of several engines share one selector: each workload labels its pods, the gateway's setting stays.
///   A pod that names no engine in a pool without one, or asks for TLS in a pool without a CA, is left out.
/// - The watch resumes from the last `resourceVersion` seen (events and `BOOKMARK`s); a `410 Gone` (HTTP, or an
///   `ERROR` event with code 410) means the history is gone: list again. Other errors back off (1 s doubling to
///   30 s) and retry. The pool keeps the last known pods meanwhile: a broken watch never empties it.
package struct KubernetesBuilderDiscovery: Service {
    package struct Selection: Sendable, Equatable {
        package var namespace: String
        /// An equality-based label selector, `app=buildkitd,tier=builders`.
        package var labelSelector: String

        package init(namespace: String, labelSelector: String) {
            self.namespace = namespace
            self.labelSelector = labelSelector
        }
    }

    private let client: KubernetesAPIClient
    private let selection: Selection
    private let template: BuilderTemplate
    private let pool: BuilderPool
    private let watchTimeout: Int
    private let backoff: Backoff
    private let logger: Logger
    /// The newest resourceVersion this discovery has taken in (from a list, an event or a bookmark).
    private let seenVersion = SeenVersion()

    private final class SeenVersion: Sendable {
        private let version = Mutex<String?>(nil)
        func withLock<T>(_ body: (inout String?) -> T) -> T { version.withLock { body(&$0) } }
    }

    /// How long to wait after a failed list or watch: `initial`, doubling up to `maximum`.
    package struct Backoff: Sendable {
        package var initial: Duration
        package var maximum: Duration

        package init(initial: Duration = .seconds(1), maximum: Duration = .seconds(30)) {
            self.initial = initial
            self.maximum = maximum
        }
    }

    package init(
        credentials: KubernetesCredentials, selection: Selection, template: BuilderTemplate, pool: BuilderPool,
        httpClient: HTTPClient = .shared, watchTimeoutSeconds: Int = 300, backoff: Backoff = .init(), logger: Logger
    ) {
        self.client = KubernetesAPIClient(credentials: credentials, httpClient: httpClient)
        self.selection = selection
        self.template = template
        self.pool = pool
        self.watchTimeout = watchTimeoutSeconds
        self.backoff = backoff
        self.logger = logger
    }

    package var source: String { "kubernetes:\(selection.namespace)/\(selection.labelSelector)" }

    /// The newest resourceVersion taken in so far: the one a resumed watch starts from.
    package var lastSeenResourceVersion: String? { seenVersion.withLock { $0 } }

    private var podsPath: String { "/api/v1/namespaces/\(selection.namespace)/pods" }

    package func run() async throws {
        await cancelWhenGracefulShutdown {
            await reflect()
        }
    }

    /// List, then watch, until cancelled.
    func reflect() async {
        var delay = backoff.initial
        var pods: [String: KubernetesPod] = [:]
        while !Task.isCancelled {
            // List: the whole state, and the resourceVersion to watch from.
            let resourceVersion: String
            do {
                let list = try await list()
                pods = Dictionary(
                    list.items.compactMap { pod in pod.metadata.name.map { ($0, pod) } }, uniquingKeysWith: { $1 })
                publish(pods)
                resourceVersion = list.metadata.resourceVersion ?? ""
                seenVersion.withLock { $0 = resourceVersion }
                delay = backoff.initial
            } catch {
                logger.warning("listing builder pods failed; keeping the last known ones", metadata: metadata(error))
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, backoff.maximum)
                continue
            }
            // Watch from there, resuming after each ended stream, until the history is gone.
            var current = resourceVersion
            watching: while !Task.isCancelled {
                do {
                    switch try await watch(from: current, pods: &pods) {
                    case .ended(let last):
                        current = last
                        delay = backoff.initial
                    case .gone:
                        logger.info(
                            "the watch's history is gone (410); listing builder pods again",
                            metadata: ["buildgate.kubernetes.source": "\(source)"])
                        break watching
                    }
                } catch let failure as KubernetesAPIClient.Failure where failure.httpStatus == 410 {
                    break watching
                } catch {
                    if Task.isCancelled { return }
                    logger.warning("watching builder pods failed; retrying", metadata: metadata(error))
                    try? await Task.sleep(for: delay)
                    delay = min(delay * 2, backoff.maximum)
                }
            }
        }
    }

    private func list() async throws -> KubernetesPodList {
        let response = try await client.get(
            podsPath, query: [("labelSelector", selection.labelSelector)], timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 64 << 20)
        return try JSONDecoder().decode(KubernetesPodList.self, from: Data(body.readableBytesView))
    }

    private enum WatchEnd {
        /// The server closed the stream (its timeout): resume from this resourceVersion.
        case ended(String)
        /// `ERROR` 410: the requested resourceVersion is too old.
        case gone
    }

    private func watch(from resourceVersion: String, pods: inout [String: KubernetesPod]) async throws -> WatchEnd {
        let response = try await client.get(
            podsPath,
            query: [
                ("labelSelector", selection.labelSelector), ("watch", "1"), ("resourceVersion", resourceVersion),
                ("allowWatchBookmarks", "true"), ("timeoutSeconds", String(watchTimeout)),
            ],
            timeout: .seconds(Int64(watchTimeout) + 30))
        var current = resourceVersion
        var buffer: [UInt8] = []
        for try await chunk in response.body {
            buffer += chunk.readableBytesView
            while let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = buffer[..<newline]
                buffer.removeSubrange(...newline)
                guard !line.isEmpty else { continue }
                let event: KubernetesWatchEvent
                do {
                    event = try JSONDecoder().decode(KubernetesWatchEvent.self, from: Data(line))
                } catch {
                    logger.warning("skipping an undecodable watch event", metadata: metadata(error))
                    continue
                }
                switch event.type {
                case "ADDED", "MODIFIED":
                    if let pod = event.object.pod, let name = pod.metadata.name { pods[name] = pod }
                case "DELETED":
                    if let name = event.object.pod?.metadata.name { pods[name] = nil }
                case "BOOKMARK":
                    break
                case "ERROR":
                    if event.object.status?.code == 410 { return .gone }
                    throw KubernetesAPIClient.Failure(
                        httpStatus: event.object.status?.code ?? 500, status: event.object.status)
                default:
                    continue
                }
                if let version = event.object.resourceVersion {
                    current = version
                    seenVersion.withLock { $0 = version }
                }
                if event.type != "BOOKMARK" { publish(pods) }
            }
        }
        return .ended(current)
    }

    /// The ready pods as endpoints, into the pool under this discovery's source.
    private func publish(_ pods: [String: KubernetesPod]) {
        let endpoints = pods.values.filter(\.isReady).compactMap(endpoint(for:)).sorted { $0.name < $1.name }
        pool.update(endpoints, from: source)
    }

    func endpoint(for pod: KubernetesPod) -> BuilderEndpoint? {
        guard pod.metadata.name != nil, pod.status?.podIP != nil else { return nil }
        do {
            return try Self.endpoint(for: pod, namespace: selection.namespace, template: template)
        } catch {
            logger.warning(
                "a builder pod is left out: \(error.message)",
                metadata: ["buildgate.kubernetes.pod": "\(pod.metadata.name ?? "")"])
            return nil
        }
    }

    /// The builder a pod stands for, from its own labels and annotations over the template's settings.
    ///
    /// - Throws: `invalidParameter` saying why the pod cannot be a builder (no name or IP, no port to reach it on, no
    ///   engine, TLS asked for without a CA).
    package static func endpoint(for pod: KubernetesPod, namespace: String, template: BuilderTemplate)
        throws(BuildGateError) -> BuilderEndpoint
    {
        guard let name = pod.metadata.name, let ip = pod.status?.podIP else {
            throw BuildGateError(.invalidParameter, "it has no name or no IP yet")
        }
        func setting(_ key: String) -> String? {
            pod.metadata.annotations?["buildgate.dev/\(key)"] ?? pod.metadata.labels?["buildgate.dev/\(key)"]
        }
        let port: Int?
        switch setting("port").map({ Int($0).map(BuilderTemplate.Port.number) ?? .named($0) }) ?? template.port {
        case .number(let number): port = number
        case .named(let portName):
            port = pod.spec?.containers.lazy.compactMap { $0.ports?.first { $0.name == portName }?.containerPort }.first
        }
        guard let port else { throw BuildGateError(.invalidParameter, "it has no port to reach it on") }
        let overrides = BuilderTemplate.Overrides(
            engine: setting("engine").flatMap(BuilderEngine.init(rawValue:)),
            capacity: setting("capacity").flatMap(Int.init).flatMap { $0 >= 1 ? $0 : nil },
            useBuildKit: setting("buildkit").flatMap(Bool.init),
            tls: setting("tls").flatMap(Bool.init),
            tlsServerName: setting("tls-server-name").flatMap { $0.isEmpty ? nil : $0 })
        return try template.endpoint(name: "\(namespace)/\(name)", host: ip, port: port, overrides: overrides)
    }

    private func metadata(_ error: any Error) -> Logger.Metadata {
        ["buildgate.kubernetes.source": "\(source)", "buildgate.error": "\(error)"]
    }
}
