import BuildGateCore
import BuildGateTesting
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Testing

@testable import KubernetesDiscovery

/// Kubernetes discovery against `FakeKubernetesAPI`: list, watch, bookmarks, 410 Gone, errors.
// A time limit turns a watch that never ends into a failure instead of a hung run.
@Suite(.timeLimit(.minutes(2))) struct KubernetesBuilderDiscoveryTests {
    /// Runs discovery against a fresh fake API for the duration of `body`.
    func withDiscovery(
        token: String? = nil, template: BuilderTemplate = BuilderTemplate(engine: .buildkit, port: .named("buildkitd")),
        _ body: @Sendable (FakeKubernetesAPI, BuilderPool, KubernetesBuilderDiscovery) async throws -> Void
    ) async throws {
        let api = FakeKubernetesAPI()
        let app = Application(router: api.router(), configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            let pool = BuilderPool()
            let discovery = KubernetesBuilderDiscovery(
                credentials: KubernetesCredentials(
                    server: "http://127.0.0.1:\(client.port!)", token: token ?? api.token),
                selection: .init(namespace: api.namespace, labelSelector: "app=builder"), template: template,
                pool: pool,
                // Short back-offs: a test waits for what discovery does, never for the wall clock to pass a second.
                watchTimeoutSeconds: 30, backoff: .init(initial: .milliseconds(10), maximum: .milliseconds(40)),
                logger: Logger(label: "test"))
            let task = Task { await discovery.reflect() }
            do {
                try await body(api, pool, discovery)
            } catch {
                task.cancel()
                api.shutDown()
                await task.value
                throw error
            }
            // Discovery ends, and no watch is left open to hold the server's shutdown.
            task.cancel()
            api.shutDown()
            await task.value
        }
    }

    /// Waits until `condition` holds (failing the test after 30 s, a bound for a hung run, not a timing).
    func until(_ what: Comment, _ condition: () -> Bool) async throws {
        guard try await ChildProcess.wait(for: .seconds(30), until: condition) else {
            Issue.record("never: \(what)")
            throw CancellationError()
        }
    }

    /// The pool's builders of this source, by name, once `condition` holds (or fails after 30 s).
    @discardableResult
    func eventually(_ pool: BuilderPool, _ what: Comment, _ condition: ([BuilderEndpoint]) -> Bool) async throws
        -> [BuilderEndpoint]
    {
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            let endpoints = pool.members.filter { $0.source != nil }.map(\.endpoint)
            if condition(endpoints) { return endpoints }
            try await Task.sleep(for: .milliseconds(20))
        }
        Issue.record("never: \(what); pool: \(pool.members.map(\.endpoint.name))")
        throw CancellationError()
    }

    @Test func readyPodsWithAnIPAreBuildersAndTheWatchKeepsThePoolCurrent() async throws {
        try await withDiscovery { api, pool, _ in
            api.addPod("bk-0", ip: "10.2.0.10", ready: true)
            api.addPod("bk-1", ip: "10.2.0.11", ready: false)
            api.addPod("web-0", ip: "10.2.0.99", ready: true, labels: ["app": "web"])
            let first = try await eventually(pool, "bk-0 alone") { $0.map(\.name) == ["builders/bk-0"] }
            #expect(first.first?.address == .tcp(host: "10.2.0.10", port: 1234))
            #expect(first.first?.engine == .buildkit)

            api.setReady("bk-1", true)
            try await eventually(pool, "bk-1 ready") { $0.map(\.name) == ["builders/bk-0", "builders/bk-1"] }
            api.setReady("bk-0", false)
            try await eventually(pool, "bk-0 not ready") { $0.map(\.name) == ["builders/bk-1"] }
            api.deletePod("bk-1")
            try await eventually(pool, "bk-1 deleted") { $0.isEmpty }

            // Labels and annotations override the pool's engine, capacity and port.
            api.addPod(
                "pm-0", ip: "10.2.0.20", ready: true, labels: ["app": "builder", "buildgate.dev/engine": "podman"],
                annotations: ["buildgate.dev/capacity": "3", "buildgate.dev/port": "8888"])
            let podman = try await eventually(pool, "pm-0") { $0.map(\.name) == ["builders/pm-0"] }
            #expect(podman.first?.engine == .podman)
            #expect(podman.first?.capacity == 3)
            #expect(podman.first?.address == .tcp(host: "10.2.0.20", port: 8888))
            // One list, then watches only: no re-listing while the watch is healthy.
            #expect(api.requests.filter { !$0.contains("watch=") }.count == 1)
        }
    }

    @Test func aWatchResumesFromTheLastResourceVersionIncludingABookmarks() async throws {
        try await withDiscovery { api, pool, discovery in
            api.addPod("bk-0", ip: "10.2.0.10", ready: true)
            try await eventually(pool, "bk-0") { $0.count == 1 }
            while api.openWatches == 0 { try await Task.sleep(for: .milliseconds(10)) }
            // A change this watch does not see (another label) moves the version on; only the bookmark tells.
            api.addPod("web-0", ip: "10.2.0.99", ready: true, labels: ["app": "web"])
            api.bookmark()
            try await until("the bookmark taken in") { discovery.lastSeenResourceVersion == "102" }
            let bookmarked = "resourceVersion=102"
            api.closeWatches()
            api.addPod("bk-1", ip: "10.2.0.11", ready: true)
            // The next watch starts from the bookmark's version and gets bk-1's ADDED from the history.
            try await eventually(pool, "bk-1 after the watch was cut") { $0.count == 2 }
            let watches = api.requests.filter { $0.contains("watch=1") }
            #expect(watches.count >= 2)
            #expect(watches.last?.contains(bookmarked) == true, "\(watches)")
            #expect(api.requests.filter { !$0.contains("watch=") }.count == 1, "resuming needs no new list")
        }
    }

    @Test func aWatchWhoseHistoryIsGoneListsAgainAndNeverEmptiesThePoolMeanwhile() async throws {
        try await withDiscovery { api, pool, _ in
            api.addPod("bk-0", ip: "10.2.0.10", ready: true)
            api.addPod("bk-1", ip: "10.2.0.11", ready: true)
            try await eventually(pool, "two builders") { $0.count == 2 }
            while api.openWatches == 0 { try await Task.sleep(for: .milliseconds(10)) }
            // The watch breaks and the API refuses for a while; meanwhile pods change and history is compacted.
            api.failNext(1_000)
            api.closeWatches()
            api.deletePod("bk-0")
            api.addPod("bk-2", ip: "10.2.0.12", ready: true)
            api.compact()
            // Discovery retries against the failing API several times; the pool stays as it was meanwhile.
            try await until("three refused retries") { api.failuresLeft <= 997 }
            #expect(
                pool.members.map(\.endpoint.name) == ["builders/bk-0", "builders/bk-1"],
                "the pool keeps its last known builders")
            // The API is back: resuming from the old version is 410, so discovery lists again and sees the change.
            api.failNext(0)
            try await eventually(pool, "the relisted state") { $0.map(\.name) == ["builders/bk-1", "builders/bk-2"] }
            #expect(api.requests.filter { !$0.contains("watch=") }.count == 2, "\(api.requests)")
        }
    }

    @Test func apiErrorsBackOffAndKeepTheLastKnownBuilders() async throws {
        try await withDiscovery { api, pool, _ in
            api.addPod("bk-0", ip: "10.2.0.10", ready: true)
            try await eventually(pool, "bk-0") { $0.count == 1 }
            while api.openWatches == 0 { try await Task.sleep(for: .milliseconds(10)) }
            api.failNext(2)
            api.closeWatches()
            try await until("both failures served") { api.failuresLeft == 0 }
            #expect(pool.members.map(\.endpoint.name) == ["builders/bk-0"], "a failing API keeps the pool")
            api.addPod("bk-1", ip: "10.2.0.11", ready: true)
            try await eventually(pool, "recovered") { $0.count == 2 }
        }
    }

    @Test func aRefusedTokenFindsNoBuildersAndSaysSo() async throws {
        try await withDiscovery(token: "wrong") { api, pool, _ in
            api.addPod("bk-0", ip: "10.2.0.10", ready: true)
            // Refused, retried, refused again: and still no builder.
            try await until("a retry after the refusal") { api.requests.count >= 3 }
            #expect(pool.members.isEmpty)
        }
    }

    @Test func inClusterCredentialsComeFromTheServiceAccountFiles() throws {
        let directory = try TemporaryDirectory("serviceaccount")
        defer { directory.remove() }
        try "token-1\n".write(toFile: "\(directory.path)/token", atomically: true, encoding: .utf8)
        try "ca".write(toFile: "\(directory.path)/ca.crt", atomically: true, encoding: .utf8)
        try "buildgate\n".write(toFile: "\(directory.path)/namespace", atomically: true, encoding: .utf8)
        let credentials = try #require(
            KubernetesCredentials.inCluster(
                environment: ["KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"],
                directory: directory.path))
        #expect(credentials.server == "https://10.96.0.1:443")
        #expect(credentials.tokenFile == "\(directory.path)/token")
        #expect(credentials.caFile == "\(directory.path)/ca.crt")
        #expect(credentials.namespace == "buildgate")
        #expect(KubernetesCredentials.inCluster(environment: [:], directory: directory.path) == nil)
    }

    @Test func theRealPodShapesDecode() throws {
        // A real `kubectl get pods -o json` capture: every pod in it is Running and Ready with an IP.
        let url = URL(
            fileURLWithPath:
                "\(repositoryRoot)/Tests/KubernetesDiscoveryTests/Fixtures/real-kubectl-pod-list-minikube.json")
        let list = try JSONDecoder().decode(KubernetesPodList.self, from: Data(contentsOf: url))
        #expect(!list.items.isEmpty)
        #expect(list.items.allSatisfy { $0.isReady })
        let status = try JSONDecoder().decode(
            KubernetesStatus.self,
            from: Data(
                contentsOf: URL(
                    fileURLWithPath:
                        "\(repositoryRoot)/Tests/KubernetesDiscoveryTests/Fixtures/status-404-notfound-job.json")))
        #expect(status.code == 404)
        #expect(status.reason == "NotFound")
    }
}

/// A pod describes itself over its pool's template, so pools of several engines share one selector.
struct KubernetesPodEndpointTests {
    func pod(_ annotations: [String: String], labels: [String: String] = [:], ports: [String: Int] = ["builder": 1234])
        -> KubernetesPod
    {
        KubernetesPod(
            metadata: .init(name: "b-0", labels: labels, annotations: annotations),
            spec: .init(containers: [
                .init(name: "b", ports: ports.map { .init(name: $0.key, containerPort: $0.value) })
            ]),
            status: .init(phase: "Running", podIP: "10.1.2.3", conditions: [.init(type: "Ready", status: "True")]))
    }

    var mixed: BuilderTemplate {
        var template = BuilderTemplate(engine: nil, port: .named("builder"))
        template.tls = .init(caCertificate: "/ca.pem", clientCertificate: "/cert.pem", clientKey: "/key.pem")
        return template
    }

    @Test func eachPodNamesItsEngineTLSAndBuildKit() throws {
        let buildkitd = try KubernetesBuilderDiscovery.endpoint(
            for: pod(["buildgate.dev/tls-server-name": "buildkitd"], labels: ["buildgate.dev/engine": "buildkit"]),
            namespace: "ns", template: mixed)
        #expect(buildkitd.engine == .buildkit && buildkitd.address == .tcp(host: "10.1.2.3", port: 1234))
        #expect(buildkitd.tls?.serverName == "buildkitd" && buildkitd.tls?.clientKey == "/key.pem")

        let podman = try KubernetesBuilderDiscovery.endpoint(
            for: pod(["buildgate.dev/tls": "false", "buildgate.dev/engine": "podman", "buildgate.dev/capacity": "3"]),
            namespace: "ns", template: mixed)
        #expect(podman.engine == .podman && podman.tls == nil && podman.capacity == 3)

        let dockerd = try KubernetesBuilderDiscovery.endpoint(
            for: pod(
                ["buildgate.dev/engine": "docker", "buildgate.dev/buildkit": "true", "buildgate.dev/port": "dockerd"],
                ports: ["dockerd": 2376]),
            namespace: "ns", template: mixed)
        #expect(dockerd.useBuildKit && dockerd.address == .tcp(host: "10.1.2.3", port: 2376))
        #expect(dockerd.tls?.serverName == nil, "the pool's TLS, expecting the address's own name")
    }

    @Test func aPodThatCannotBeReachedAsItSaysIsLeftOut() throws {
        #expect(throws: BuildGateError.self, "no engine in the pod or the pool") {
            try KubernetesBuilderDiscovery.endpoint(for: pod([:]), namespace: "ns", template: mixed)
        }
        let plain = BuilderTemplate(engine: .buildkit, port: .named("builder"))
        #expect(throws: BuildGateError.self, "TLS asked for in a pool with no CA") {
            try KubernetesBuilderDiscovery.endpoint(
                for: pod(["buildgate.dev/tls-server-name": "buildkitd"]), namespace: "ns", template: plain)
        }
        #expect(throws: BuildGateError.self, "no port of that name") {
            try KubernetesBuilderDiscovery.endpoint(
                for: pod(["buildgate.dev/engine": "podman"], ports: ["other": 1]), namespace: "ns", template: mixed)
        }
    }
}
