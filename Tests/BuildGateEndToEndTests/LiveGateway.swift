import AsyncHTTPClient
import BuildGateApp
import BuildGateTesting
import Crypto
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Testing

/// Talks to a running gateway over real HTTP.
struct GatewayClient: Sendable {
    let baseURL: String
    /// An API token; by default the admin token the gateway wrote to its data directory on first start.
    let token: String

    init(baseURL: String, dataDirectory: String) throws {
        self.baseURL = baseURL
        token = try String(contentsOfFile: "\(dataDirectory)/admin-token", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    init(baseURL: String, token: String) {
        self.baseURL = baseURL
        self.token = token
    }

    /// A request to `path` with this client's token.
    func request(_ path: String) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: baseURL + path)
        if !token.isEmpty { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        return request
    }

    func post(_ path: String, body: [UInt8] = [], headers: [(String, String)] = []) async throws -> (
        HTTPClientResponse, [UInt8]
    ) {
        var request = request(path)
        request.method = .POST
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.body = .bytes(ByteBuffer(bytes: body))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(120))
        return (response, Array(try await response.body.collect(upTo: 64 << 20).readableBytesView))
    }

    func get(_ path: String) async throws -> (HTTPClientResponse, [UInt8]) {
        let response = try await HTTPClient.shared.execute(request(path), timeout: .seconds(120))
        return (response, Array(try await response.body.collect(upTo: 64 << 20).readableBytesView))
    }

    func postJSON(_ path: String, _ json: String, headers: [(String, String)] = []) async throws -> (
        HTTPClientResponse, [UInt8]
    ) {
        try await post(path, body: Array(json.utf8), headers: [("Content-Type", "application/json")] + headers)
    }

    func put(_ path: String, json: String) async throws -> (HTTPClientResponse, [UInt8]) {
        var request = request(path)
        request.method = .PUT
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: json))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
        return (response, Array(try await response.body.collect(upTo: 1 << 20).readableBytesView))
    }

    func put(_ path: String, body: [UInt8]) async throws -> (HTTPClientResponse, [UInt8]) {
        var request = request(path)
        request.method = .PUT
        request.headers.add(name: "Content-Type", value: "application/octet-stream")
        request.body = .bytes(ByteBuffer(bytes: body))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
        return (response, Array(try await response.body.collect(upTo: 1 << 20).readableBytesView))
    }

    func submit(_ context: [UInt8], query: String) async throws -> BuildJSON {
        let (response, body) = try await post("/v1/builds?\(query)", body: context)
        #expect(response.status.code == 202, "\(String(decoding: body, as: UTF8.self))")
        return try JSONDecoder().decode(BuildJSON.self, from: Data(body))
    }

    /// The newest builds first.
    func builds() async throws -> [BuildJSON] {
        struct Page: Decodable { var builds: [BuildJSON] }
        return try JSONDecoder().decode(Page.self, from: Data(try await get("/v1/builds").1)).builds
    }

    func build(_ id: String) async throws -> BuildJSON {
        let (_, body) = try await get("/v1/builds/\(id)")
        return try JSONDecoder().decode(BuildJSON.self, from: Data(body))
    }

    func log(_ id: String) async throws -> String {
        String(decoding: try await get("/v1/builds/\(id)/logs").1, as: UTF8.self)
    }

    /// Polls the build until `condition` holds (or fails the test after `timeout`).
    func waitFor(_ id: String, timeout: Duration = .seconds(120), _ condition: (BuildJSON) -> Bool) async throws
        -> BuildJSON
    {
        let deadline = ContinuousClock.now + timeout
        var last = try await build(id)
        while !condition(last) {
            guard ContinuousClock.now < deadline else {
                Issue.record("build \(id) stuck in \(last.status); log:\n\(try await log(id))")
                throw CancellationError()
            }
            try await Task.sleep(for: .milliseconds(200))
            last = try await build(id)
        }
        return last
    }

    /// Follows the build's log until it holds `text` (a step's own output: the step really runs), or fails the test
    /// when the log ends without it.
    func waitForLog(_ id: String, containing text: String) async throws {
        let response = try await HTTPClient.shared.execute(
            request("/v1/builds/\(id)/logs?follow=true"), timeout: .seconds(300))
        var received: [UInt8] = []
        for try await chunk in response.body {
            received += chunk.readableBytesView
            if String(decoding: received, as: UTF8.self).contains(text) { return }
        }
        Issue.record("the log of \(id) ended without '\(text)':\n\(String(decoding: received, as: UTF8.self))")
        throw CancellationError()
    }

    func waitUntilFinished(_ id: String) async throws -> BuildJSON {
        try await waitFor(id) { ["succeeded", "failed", "cancelled", "timedOut"].contains($0.status) }
    }
}

/// The real services from `scripts/test-services`.
struct RealServices {
    let registry: String
    let podmanSocket: String

    init() throws {
        registry = try #require(
            RealEngines.registry, "BUILDGATE_TEST_REGISTRY is not set: run the tests with scripts/test")
        podmanSocket = try #require(
            RealEngines.podmanSocket, "BUILDGATE_TEST_PODMAN_SOCKET is not set: run scripts/test")
    }

    /// A gateway built by the same `buildApplication` the executable uses, on an ephemeral port.
    func withGateway<T: Sendable>(
        capacity: Int = 1, allowedGitHosts: [String] = [], insecureRegistries: [String] = [], builder: String? = nil,
        builders: [String]? = nil,
        _ body: @Sendable (GatewayClient, TemporaryDirectory) async throws -> T
    ) async throws -> T {
        let directory = try TemporaryDirectory("e2e")
        defer { directory.remove() }
        var configuration = try BuildGateConfiguration.resolve([], environment: [:])
        configuration.dataDirectory = directory.path
        configuration.migrationsDirectory = migrationsDirectory
        configuration.port = 0
        configuration.builders = try
            (builders ?? [builder ?? "podman=unix://\(podmanSocket),capacity=\(capacity),name=test-podman"])
            .enumerated().map { try BuildGateConfiguration.parseBuilder($1, index: $0) }
        configuration.insecureRegistries = Set([registry] + insecureRegistries)
        if let buildctl = RealEngines.buildctl { configuration.buildctlExecutable = buildctl }
        configuration.limits.allowedGitHosts = allowedGitHosts
        var logger = Logger(label: "e2e")
        logger.logLevel = .warning
        let app = try await buildApplication(configuration, logger: logger)
        return try await app.test(.live) { client in
            try await body(
                try GatewayClient(baseURL: "http://127.0.0.1:\(client.port!)", dataDirectory: directory.path), directory
            )
        }
    }

    /// A context whose steps are unique to this call, so Podman's layer cache never answers for it.
    func context(_ steps: String, extraFile: (String, String)? = nil) -> [UInt8] {
        var tar = TarWriter()
        tar.file("Dockerfile", "FROM \(registry)/busybox:latest\nRUN echo run-\(UUID().uuidString)\n\(steps)")
        if let (name, contents) = extraFile { tar.file(name, contents) }
        tar.end()
        return tar.bytes
    }

    /// A repository name no other test uses.
    func uniqueImage(_ name: String) -> String {
        "\(registry)/e2e-\(name)-\(UUID().uuidString.prefix(8).lowercased()):1"
    }

    /// The Dockerfile text for a context built on the test registry's busybox.
    var dockerfileHeader: String { "FROM \(registry)/busybox:latest\n" }

    /// The manifest digest and image labels the registry holds for `reference`.
    func manifest(of reference: String) async throws -> (digest: String, labels: [String: String], configJSON: String) {
        let withoutRegistry = reference.dropFirst(registry.count + 1)
        let colon = try #require(withoutRegistry.lastIndex(of: ":"))
        let repository = withoutRegistry[..<colon]
        let tag = withoutRegistry[withoutRegistry.index(after: colon)...]
        var request = HTTPClientRequest(url: "http://\(registry)/v2/\(repository)/manifests/\(tag)")
        request.headers.add(
            name: "Accept",
            value: "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        #expect(response.status == .ok)
        let digest = try #require(response.headers.first(name: "Docker-Content-Digest"))
        struct Manifest: Decodable { struct Config: Decodable { var digest: String }; var config: Config }
        let manifest = try JSONDecoder().decode(
            Manifest.self, from: Data(try await response.body.collect(upTo: 1 << 20).readableBytesView))
        let blob = try await HTTPClient.shared.execute(
            HTTPClientRequest(url: "http://\(registry)/v2/\(repository)/blobs/\(manifest.config.digest)"),
            timeout: .seconds(30))
        struct Config: Decodable {
            struct Inner: Decodable {
                enum CodingKeys: String, CodingKey { case labels = "Labels" }
                var labels: [String: String]?
            }
            var config: Inner
        }
        let configBytes = Data(try await blob.body.collect(upTo: 1 << 20).readableBytesView)
        let config = try JSONDecoder().decode(Config.self, from: configBytes)
        return (digest, config.config.labels ?? [:], String(decoding: configBytes, as: UTF8.self))
    }
}

/// A GitHub push delivery as a forge sends it: the body (a push of `commit` to `repository`'s main branch) and its
/// headers, signed with the trigger's `secret` (`X-Hub-Signature-256`) under a new delivery id.
struct SignedGitHubPush {
    let body: [UInt8]
    let headers: [(String, String)]

    init(repository: String, commit: String, before: String? = nil, message: String, secret: String) {
        let previous = before.map { "\"before\":\"\($0)\"," } ?? ""
        body = Array(
            """
            {"ref":"refs/heads/main",\(previous)"after":"\(commit)","deleted":false,
             "repository":{"full_name":"\(repository)","clone_url":"https://github.com/\(repository).git"},
             "head_commit":{"id":"\(commit)","message":"\(message)"}}
            """.utf8)
        let signature = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Data(secret.utf8)))
            .map { String(format: "%02x", $0) }.joined()
        headers = [
            ("Content-Type", "application/json"), ("X-GitHub-Event", "push"), ("X-GitHub-Delivery", UUID().uuidString),
            ("X-Hub-Signature-256", "sha256=\(signature)"),
        ]
    }
}
