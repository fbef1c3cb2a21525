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
                uri: "/v1/builds?image=r.example.com/a:1", method: .post, headers: reader, body: ByteBuffer(bytes: sampleContext()))
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
                uri: "/v1/builds?image=r.example.com/a:1", method: .post, headers: harness.auth(adding: [HTTPField.Name("Idempotency-Key")!: "k1"]),
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
                uri: "/v1/builds?image=r.example.com/a:1", method: .post, headers: other + [HTTPField.Name("Idempotency-Key")!: "k1"],
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
            let minted = try await client.execute(uri: "/v1/builds/\(ids[0])/log-tokens?ttl=600", method: .post, headers: harness.auth)
            #expect(minted.status == .created)
            struct Minted: Decodable { var token: String; var buildId: String; var expiresAt: String }
            let token = try minted.decode(Minted.self)
            #expect(token.buildId == ids[0])
            let bearer: HTTPFields = [.authorization: "Bearer \(token.token)"]

            #expect(try await client.execute(uri: "/v1/builds/\(ids[0])/logs", method: .get, headers: bearer).status == .ok)
            #expect(try await client.execute(uri: "/v1/builds/\(ids[0])", method: .get, headers: bearer).status == .ok)
            #expect(try await client.execute(uri: "/v1/builds/\(ids[0])/logs?access_token=\(token.token)", method: .get).status == .ok)
            #expect(try await client.execute(uri: "/v1/builds/\(ids[1])/logs", method: .get, headers: bearer).status == .forbidden)
            #expect(try await client.execute(uri: "/v1/builds", method: .get, headers: bearer).status == .forbidden)
            #expect(try await client.execute(uri: "/v1/builds/\(ids[0])/cancel", method: .post, headers: bearer).status == .forbidden)
            // A full API token never travels in a URL.
            let apiToken = harness.auth[.authorization]!.dropFirst("Bearer ".count)
            #expect(try await client.execute(uri: "/v1/builds/\(ids[0])/logs?access_token=\(apiToken)", method: .get).status == .unauthorized)
        }
    }

    @Test func revokedAndExpiredTokensStopWorking() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        let (token, record) = try await harness.tokens.createToken(
            tenant: .default, name: "ci", scopes: [.buildsRead], buildID: nil, expiresAt: nil, at: Date())
        let (expired, _) = try await harness.tokens.createToken(
            tenant: .default, name: "old", scopes: [.buildsRead], buildID: nil, expiresAt: Date().addingTimeInterval(-1), at: Date())
        try await harness.application().test(.router) { client in
            let before = try await client.execute(uri: "/v1/builds", method: .get, headers: [.authorization: "Bearer \(token)"])
            #expect(before.status == .ok)
            let revoked = try await harness.tokens.revokeToken(id: record.id, at: Date())
            #expect(revoked)
            let after = try await client.execute(uri: "/v1/builds", method: .get, headers: [.authorization: "Bearer \(token)"])
            #expect(after.status == .unauthorized)
            let old = try await client.execute(uri: "/v1/builds", method: .get, headers: [.authorization: "Bearer \(expired)"])
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
            #expect(try await client.execute(uri: "/v1/registries/r.example.com:5000", method: .put, headers: writer, body: body).status == .forbidden)
            #expect(try await client.execute(uri: "/v1/registries/r.example.com:5000", method: .put, headers: harness.auth, body: body).status == .noContent)
            #expect(try await client.execute(uri: "/v1/registries/not%20a%20host", method: .put, headers: harness.auth, body: body).status == .badRequest)
            let listed = try await client.execute(uri: "/v1/registries", method: .get, headers: harness.auth)
            #expect(listed.text.contains("r.example.com:5000"))
            #expect(!listed.text.contains("hunter2") && !listed.text.contains("robot"))
            let theirs = try await client.execute(uri: "/v1/registries", method: .get, headers: other)
            #expect(!theirs.text.contains("r.example.com"))
            #expect(try await client.execute(uri: "/v1/registries/r.example.com:5000", method: .delete, headers: other).status == .notFound)
        }
        let stored = try await harness.registryCredentials.credential(tenant: .default, host: "r.example.com:5000")
        #expect(stored == RegistryCredential(username: "robot", password: "hunter2-secret"))
        #expect(try await harness.registryCredentials.credential(tenant: TenantID("acme")!, host: "r.example.com:5000") == nil)
        // Sealed at rest: the password is nowhere in the database file.
        let database = try Data(contentsOf: URL(fileURLWithPath: "\(harness.directory.path)/db.sqlite"))
        let wal = (try? Data(contentsOf: URL(fileURLWithPath: "\(harness.directory.path)/db.sqlite-wal"))) ?? Data()
        #expect(database.range(of: Data("hunter2-secret".utf8)) == nil && wal.range(of: Data("hunter2-secret".utf8)) == nil)
    }
}
