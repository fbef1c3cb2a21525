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
                uri: "/v1/secrets/npmrc", method: .put, headers: harness.auth,
                body: ByteBuffer(string: "//registry/:_authToken=abc123\n"))
            #expect(put.status == .noContent)
            let listed = try await client.execute(uri: "/v1/secrets", method: .get, headers: harness.auth)
            #expect(listed.status == .ok)
            #expect(listed.text.contains(#""name":"npmrc""#))
            #expect(!listed.text.contains("abc123"))
            #expect(
                try await harness.secrets.secrets(tenant: .default, names: ["npmrc"])["npmrc"]?.bytes
                    == Array("//registry/:_authToken=abc123\n".utf8))

            // Another tenant neither sees nor deletes it; a token without admin cannot touch secrets.
            #expect(
                !(try await client.execute(uri: "/v1/secrets", method: .get, headers: other).text.contains("npmrc")))
            #expect(
                try await client.execute(uri: "/v1/secrets/npmrc", method: .delete, headers: other).status == .notFound)
            #expect(
                try await client.execute(
                    uri: "/v1/secrets/npmrc", method: .put, headers: writer, body: ByteBuffer(string: "x")
                ).status == .forbidden)

            // Bad names, empty and oversized values.
            for name in [".hidden", "a%2Fb", String(repeating: "n", count: 65)] {
                let response = try await client.execute(
                    uri: "/v1/secrets/\(name)", method: .put, headers: harness.auth, body: ByteBuffer(string: "v"))
                #expect(response.status == .badRequest, "\(name)")
            }
            #expect(
                try await client.execute(uri: "/v1/secrets/empty", method: .put, headers: harness.auth).status
                    == .badRequest)
            let huge = try await client.execute(
                uri: "/v1/secrets/huge", method: .put, headers: harness.auth,
                body: ByteBuffer(repeating: 0x41, count: 64 * 1024 + 1))
            #expect(huge.status == .contentTooLarge)
            #expect(try await harness.secrets.names(of: .default).map(\.name) == ["npmrc"])

            #expect(
                try await client.execute(uri: "/v1/secrets/npmrc", method: .delete, headers: harness.auth).status
                    == .noContent)
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

            _ = try await client.execute(
                uri: "/v1/secrets/npmrc", method: .put, headers: harness.auth, body: ByteBuffer(string: "token-xyz"))
            let accepted = try await client.execute(
                uri:
                    "/v1/builds?image=r.example.com/a:1&secret=npmrc&cacheFrom=r.example.com/a:cache&cacheTo=r.example.com/a:cache",
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
        let harness = try await APIHarness(builders: [
            BuilderEndpoint(name: "d", engine: .docker, address: .unix(path: "/d"))
        ])
        defer { harness.directory.remove() }
        try await harness.application().test(.router) { client in
            _ = try await client.execute(
                uri: "/v1/secrets/npmrc", method: .put, headers: harness.auth, body: ByteBuffer(string: "token"))
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
                body: ByteBuffer(
                    string:
                        #"{"source":{"git":{"url":"https://g.example.com/o/r.git","ref":"main"}},"images":["r.example.com/a:1"],"secrets":["npmrc"]}"#
                ))
            #expect(git.status == .unprocessableContent)
            // Without those options the same pool takes the build.
            let plain = try await client.execute(
                uri: "/v1/builds?image=r.example.com/a:1", method: .post, headers: harness.auth,
                body: ByteBuffer(bytes: sampleContext()))
            #expect(plain.status == .accepted)
        }
        #expect(try await harness.buildCount() == 1)
    }
}
