import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization

/// An in-process stand-in for the Kubernetes API's pod list and watch (a real API server cannot run here), built
/// from the documented shapes (`../shared/reference/k8s-api/`):
/// - `GET /api/v1/namespaces/{ns}/pods?labelSelector=…` → a `PodList` with `metadata.resourceVersion`;
/// - `…&watch=1&resourceVersion=N` → HTTP 200, chunked, one JSON event per line (`ADDED`, `MODIFIED`, `DELETED`,
///   `BOOKMARK` with bare metadata), from after N; no N (or "0") starts with synthetic `ADDED`s;
/// - a resourceVersion older than the retained history → HTTP 200 with one `ERROR` event holding a `Status` with
///   code 410, reason `Expired`, "too old resource version: N (M)", then the stream closes;
/// - errors as `Status` objects: 401 without the bearer token, 404 for other paths, 500 when told to fail.
/// Tests add pods, make them ready, delete them, compact history, send bookmarks and cut watches.
final class FakeKubernetesAPI: Sendable {
    /// A Pod as the API serves it (the fields a client reads, in their documented places).
    struct Pod: Codable, Sendable {
        struct Metadata: Codable, Sendable {
            var name: String
            var namespace = "builders"
            var uid = UUID().uuidString
            var resourceVersion = ""
            var labels: [String: String]
            var annotations: [String: String]
        }
        struct Spec: Codable, Sendable {
            struct Container: Codable, Sendable {
                struct Port: Codable, Sendable { var name: String; var containerPort: Int; var `protocol` = "TCP" }
                var name = "buildkitd"
                var image = "moby/buildkit:v0.24.0"
                var ports = [Port(name: "buildkitd", containerPort: 1234)]
            }
            var containers = [Container()]
        }
        struct Status: Codable, Sendable {
            struct Condition: Codable, Sendable { var type: String; var status: String }
            var phase = "Running"
            var podIP: String
            var hostIP = "10.1.0.1"
            var conditions: [Condition]
        }
        var kind = "Pod"
        var apiVersion = "v1"
        var metadata: Metadata
        var spec = Spec()
        var status: Status

        func matches(_ selector: [String: String]) -> Bool {
            selector.allSatisfy { metadata.labels[$0.key] == $0.value }
        }
    }

    struct StatusObject: Encodable {
        var kind = "Status"
        var apiVersion = "v1"
        var metadata: [String: String] = [:]
        var status = "Failure"
        var message: String
        var reason: String
        var code: Int
    }

    private struct WatchEvent<Object: Encodable>: Encodable { var type: String; var object: Object }
    private struct Bookmark: Encodable {
        var kind = "Pod"
        var apiVersion = "v1"
        var metadata: [String: String]
    }
    private struct PodList: Encodable {
        var kind = "PodList"
        var apiVersion = "v1"
        var metadata: [String: String]
        var items: [Pod]
    }

    private struct Event {
        var resourceVersion: Int
        var type: String
        var pod: Pod
    }

    /// A line queued for open watches, with the pod it is about (nil for bookmarks), for their selectors.
    private struct Outgoing: Sendable {
        var line: String
        var pod: Pod?
    }

    private struct State {
        var resourceVersion = 100
        var pods: [String: Pod] = [:]
        var events: [Event] = []
        /// Watches from before this resourceVersion get 410.
        var oldestRetained = 0
        var watchers: [UUID: AsyncStream<Outgoing>.Continuation] = [:]
        var failuresLeft = 0
        var requests: [String] = []
        var isShutDown = false
    }

    private let state = Mutex(State())
    let token = "test-token-\(UUID().uuidString.prefix(8))"
    let namespace = "builders"

    // MARK: - What tests do

    /// A pod of the builder pool (`app=builder`), Running with an IP, Ready or not.
    func addPod(
        _ name: String, ip: String, ready: Bool, labels: [String: String] = ["app": "builder"],
        annotations: [String: String] = [:]
    ) {
        let pod = Pod(
            metadata: .init(name: name, labels: labels, annotations: annotations),
            status: .init(
                podIP: ip,
                conditions: [
                    .init(type: "Initialized", status: "True"), .init(type: "Ready", status: ready ? "True" : "False"),
                ]))
        change("ADDED", name) { _ in pod }
    }

    func setReady(_ name: String, _ ready: Bool) {
        change("MODIFIED", name) { pod in
            var pod = pod!
            pod.status.conditions = [.init(type: "Ready", status: ready ? "True" : "False")]
            return pod
        }
    }

    func deletePod(_ name: String) {
        change("DELETED", name) { $0! }
    }

    /// Drops the event history up to now, as etcd compaction does: watches from older versions get 410.
    func compact() {
        state.withLock {
            $0.oldestRetained = $0.resourceVersion; $0.events.removeAll()
        }
    }

    /// Sends a `BOOKMARK` at the current resourceVersion to every open watch.
    func bookmark() {
        state.withLock { state in
            let line = Self.line(
                WatchEvent(
                    type: "BOOKMARK", object: Bookmark(metadata: ["resourceVersion": String(state.resourceVersion)])))
            for watcher in state.watchers.values { watcher.yield(Outgoing(line: line, pod: nil)) }
        }
    }

    /// Ends every open watch stream, as an API server restart or a load balancer would.
    func closeWatches() {
        state.withLock { state in
            for watcher in state.watchers.values { watcher.finish() }
            state.watchers.removeAll()
        }
    }

    /// Ends every watch and every later one at once, so the server can shut down (an open watch would hold it).
    func shutDown() {
        state.withLock { state in
            state.isShutDown = true
            for watcher in state.watchers.values { watcher.finish() }
            state.watchers.removeAll()
        }
    }

    /// The next `count` requests answer 500 with a Status.
    func failNext(_ count: Int) { state.withLock { $0.failuresLeft = count } }
    /// How many of the failures asked for by `failNext` are still to be served.
    var failuresLeft: Int { state.withLock { $0.failuresLeft } }

    /// The query of every request, in order.
    var requests: [String] { state.withLock { $0.requests } }
    var openWatches: Int { state.withLock { $0.watchers.count } }

    // MARK: - Serving

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.get("api/v1/namespaces/:namespace/pods") { request, context in
            try await self.pods(request, context: context)
        }
        return router
    }

    private func pods(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let query = request.uri.queryParameters
        let failing = state.withLock { state -> Bool in
            state.requests.append(request.uri.query ?? "")
            guard state.failuresLeft > 0 else { return false }
            state.failuresLeft -= 1
            return true
        }
        guard request.headers[.authorization] == "Bearer \(token)" else {
            return Self.status(401, reason: "Unauthorized", message: "Unauthorized")
        }
        if failing { return Self.status(500, reason: "InternalError", message: "etcdserver: request timed out") }
        guard context.parameters.get("namespace") == namespace else {
            return Self.status(
                404, reason: "NotFound",
                message: "namespaces \"\(context.parameters.get("namespace") ?? "")\" not found")
        }
        let selector = Self.selector(query["labelSelector"].map(String.init) ?? "")
        guard query["watch"] == "1" || query["watch"] == "true" else {
            let (items, version) = state.withLock { state in
                (
                    state.pods.values.filter { $0.matches(selector) }.sorted { $0.metadata.name < $1.metadata.name },
                    state.resourceVersion
                )
            }
            let list = PodList(metadata: ["resourceVersion": String(version)], items: items)
            return Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: Self.line(list))))
        }

        let from = Int(query["resourceVersion"].map(String.init) ?? "") ?? 0
        let (stream, continuation) = AsyncStream<Outgoing>.makeStream()
        let id = UUID()
        state.withLock { state in
            if state.isShutDown {
                continuation.finish()
                return
            }
            if from != 0 && from < state.oldestRetained {
                let status = StatusObject(
                    message: "too old resource version: \(from) (\(state.oldestRetained))", reason: "Expired", code: 410
                )
                continuation.yield(Outgoing(line: Self.line(WatchEvent(type: "ERROR", object: status)), pod: nil))
                continuation.finish()
                return
            }
            if from == 0 {
                for pod in state.pods.values {
                    continuation.yield(Outgoing(line: Self.line(WatchEvent(type: "ADDED", object: pod)), pod: pod))
                }
            } else {
                for event in state.events where event.resourceVersion > from {
                    continuation.yield(
                        Outgoing(line: Self.line(WatchEvent(type: event.type, object: event.pod)), pod: event.pod))
                }
            }
            state.watchers[id] = continuation
        }
        return Response(
            status: .ok, headers: [.contentType: "application/json"],
            body: ResponseBody { writer in
                for await outgoing in stream where outgoing.pod?.matches(selector) ?? true {
                    try await writer.write(ByteBuffer(string: outgoing.line))
                }
                self.state.withLock { _ = $0.watchers.removeValue(forKey: id) }
                try await writer.finish(nil)
            })
    }

    // MARK: - Shapes

    private func change(_ type: String, _ name: String, _ update: (Pod?) -> Pod) {
        state.withLock { state in
            state.resourceVersion += 1
            var pod = update(state.pods[name])
            pod.metadata.resourceVersion = String(state.resourceVersion)
            state.pods[name] = type == "DELETED" ? nil : pod
            state.events.append(Event(resourceVersion: state.resourceVersion, type: type, pod: pod))
            let line = Self.line(WatchEvent(type: type, object: pod))
            for watcher in state.watchers.values { watcher.yield(Outgoing(line: line, pod: pod)) }
        }
    }

    private static func status(_ code: Int, reason: String, message: String) -> Response {
        Response(
            status: HTTPResponse.Status(code: code), headers: [.contentType: "application/json"],
            body: .init(
                byteBuffer: ByteBuffer(string: line(StatusObject(message: message, reason: reason, code: code)))))
    }

    static func line(_ object: some Encodable) -> String {
        String(decoding: try! JSONEncoder().encode(object), as: UTF8.self) + "\n"
    }

    private static func selector(_ text: String) -> [String: String] {
        Dictionary(
            text.split(separator: ",").compactMap { pair -> (String, String)? in
                let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
                return parts.count == 2 ? (parts[0], parts[1]) : nil
            }, uniquingKeysWith: { $1 })
    }
}
