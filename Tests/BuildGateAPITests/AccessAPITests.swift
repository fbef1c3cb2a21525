import BuildGateCore
import BuildGateStore
import BuildGateTesting
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

struct AccessAPITests {
    @Test func noTokenOrABadTokenIs401AndAMissingScopeIs403() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        let reader = try await harness.auth(tenant: "default", scopes: [.buildsRead])
        try await harness.application().test(.router) { client in
            let anonymous = try await client.execute(uri: "/v1/builds", method: .get)
            #expect(anonymous.status == .unauthorized)
            #expect(anonymous.headers[.wwwAuthenticate] == "Bearer")
            #expect(try anonymous.decode(ErrorEnvelope.self).error.code == "unauthorized")

            let forged = try await client.execute(
                uri: "/v1/builds", method: .get,
                headers: [.authorization: "Bearer bgt_AAAAAAAAAAAA_\(String(repeating: "x", count: 43))"])
            #expect(forged.status == .unauthorized)

            let readOnly = try await client.execute(
                uri: "/v1/builds?image=r.example.com/a:1", method: .post, headers: reader,
                body: ByteBuffer(bytes: sampleContext()))
            #expect(readOnly.status == .forbidden)
            #expect(try readOnly.decode(ErrorEnvelope.self).error.message.contains("builds:write"))
            #expect(try await client.execute(uri: "/v1/builds", method: .get, headers: reader).status == .ok)
            #expect(try await client.execute(uri: "/healthz", method: .get).status == .ok)
        }
        #expect(try await harness.buildCount() == 0)
        #expect(harness.contextFiles.isEmpty)
    }

    @Test func anotherTenantsBuildIsAnsweredLikeOneThatDoesNotExist() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        let other = try await harness.auth(tenant: "acme", scopes: [.admin])
        try await harness.application().test(.router) { client in
            let created = try await client.execute(
                uri: "/v1/builds?image=r.example.com/a:1", method: .post,
                headers: harness.auth(adding: [HTTPField.Name("Idempotency-Key")!: "k1"]),
                body: ByteBuffer(bytes: sampleContext()))
            let id = try created.decode(BuildJSON.self).id
            for (uri, method) in [
                ("/v1/builds/\(id)", HTTPRequest.Method.get), ("/v1/builds/\(id)/logs", .get),
                ("/v1/builds/\(id)/cancel", .post), ("/v1/builds/\(id)/log-tokens", .post),
            ] {
                let response = try await client.execute(uri: uri, method: method, headers: other)
                #expect(response.status == .notFound, "\(method) \(uri)")
                #expect(try response.decode(ErrorEnvelope.self).error.message == "no build '\(id)'")
            }
            let listed = try await client.execute(uri: "/v1/builds", method: .get, headers: other).decode(PageJSON.self)
            #expect(listed.builds.isEmpty)

            // The same Idempotency-Key in another tenant is another build, not the first tenant's.
            let theirs = try await client.execute(
                uri: "/v1/builds?image=r.example.com/a:1", method: .post,
                headers: other + [HTTPField.Name("Idempotency-Key")!: "k1"],
                body: ByteBuffer(bytes: sampleContext()))
            #expect(theirs.status == .accepted)
            #expect(try theirs.decode(BuildJSON.self).id != id)
        }
    }

    @Test func aLogReadTokenReadsOnlyItsBuildAlsoFromTheQueryString() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        try await harness.application().test(.router) { client in
            var ids: [String] = []
            for _ in 0..<2 {
                let created = try await client.execute(
                    uri: "/v1/builds?image=r.example.com/a:1", method: .post, headers: harness.auth,
                    body: ByteBuffer(bytes: sampleContext()))
                ids.append(try created.decode(BuildJSON.self).id)
            }
            let minted = try await client.execute(
                uri: "/v1/builds/\(ids[0])/log-tokens?ttl=600", method: .post, headers: harness.auth)
            #expect(minted.status == .created)
            struct Minted: Decodable { var token: String; var buildId: String; var expiresAt: String }
            let token = try minted.decode(Minted.self)
            #expect(token.buildId == ids[0])
            let bearer: HTTPFields = [.authorization: "Bearer \(token.token)"]

            #expect(
                try await client.execute(uri: "/v1/builds/\(ids[0])/logs", method: .get, headers: bearer).status == .ok)
            #expect(try await client.execute(uri: "/v1/builds/\(ids[0])", method: .get, headers: bearer).status == .ok)
            #expect(
                try await client.execute(uri: "/v1/builds/\(ids[0])/logs?access_token=\(token.token)", method: .get)
                    .status == .ok)
            #expect(
                try await client.execute(uri: "/v1/builds/\(ids[1])/logs", method: .get, headers: bearer).status
                    == .forbidden)
            #expect(try await client.execute(uri: "/v1/builds", method: .get, headers: bearer).status == .forbidden)
            #expect(
                try await client.execute(uri: "/v1/builds/\(ids[0])/cancel", method: .post, headers: bearer).status
                    == .forbidden)
            // A full API token never travels in a URL.
            let apiToken = harness.auth[.authorization]!.dropFirst("Bearer ".count)
            #expect(
                try await client.execute(uri: "/v1/builds/\(ids[0])/logs?access_token=\(apiToken)", method: .get).status
                    == .unauthorized)
        }
    }

    @Test func revokedAndExpiredTokensStopWorking() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        let (token, record) = try await harness.tokens.createToken(
            tenant: .default, name: "ci", scopes: [.buildsRead], buildID: nil, expiresAt: nil, at: Date())
        let (expired, _) = try await harness.tokens.createToken(
            tenant: .default, name: "old", scopes: [.buildsRead], buildID: nil,
            expiresAt: Date().addingTimeInterval(-1), at: Date())
        try await harness.application().test(.router) { client in
            let before = try await client.execute(
                uri: "/v1/builds", method: .get, headers: [.authorization: "Bearer \(token)"])
            #expect(before.status == .ok)
            let revoked = try await harness.tokens.revokeToken(id: record.id, at: Date())
            #expect(revoked)
            let after = try await client.execute(
                uri: "/v1/builds", method: .get, headers: [.authorization: "Bearer \(token)"])
            #expect(after.status == .unauthorized)
            let old = try await client.execute(
                uri: "/v1/builds", method: .get, headers: [.authorization: "Bearer \(expired)"])
            #expect(old.status == .unauthorized)
        }
        let listed = try await harness.tokens.tokens(of: .default)
        #expect(listed.contains { $0.id == record.id && $0.revokedAt != nil })
    }
}

extension HTTPFields {
    static func + (lhs: HTTPFields, rhs: HTTPFields) -> HTTPFields {
        var all = lhs
        all.append(contentsOf: rhs)
        return all
    }
}

struct RegistriesAPITests {
    @Test func credentialsAreWriteOnlyPerTenantAndNeedAdmin() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        let writer = try await harness.auth(tenant: "default", scopes: [.buildsWrite])
        let other = try await harness.auth(tenant: "acme", scopes: [.admin])
        try await harness.application().test(.router) { client in
            let body = ByteBuffer(string: #"{"username":"robot","password":"hunter2-secret"}"#)
            #expect(
                try await client.execute(
                    uri: "/v1/registries/r.example.com:5000", method: .put, headers: writer, body: body
                ).status == .forbidden)
            #expect(
                try await client.execute(
                    uri: "/v1/registries/r.example.com:5000", method: .put, headers: harness.auth, body: body
                ).status == .noContent)
            #expect(
                try await client.execute(
                    uri: "/v1/registries/not%20a%20host", method: .put, headers: harness.auth, body: body
                ).status == .badRequest)
            let listed = try await client.execute(uri: "/v1/registries", method: .get, headers: harness.auth)
            #expect(listed.text.contains("r.example.com:5000"))
            #expect(!listed.text.contains("hunter2") && !listed.text.contains("robot"))
            let theirs = try await client.execute(uri: "/v1/registries", method: .get, headers: other)
            #expect(!theirs.text.contains("r.example.com"))
            #expect(
                try await client.execute(uri: "/v1/registries/r.example.com:5000", method: .delete, headers: other)
                    .status == .notFound)
        }
        let stored = try await harness.registryCredentials.credential(tenant: .default, host: "r.example.com:5000")
        #expect(stored == RegistryCredential(username: "robot", password: "hunter2-secret"))
        #expect(
            try await harness.registryCredentials.credential(tenant: TenantID("acme")!, host: "r.example.com:5000")
                == nil)
        // Sealed at rest: the password is nowhere in the database file.
        let database = try Data(contentsOf: URL(fileURLWithPath: "\(harness.directory.path)/db.sqlite"))
        let wal = (try? Data(contentsOf: URL(fileURLWithPath: "\(harness.directory.path)/db.sqlite-wal"))) ?? Data()
        #expect(
            database.range(of: Data("hunter2-secret".utf8)) == nil && wal.range(of: Data("hunter2-secret".utf8)) == nil)
    }
}

struct TenantLimitsTests {
    @Test func requestsOverTheTenantsMinuteLimitAre429WithRetryAfterAndOthersUnaffected() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        try await SQLiteTenantLimitsStore(database: harness.database).setLimits(
            TenantLimits(requestsPerMinute: 3), for: TenantID("busy")!, at: Date())
        let busy = try await harness.auth(tenant: "busy", scopes: [.buildsRead])
        try await harness.application().test(.router) { client in
            for _ in 0..<3 {
                #expect(try await client.execute(uri: "/v1/builds", method: .get, headers: busy).status == .ok)
            }
            let limited = try await client.execute(uri: "/v1/builds", method: .get, headers: busy)
            #expect(limited.status == .tooManyRequests)
            #expect(Int(limited.headers[.retryAfter] ?? "") ?? 0 >= 1)
            #expect(try limited.decode(ErrorEnvelope.self).error.code == "tooManyRequests")
            #expect(try await client.execute(uri: "/v1/builds", method: .get, headers: harness.auth).status == .ok)
        }
    }

    @Test func aFullQueueRefusesNewUploadsButARetryGetsItsBuild() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        try await SQLiteTenantLimitsStore(database: harness.database).setLimits(
            TenantLimits(maxQueuedBuilds: 1), for: .default, at: Date())
        let key: HTTPFields = [HTTPField.Name("Idempotency-Key")!: "once"]
        try await harness.application().test(.router) { client in
            let first = try await client.execute(
                uri: "/v1/builds?image=r.example.com/a:1", method: .post, headers: harness.auth + key,
                body: ByteBuffer(bytes: sampleContext()))
            #expect(first.status == .accepted)
            let second = try await client.execute(
                uri: "/v1/builds?image=r.example.com/a:1", method: .post, headers: harness.auth,
                body: ByteBuffer(bytes: sampleContext()))
            #expect(second.status == .tooManyRequests)
            #expect(second.headers[.retryAfter] == "30")
            // The queue is full, but a retry of the build already queued is answered with that build.
            let retry = try await client.execute(
                uri: "/v1/builds?image=r.example.com/a:1", method: .post, headers: harness.auth + key,
                body: ByteBuffer(bytes: sampleContext()))
            #expect(retry.status == .ok)
            #expect(try retry.decode(BuildJSON.self).id == first.decode(BuildJSON.self).id)
        }
        #expect(try await harness.buildCount() == 1)
        #expect(harness.directory.files(under: "tmp").isEmpty)
    }

    @Test func claimsSkipATenantAtItsRunningLimitButServeOthers() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        let limits = SQLiteTenantLimitsStore(database: harness.database)
        try await limits.setLimits(TenantLimits(maxRunningBuilds: 1), for: TenantID("small")!, at: Date())
        try await limits.setLimits(TenantLimits(), for: TenantID("big")!, at: Date())
        func build(_ tenant: String, _ second: Double) throws -> Build {
            Build(
                id: .generate(at: Date(timeIntervalSince1970: 1_700_000_000 + second)), tenant: TenantID(tenant)!,
                request: BuildRequest(images: [try ImageReference(parsing: "r.example.com/a:1")]),
                context: BuildContext(
                    digest: ContextDigest(hex: String(repeating: "e", count: 64))!, size: 1, compression: .none),
                createdAt: Date())
        }
        let small1 = try build("small", 1), small2 = try build("small", 2), big = try build("big", 3)
        for value in [small1, small2, big] { _ = try await harness.store.create(value) }
        let claim = {
            try await harness.store.claimNext(builder: "b", owner: "o", leaseUntil: Date() + 60, now: Date())?.id
        }
        #expect(try await claim() == small1.id)
        #expect(try await claim() == big.id)
        #expect(try await claim() == nil)
    }
}
