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

            let superseded = try await client.execute(
                uri: "/v1/builds/\(older.id)", method: .get, headers: harness.auth
            ).decode(BuildJSON.self)
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
            #expect(
                try await client.execute(uri: "/v1/builds/\(other.id)", method: .get, headers: harness.auth).decode(
                    BuildJSON.self
                ).status == "queued")

            for bad in ["runPolicy=sometimes", "queueTTL=0", "runKey=" + String(repeating: "k", count: 201)] {
                let refused = try await client.execute(
                    uri: "/v1/builds?image=r.example.com/a:1&\(bad)", method: .post, headers: harness.auth,
                    body: ByteBuffer(bytes: sampleContext()))
                #expect(refused.status == .badRequest, "\(bad)")
            }
        }
    }
}
