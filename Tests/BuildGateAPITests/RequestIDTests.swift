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

struct RequestIDTests {
    @Test func everyResponseCarriesARequestIDTheClientsWhenSane() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        try await harness.application().test(.router) { client in
            let given = try await client.execute(
                uri: "/v1/builds", method: .get,
                headers: harness.auth(adding: [HTTPField.Name("X-Request-Id")!: "trace-123"]))
            #expect(given.headers[HTTPField.Name("X-Request-Id")!] == "trace-123")
            let made = try await client.execute(uri: "/v1/builds/nope", method: .get, headers: harness.auth)
            #expect(made.status == .badRequest || made.status == .notFound)
            #expect(made.headers[HTTPField.Name("X-Request-Id")!]?.isEmpty == false)
            let insane = try await client.execute(
                uri: "/v1/builds", method: .get,
                headers: harness.auth(adding: [HTTPField.Name("X-Request-Id")!: String(repeating: "x", count: 200)]))
            #expect(insane.headers[HTTPField.Name("X-Request-Id")!]?.count != 200)
        }
    }
}
