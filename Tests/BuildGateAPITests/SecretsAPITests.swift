import AsyncHTTPClient
import BuildGateAPI
import BuildGateCore
import BuildGateStore
import BuildGateTesting
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import ServiceLifecycleTestKit
import Testing

/// Build secrets and the options not every engine has: stored write-only per tenant, checked at intake (422 with
/// nothing stored when a secret is missing or no builder in the pool could honour an option).
struct SecretsAPITests {
    @Test func aSecretIsWriteOnlyAndPerTenant() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        let other = try await harness.auth(tenant: "acme", scopes: [.admin])
        let writer = try await harness.auth(tenant: "default", scopes: [.buildsWrite])
        try await harness.application().test(.router) { client in
            let put = try await client.execute(
                uri: "/v1/secrets/npmrc", method: .put, headers: harness.auth, body: ByteBuffer(string: "//registry/:_authToken=abc123\n"))
            #expect(put.status == .noContent)
            let listed = try await client.execute(uri: "/v1/secrets", method: .get, headers: harness.auth)
            #expect(listed.status == .ok)
            #expect(listed.text.contains(#""name":"npmrc""#))
            #expect(!listed.text.contains("abc123"))
            #expect(try await harness.secrets.secrets(tenant: .default, names: ["npmrc"])["npmrc"]?.bytes == Array("//registry/:_authToken=abc123\n".utf8))

            // Another tenant neither sees nor deletes it; a token without admin cannot touch secrets.
            #expect(!(try await client.execute(uri: "/v1/secrets", method: .get, headers: other).text.contains("npmrc")))
            #expect(try await client.execute(uri: "/v1/secrets/npmrc", method: .delete, headers: other).status == .notFound)
            #expect(try await client.execute(uri: "/v1/secrets/npmrc", method: .put, headers: writer, body: ByteBuffer(string: "x")).status == .forbidden)

            // Bad names, empty and oversized values.
            for name in [".hidden", "a%2Fb", String(repeating: "n", count: 65)] {
                let response = try await client.execute(uri: "/v1/secrets/\(name)", method: .put, headers: harness.auth, body: ByteBuffer(string: "v"))
                #expect(response.status == .badRequest, "\(name)")
            }
            #expect(try await client.execute(uri: "/v1/secrets/empty", method: .put, headers: harness.auth).status == .badRequest)
            let huge = try await client.execute(
                uri: "/v1/secrets/huge", method: .put, headers: harness.auth, body: ByteBuffer(repeating: 0x41, count: 64 * 1024 + 1))
            #expect(huge.status == .contentTooLarge)
            #expect(try await harness.secrets.names(of: .default).map(\.name) == ["npmrc"])

            #expect(try await client.execute(uri: "/v1/secrets/npmrc", method: .delete, headers: harness.auth).status == .noContent)
            #expect(try await harness.secrets.names(of: .default).isEmpty)
        }
    }

    @Test func aBuildNamingAnUnsetSecretIs422AndStoresNothing() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        try await harness.application().test(.router) { client in
            let refused = try await client.execute(
                uri: "/v1/builds?image=r.example.com/a:1&secret=npmrc", method: .post, headers: harness.auth,
                body: ByteBuffer(bytes: sampleContext()))
            #expect(refused.status == .unprocessableContent)
            let error = try refused.decode(ErrorEnvelope.self).error
            #expect(error.code == "noSuchSecret")
            #expect(error.message.contains("PUT /v1/secrets/npmrc"))
            #expect(try await harness.buildCount() == 0)
            #expect(harness.contextFiles.isEmpty)

            _ = try await client.execute(uri: "/v1/secrets/npmrc", method: .put, headers: harness.auth, body: ByteBuffer(string: "token-xyz"))
            let accepted = try await client.execute(
                uri: "/v1/builds?image=r.example.com/a:1&secret=npmrc&cacheFrom=r.example.com/a:cache&cacheTo=r.example.com/a:cache",
                method: .post, headers: harness.auth, body: ByteBuffer(bytes: sampleContext()))
            #expect(accepted.status == .accepted)
            let build = try accepted.decode(BuildJSON.self)
            #expect(build.parameters.secrets == ["npmrc"])
            #expect(build.parameters.cacheFrom == ["r.example.com/a:cache"])
            #expect(build.parameters.cacheTo == "r.example.com/a:cache")
            #expect(build.steps.isEmpty)
            #expect(!accepted.text.contains("token-xyz"))
        }
    }

    @Test func anOptionNoBuilderInThePoolSupportsIs422AndStoresNothing() async throws {
        // A pool of dockerd builders only: no secrets, no cache import or export.
        let harness = try await APIHarness(builders: [BuilderEndpoint(name: "d", engine: .docker, address: .unix(path: "/d"))])
        defer { harness.directory.remove() }
        try await harness.application().test(.router) { client in
            _ = try await client.execute(uri: "/v1/secrets/npmrc", method: .put, headers: harness.auth, body: ByteBuffer(string: "token"))
            for query in ["secret=npmrc", "cacheTo=r.example.com/a:cache", "cacheFrom=r.example.com/a:cache"] {
                let refused = try await client.execute(
                    uri: "/v1/builds?image=r.example.com/a:1&\(query)", method: .post, headers: harness.auth,
                    body: ByteBuffer(bytes: sampleContext()))
                #expect(refused.status == .unprocessableContent, "\(query)")
                let error = try refused.decode(ErrorEnvelope.self).error
                #expect(error.code == "noCapableBuilder")
                #expect(error.message.contains("'\(query.prefix { $0 != "=" })'"))
            }
            // The same through the JSON (git) form.
            var json = harness.auth
            json[.contentType] = "application/json"
            let git = try await client.execute(
                uri: "/v1/builds", method: .post, headers: json,
                body: ByteBuffer(string: #"{"source":{"git":{"url":"https://g.example.com/o/r.git","ref":"main"}},"images":["r.example.com/a:1"],"secrets":["npmrc"]}"#))
            #expect(git.status == .unprocessableContent)
            // Without those options the same pool takes the build.
            let plain = try await client.execute(
                uri: "/v1/builds?image=r.example.com/a:1", method: .post, headers: harness.auth, body: ByteBuffer(bytes: sampleContext()))
            #expect(plain.status == .accepted)
        }
        #expect(try await harness.buildCount() == 1)
    }
}

/// Scheduling options at intake: queue position and TTL, run policies.
struct SchedulingAPITests {
    @Test func latestOnlySupersedesTheQueuedOlderBuildOfItsKeyAndQueuePositionsCount() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        try await harness.application().test(.router) { client in
            func submit(_ query: String) async throws -> BuildJSON {
                let response = try await client.execute(
                    uri: "/v1/builds?image=r.example.com/a:1&\(query)", method: .post, headers: harness.auth,
                    body: ByteBuffer(bytes: sampleContext()))
                #expect(response.status == .accepted, "\(response.text)")
                return try response.decode(BuildJSON.self)
            }
            let older = try await submit("runPolicy=latestOnly&runKey=main")
            let other = try await submit("runPolicy=latestOnly&runKey=feature")
            #expect(other.queue?.position == 2)
            let newer = try await submit("runPolicy=latestOnly&runKey=main&queueTTL=60")

            let superseded = try await client.execute(uri: "/v1/builds/\(older.id)", method: .get, headers: harness.auth).decode(BuildJSON.self)
            #expect(superseded.status == "cancelled")
            #expect(superseded.reason == "superseded")
            #expect(superseded.message == "superseded by the newer build \(newer.id)")
            #expect(superseded.queue == nil)
            let log = try await client.execute(uri: "/v1/builds/\(older.id)/logs", method: .get, headers: harness.auth)
            #expect(log.text.contains("superseded by the newer build \(newer.id)"))
            #expect(log.headers[HTTPField.Name("X-Log-Complete")!] == "true")

            let shown = try await client.execute(uri: "/v1/builds/\(newer.id)", method: .get, headers: harness.auth)
            #expect(shown.text.contains(#""runKey":"main""#))
            #expect(shown.text.contains(#""runPolicy":"latestOnly""#))
            #expect(try shown.decode(BuildJSON.self).queue?.position == 2)
            #expect(try await client.execute(uri: "/v1/builds/\(other.id)", method: .get, headers: harness.auth).decode(BuildJSON.self).status == "queued")

            for bad in ["runPolicy=sometimes", "queueTTL=0", "runKey=" + String(repeating: "k", count: 201)] {
                let refused = try await client.execute(
                    uri: "/v1/builds?image=r.example.com/a:1&\(bad)", method: .post, headers: harness.auth, body: ByteBuffer(bytes: sampleContext()))
                #expect(refused.status == .badRequest, "\(bad)")
            }
        }
    }
}

/// While shutting down gracefully, new uploads and webhook deliveries are told to come back later; reads go on.
struct ShutdownGateTests {
    @Test func uploadsAndWebhooksGet503WithRetryAfterWhileReadsWork() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        try await testGracefulShutdown { trigger in
            try await harness.application().test(.router) { client in
                let before = try await client.execute(
                    uri: "/v1/builds?image=r.example.com/a:1", method: .post, headers: harness.auth, body: ByteBuffer(bytes: sampleContext()))
                #expect(before.status == .accepted)
                trigger.triggerGracefulShutdown()
                let upload = try await client.execute(
                    uri: "/v1/builds?image=r.example.com/a:1", method: .post, headers: harness.auth, body: ByteBuffer(bytes: sampleContext()))
                #expect(upload.status == .serviceUnavailable)
                #expect(upload.headers[.retryAfter] == "30")
                #expect(try upload.decode(ErrorEnvelope.self).error.code == "shuttingDown")
                let webhook = try await client.execute(uri: "/v1/webhooks/github", method: .post, body: ByteBuffer(string: "{}"))
                #expect(webhook.status == .serviceUnavailable)
                #expect(try await client.execute(uri: "/v1/builds", method: .get, headers: harness.auth).status == .ok)
            }
        }
        #expect(try await harness.buildCount() == 1)
    }

    /// An upload in flight when shutdown begins gets the upload grace: one that finishes in it is a build, one still
    /// trickling in after it is answered 503 and leaves nothing behind.
    @Test(arguments: [true, false])
    func anUploadInFlightGetsTheUploadGraceThen503(finishesInTime: Bool) async throws {
        var limits = BuildGateAPILimits()
        limits.uploadShutdownGrace = .milliseconds(500)
        let harness = try await APIHarness(limits: limits)
        defer { harness.directory.remove() }
        let context = sampleContext()
        let (pieces, feed) = AsyncStream<ByteBuffer>.makeStream()
        try await testGracefulShutdown { trigger in
            try await harness.application().test(.live) { client in
                var request = HTTPClientRequest(url: "http://127.0.0.1:\(client.port!)/v1/builds?image=r.example.com/a:1")
                request.method = .POST
                request.headers.add(name: "Authorization", value: harness.auth[.authorization]!)
                request.body = .stream(pieces, length: .known(Int64(context.count)))
                let upload = Task { [request] in
                    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
                    return (response.status, try await response.body.collect(upTo: 1 << 16))
                }
                feed.yield(ByteBuffer(bytes: context.prefix(512)))
                let deadline = ContinuousClock.now + .seconds(10)
                while harness.directory.files(under: "tmp").isEmpty && ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(10))
                }
                #expect(!harness.directory.files(under: "tmp").isEmpty, "the upload is in flight")

                let started = ContinuousClock.now
                trigger.triggerGracefulShutdown()
                if finishesInTime {
                    try await Task.sleep(for: .milliseconds(100))
                    feed.yield(ByteBuffer(bytes: context.dropFirst(512)))
                    feed.finish()
                }
                let (status, body) = try await upload.value
                if finishesInTime {
                    #expect(status == .accepted, "\(String(buffer: body))")
                } else {
                    #expect(status == .serviceUnavailable)
                    #expect(try JSONDecoder().decode(ErrorEnvelope.self, from: body).error.code == "shuttingDown")
                    #expect(ContinuousClock.now - started >= .milliseconds(450))
                    feed.finish()
                }
            }
        }
        #expect(try await harness.buildCount() == (finishesInTime ? 1 : 0))
        #expect(harness.directory.files(under: "tmp").isEmpty)
        #expect(harness.directory.files(under: "contexts").isEmpty == !finishesInTime)
    }
}

struct DiskSpaceTests {
    @Test func anUploadIsRefusedWith507WhenTheDataDirectoryIsShortOfSpace() async throws {
        let harness = try await APIHarness(freeDiskBytes: 900 << 20)
        defer { harness.directory.remove() }
        try await harness.application().test(.router) { client in
            let refused = try await client.execute(
                uri: "/v1/builds?image=r.example.com/a:1", method: .post, headers: harness.auth, body: ByteBuffer(bytes: sampleContext()))
            #expect(refused.status.code == 507)
            let error = try refused.decode(ErrorEnvelope.self).error
            #expect(error.code == "insufficientStorage")
            #expect(error.message.contains("900 MiB free"))
        }
        #expect(try await harness.buildCount() == 0)
        #expect(harness.contextFiles.isEmpty)
    }
}

struct RequestIDTests {
    @Test func everyResponseCarriesARequestIDTheClientsWhenSane() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        try await harness.application().test(.router) { client in
            let given = try await client.execute(uri: "/v1/builds", method: .get, headers: harness.auth(adding: [HTTPField.Name("X-Request-Id")!: "trace-123"]))
            #expect(given.headers[HTTPField.Name("X-Request-Id")!] == "trace-123")
            let made = try await client.execute(uri: "/v1/builds/nope", method: .get, headers: harness.auth)
            #expect(made.status == .badRequest || made.status == .notFound)
            #expect(made.headers[HTTPField.Name("X-Request-Id")!]?.isEmpty == false)
            let insane = try await client.execute(uri: "/v1/builds", method: .get, headers: harness.auth(adding: [HTTPField.Name("X-Request-Id")!: String(repeating: "x", count: 200)]))
            #expect(insane.headers[HTTPField.Name("X-Request-Id")!]?.count != 200)
        }
    }
}
