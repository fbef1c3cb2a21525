import AsyncHTTPClient
import BuildGateAPI
import BuildGateCore
import BuildGateTesting
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

struct BuildsAPITests {
    @Test func anUploadIsStoredQueuedAndAnsweredWith202() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        let context = sampleContext()
        try await harness.application().test(.router) { client in
            let response = try await client.execute(
                uri:
                    "/v1/builds?image=r.example.com/app:1&buildArg=A=1&buildArg=B=x%3Dy&label=team=x&platform=linux/amd64&noCache=true&timeout=60",
                method: .post, headers: harness.auth, body: ByteBuffer(bytes: context))
            #expect(response.status == .accepted)
            let build = try response.decode(BuildJSON.self)
            #expect(response.headers[.location] == "/v1/builds/\(build.id)")
            #expect(build.status == "queued")
            #expect(build.images.map(\.reference) == ["r.example.com/app:1"])
            #expect(build.context?.size == Int64(context.count))
            #expect(build.links.logs == "/v1/builds/\(build.id)/logs")

            let buildID = try #require(BuildID(build.id))
            let stored = try #require(try await harness.store.build(buildID))
            #expect(stored.request.buildArgs == ["A": "1", "B": "x=y"])
            #expect(stored.request.labels == ["team": "x"])
            #expect(stored.request.noCache && stored.request.timeoutSeconds == 60)
            // The context is stored under its sha256, and nothing is left in tmp/.
            let digest = try #require(build.context).digest
            #expect(harness.contextFiles == ["sha256/\(digest.dropFirst("sha256:".count))"])
            let storedBytes = try Data(
                contentsOf: URL(fileURLWithPath: harness.contexts.path(of: try #require(stored.context))))
            #expect(Array(storedBytes) == context)

            let shown = try await client.execute(uri: "/v1/builds/\(build.id)", method: .get, headers: harness.auth)
            #expect(shown.status == .ok)
            #expect(try shown.decode(BuildJSON.self).id == build.id)
        }
    }

    struct Rejection: Sendable, CustomTestStringConvertible {
        var name: String
        var query = "image=r.example.com/app:1"
        var body: @Sendable () throws -> [UInt8] = { sampleContext() }
        var status: HTTPResponse.Status
        var code: String
        var messageMentions: String? = nil
        var testDescription: String { name }
    }

    static let rejections: [Rejection] = [
        Rejection(
            name: "not an archive", body: { Array("just text, not a tar".utf8) }, status: .unsupportedMediaType,
            code: "unsupportedMediaType"),
        Rejection(
            name: "zip", body: { [0x50, 0x4b, 0x03, 0x04] + [UInt8](repeating: 7, count: 2000) },
            status: .unsupportedMediaType, code: "unsupportedMediaType"),
        Rejection(
            name: "truncated", body: { Array(sampleContext().prefix(700)) }, status: .badRequest, code: "corruptArchive"
        ),
        Rejection(
            name: "truncated gzip",
            body: {
                var tar = TarWriter(); tar.entryBytes(sampleContext()); return Array(try tar.gzipped().dropLast(10))
            }, status: .badRequest, code: "corruptArchive"),
        Rejection(
            name: "absolute path",
            body: {
                var tar = TarWriter(); tar.file("Dockerfile", "FROM scratch\n"); tar.file("/etc/cron.d/x", "x");
                tar.end(); return tar.bytes
            }, status: .unprocessableContent, code: "invalidContext", messageMentions: "/etc/cron.d/x"),
        Rejection(
            name: "dot-dot",
            body: {
                var tar = TarWriter(); tar.file("Dockerfile", "FROM scratch\n"); tar.file("a/../../x", "x"); tar.end();
                return tar.bytes
            }, status: .unprocessableContent, code: "invalidContext", messageMentions: "a/../../x"),
        Rejection(
            name: "escaping symlink",
            body: {
                var tar = TarWriter(); tar.file("Dockerfile", "FROM scratch\n");
                tar.link("evil", to: "../../root", type: .symbolicLink); tar.end(); return tar.bytes
            }, status: .unprocessableContent, code: "invalidContext", messageMentions: "evil"),
        Rejection(
            name: "device",
            body: {
                var tar = TarWriter(); tar.file("Dockerfile", "FROM scratch\n");
                tar.entry("dev/kmem", type: .characterDevice); tar.end(); return tar.bytes
            }, status: .unprocessableContent, code: "invalidContext", messageMentions: "dev/kmem"),
        Rejection(
            name: "fifo",
            body: {
                var tar = TarWriter(); tar.file("Dockerfile", "FROM scratch\n"); tar.entry("pipe", type: .fifo);
                tar.end(); return tar.bytes
            }, status: .unprocessableContent, code: "invalidContext", messageMentions: "pipe"),
        Rejection(
            name: "oversized PAX header",
            body: {
                var tar = TarWriter(); tar.file("Dockerfile", "FROM scratch\n"); tar.paxOfSize((1 << 20) + 10);
                tar.file("x", ""); tar.end(); return tar.bytes
            }, status: .unprocessableContent, code: "invalidContext", messageMentions: "PAX"),
        Rejection(
            name: "missing Dockerfile", query: "image=r.example.com/app:1&dockerfile=build/Dockerfile",
            status: .unprocessableContent, code: "invalidContext", messageMentions: "build/Dockerfile"),
        Rejection(name: "no image", query: "", status: .badRequest, code: "invalidParameter", messageMentions: "image"),
        Rejection(
            name: "bad image", query: "image=App:1", status: .badRequest, code: "invalidParameter",
            messageMentions: "App:1"),
        Rejection(
            name: "unknown parameter", query: "image=r.example.com/a:1&imgae=x", status: .badRequest,
            code: "invalidParameter", messageMentions: "imgae"),
        Rejection(
            name: "bad timeout", query: "image=r.example.com/a:1&timeout=-5", status: .badRequest,
            code: "invalidParameter", messageMentions: "timeout"),
        Rejection(
            name: "bad build arg", query: "image=r.example.com/a:1&buildArg=NOVALUE", status: .badRequest,
            code: "invalidParameter", messageMentions: "buildArg"),
        Rejection(
            name: "escaping dockerfile", query: "image=r.example.com/a:1&dockerfile=../Dockerfile", status: .badRequest,
            code: "invalidParameter", messageMentions: "dockerfile"),
        Rejection(
            name: "bad platform", query: "image=r.example.com/a:1&platform=amd64", status: .badRequest,
            code: "invalidParameter", messageMentions: "platform"),
    ]

    @Test(arguments: rejections)
    func aRejectedUploadGetsItsStatusAndLeavesNoRowAndNoFile(rejection: Rejection) async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        let body = try rejection.body()
        try await harness.application().test(.router) { client in
            let response = try await client.execute(
                uri: "/v1/builds?\(rejection.query)", method: .post, headers: harness.auth,
                body: ByteBuffer(bytes: body))
            #expect(response.status == rejection.status)
            #expect(response.headers[.contentType] == "application/json")
            let error = try response.decode(ErrorEnvelope.self).error
            #expect(error.code == rejection.code)
            if let mention = rejection.messageMentions {
                #expect(error.message.contains(mention), "message: \(error.message)")
            }
        }
        #expect(try await harness.buildCount() == 0)
        #expect(harness.contextFiles.isEmpty)
        #expect(harness.directory.files(under: "logs").isEmpty)
    }

    /// The bodies a route collects whole (JSON, a secret's value, a webhook) have their own limits; one streamed
    /// past its limit without a Content-Length is 413 like the others, not a 500.
    @Test(arguments: [
        ("POST", "/v1/builds", 64 << 10), ("POST", "/v1/triggers", 64 << 10),
        ("PUT", "/v1/registries/r.example.com", 16 << 10),
        ("PUT", "/v1/secrets/npmrc", BuildSecretName.maxValueSize),
    ])
    func aCollectedBodyStreamedPastItsLimitIs413(method: String, path: String, limit: Int) async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        try await harness.application().test(.live) { client in
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(client.port!)\(path)")
            request.method = .RAW(value: method)
            request.headers.add(name: "Authorization", value: harness.auth[.authorization]!)
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .stream(
                AsyncStream { continuation in
                    continuation.yield(ByteBuffer(string: String(repeating: " ", count: limit + 1)))
                    continuation.finish()
                }, length: .unknown)
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
            let body = String(buffer: try await response.body.collect(upTo: 1 << 16))
            #expect(response.status.code == 413, "\(method) \(path): \(body)")
            #expect(body.contains("contextTooLarge"))
        }
    }

    @Test func aRerunBuildsTheSameContextWithTheSameParametersAsANewBuild() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        try await harness.application().test(.router) { client in
            let first = try await client.execute(
                uri: "/v1/builds?image=r.example.com/app:1&buildArg=A=1&label=team=x&target=final&timeout=60",
                method: .post, headers: harness.auth, body: ByteBuffer(bytes: sampleContext()))
            let original = try first.decode(BuildJSON.self)

            let rerun = try await client.execute(
                uri: "/v1/builds/\(original.id)/rerun", method: .post, headers: harness.auth)
            #expect(rerun.status == .accepted)
            let again = try rerun.decode(BuildJSON.self)
            #expect(again.id != original.id && again.status == "queued")
            #expect(rerun.headers[.location] == "/v1/builds/\(again.id)")
            #expect(again.context?.digest == original.context?.digest)
            let againID = try #require(BuildID(again.id))
            let originalID = try #require(BuildID(original.id))
            let stored = try #require(try await harness.store.build(againID))
            let before = try #require(try await harness.store.build(originalID))
            #expect(stored.request == before.request)
            #expect(try await harness.logs.text(stored.id).contains("(rerun of \(original.id))"))

            // Another tenant's build is not there for this tenant.
            let other = try await harness.auth(tenant: "other", scopes: [.admin])
            let foreign = try await client.execute(
                uri: "/v1/builds/\(original.id)/rerun", method: .post, headers: other)
            #expect(foreign.status == .notFound)
            // A read-only token cannot queue builds.
            let reader = try await harness.auth(tenant: "default", scopes: [.buildsRead])
            let readOnly = try await client.execute(
                uri: "/v1/builds/\(original.id)/rerun", method: .post, headers: reader)
            #expect(readOnly.status == .forbidden)

            // Once retention has removed the context, there is nothing to build again.
            #expect(harness.contexts.remove(try #require(stored.context).digest, ifStoredBefore: .distantFuture))
            let gone = try await client.execute(
                uri: "/v1/builds/\(original.id)/rerun", method: .post, headers: harness.auth)
            #expect(gone.status == .conflict)
            #expect(try await harness.buildCount() == 2)
        }
    }

    /// A tenant builds a context it uploaded before without sending it again; no tenant learns what another stored.
    @Test func aStoredContextIsBuiltByDigestOnlyByTheTenantThatUploadedIt() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        try await harness.application().test(.router) { client in
            let first = try await client.execute(
                uri: "/v1/builds?image=r.example.com/app:1", method: .post, headers: harness.auth,
                body: ByteBuffer(bytes: sampleContext()))
            let digest = try #require(try first.decode(BuildJSON.self).context?.digest)
            let unknown = "sha256:" + String(repeating: "a", count: 64)
            let other = try await harness.auth(tenant: "other", scopes: [.admin])

            #expect(
                try await client.execute(uri: "/v1/contexts/\(digest)", method: .head, headers: harness.auth).status
                    == .ok)
            #expect(
                try await client.execute(uri: "/v1/contexts/\(unknown)", method: .head, headers: harness.auth).status
                    == .notFound)
            #expect(
                try await client.execute(uri: "/v1/contexts/\(digest)", method: .head, headers: other).status
                    == .notFound)
            #expect(
                try await client.execute(uri: "/v1/contexts/nonsense", method: .head, headers: harness.auth).status
                    == .badRequest)

            let again = try await client.execute(
                uri: "/v1/builds?image=r.example.com/app:2&context=\(digest)", method: .post, headers: harness.auth)
            #expect(again.status == .accepted)
            #expect(try again.decode(BuildJSON.self).context?.digest == digest)
            // The other tenant cannot build it by naming it, and a body beside context= is refused.
            let foreign = try await client.execute(
                uri: "/v1/builds?image=r.example.com/app:3&context=\(digest)", method: .post, headers: other)
            #expect(foreign.status == .notFound)
            let both = try await client.execute(
                uri: "/v1/builds?image=r.example.com/app:4&context=\(digest)", method: .post, headers: harness.auth,
                body: ByteBuffer(bytes: sampleContext()))
            #expect(both.status == .badRequest)
            #expect(try await harness.buildCount() == 2)

            // Once retention has removed it, it is gone for its tenant too.
            let stored = try #require(ContextDigest(digest))
            try await harness.store.markContextRemoved(stored)
            #expect(
                try await client.execute(uri: "/v1/contexts/\(digest)", method: .head, headers: harness.auth).status
                    == .notFound)
        }
    }

    @Test func aBodyOverTheLimitIs413EvenWithoutContentLength() async throws {
        var limits = BuildGateAPILimits()
        limits.maxContextSize = 4096
        let harness = try await APIHarness(limits: limits)
        defer { harness.directory.remove() }
        var tar = TarWriter()
        tar.file("Dockerfile", "FROM scratch\n")
        tar.file("big", String(repeating: "x", count: 10_000))
        tar.end()
        let tooLarge = tar.bytes
        try await harness.application().test(.live) { client in
            // Declared too large: refused before the body is read.
            let declared = try await client.execute(
                uri: "/v1/builds?image=r.example.com/a:1", method: .post, headers: harness.auth,
                body: ByteBuffer(bytes: tooLarge))
            #expect(declared.status == .contentTooLarge)
            #expect(try declared.decode(ErrorEnvelope.self).error.code == "contextTooLarge")
        }
        // Chunked, no Content-Length: refused as soon as the limit is crossed.
        try await harness.application().test(.live) { client in
            let url = "http://127.0.0.1:\(client.port!)/v1/builds?image=r.example.com/a:1"
            var request = HTTPClientRequest(url: url)
            request.method = .POST
            request.headers.add(name: "Authorization", value: harness.auth[.authorization]!)
            request.body = .stream(
                AsyncStream { continuation in
                    for chunk in stride(from: 0, to: tooLarge.count, by: 1000) {
                        continuation.yield(ByteBuffer(bytes: tooLarge[chunk..<min(chunk + 1000, tooLarge.count)]))
                    }
                    continuation.finish()
                }, length: .unknown)
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
            #expect(response.status.code == 413)
        }
        #expect(try await harness.buildCount() == 0)
        #expect(harness.contextFiles.isEmpty)
    }

    @Test func curlUploadsWithExpectContinueAreAnsweredAtOnce() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        let file = "\(harness.directory.path)/context.tar"
        try Data(sampleContext()).write(to: URL(fileURLWithPath: file))
        try await harness.application().test(.live) { client in
            // Through ChildProcess: curl talks to this very process, so no thread may block waiting for it.
            let curl = try await ChildProcess.run([
                "curl", "-sS", "-v", "-o", "/dev/null", "-w", "\n%{http_code} %{time_total}", "-T", file, "-X", "POST",
                "-H", "Expect: 100-continue", "-H", "Authorization: \(harness.auth[.authorization]!)",
                "http://127.0.0.1:\(client.port!)/v1/builds?image=r.example.com/a:1",
            ])
            let verbose = curl.output
            let result = String(curl.output.split(separator: "\n").last ?? "")
            #expect(verbose.contains("HTTP/1.1 100 Continue"))
            // Without the interim response curl would wait a second, then send the body anyway.
            #expect(result.split(separator: " ").first == "202")
        }
    }

    @Test func anIdempotencyKeyReturnsTheFirstBuild() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        try await harness.application().test(.router) { client in
            let headers: HTTPFields = [HTTPField.Name("Idempotency-Key")!: "deploy-42"]
            let first = try await client.execute(
                uri: "/v1/builds?image=r.example.com/a:1", method: .post, headers: harness.auth(adding: headers),
                body: ByteBuffer(bytes: sampleContext()))
            let second = try await client.execute(
                uri: "/v1/builds?image=r.example.com/a:1", method: .post, headers: harness.auth(adding: headers),
                body: ByteBuffer(bytes: sampleContext()))
            #expect(first.status == .accepted)
            #expect(second.status == .ok)
            #expect(try first.decode(BuildJSON.self).id == second.decode(BuildJSON.self).id)
        }
        #expect(try await harness.buildCount() == 1)
    }

    @Test func listingPagesNewestFirstAndFiltersByStatus() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        try await harness.application().test(.router) { client in
            var ids: [String] = []
            for _ in 0..<3 {
                let response = try await client.execute(
                    uri: "/v1/builds?image=r.example.com/a:1", method: .post, headers: harness.auth,
                    body: ByteBuffer(bytes: sampleContext()))
                ids.append(try response.decode(BuildJSON.self).id)
                try await Task.sleep(for: .milliseconds(2))
            }
            let first = try await client.execute(uri: "/v1/builds?limit=2", method: .get, headers: harness.auth).decode(
                PageJSON.self)
            #expect(first.builds.map(\.id) == [ids[2], ids[1]])
            let cursor = try #require(first.nextCursor)
            let second = try await client.execute(
                uri: "/v1/builds?limit=2&cursor=\(cursor)", method: .get, headers: harness.auth
            ).decode(PageJSON.self)
            #expect(second.builds.map(\.id) == [ids[0]])
            #expect(second.nextCursor == nil)

            _ = try await client.execute(uri: "/v1/builds/\(ids[1])/cancel", method: .post, headers: harness.auth)
            let cancelled = try await client.execute(
                uri: "/v1/builds?status=cancelled", method: .get, headers: harness.auth
            ).decode(PageJSON.self)
            #expect(cancelled.builds.map(\.id) == [ids[1]])
            let bad = try await client.execute(uri: "/v1/builds?status=exploded", method: .get, headers: harness.auth)
            #expect(bad.status == .badRequest)
        }
    }

    @Test func cancellingAQueuedBuildEndsItAtOnceAndIsIdempotent() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        try await harness.application().test(.router) { client in
            let created = try await client.execute(
                uri: "/v1/builds?image=r.example.com/a:1", method: .post, headers: harness.auth,
                body: ByteBuffer(bytes: sampleContext()))
            let id = try created.decode(BuildJSON.self).id
            let cancelled = try await client.execute(
                uri: "/v1/builds/\(id)/cancel", method: .post, headers: harness.auth)
            #expect(cancelled.status == .ok)
            let build = try cancelled.decode(BuildJSON.self)
            #expect(build.status == "cancelled")
            #expect(build.reason == "cancelled")
            #expect(
                try await client.execute(uri: "/v1/builds/\(id)/cancel", method: .post, headers: harness.auth).status
                    == .ok)
            let log = try await client.execute(uri: "/v1/builds/\(id)/logs", method: .get, headers: harness.auth)
            #expect(log.headers[.init("X-Log-Complete")!] == "true")
            #expect(log.text.hasSuffix("[buildgate] cancelled before it started; result: cancelled\n"))
        }
        let claim = try await harness.store.claimNext(builder: "b", owner: "o", leaseUntil: Date() + 60, now: Date())
        #expect(claim == nil)
    }

    @Test func unknownBuildsAndRoutesAre404InTheErrorShape() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        try await harness.application().test(.router) { client in
            for (uri, method) in [
                ("/v1/builds/\(BuildID.generate())", HTTPRequest.Method.get),
                ("/v1/builds/not-an-id", .get),
                ("/v1/builds/\(BuildID.generate())/logs", .get),
                ("/v1/builds/\(BuildID.generate())/cancel", .post),
                ("/v1/nothing-here", .get),
            ] {
                let response = try await client.execute(uri: uri, method: method, headers: harness.auth)
                #expect(response.status == .notFound, "\(uri)")
                #expect(try response.decode(ErrorEnvelope.self).error.code == "notFound")
            }
        }
    }
}
