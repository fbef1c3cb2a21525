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

struct DiskSpaceTests {
    @Test func anUploadIsRefusedWith507WhenTheDataDirectoryIsShortOfSpace() async throws {
        let harness = try await APIHarness(freeDiskBytes: 900 << 20)
        defer { harness.directory.remove() }
        try await harness.application().test(.router) { client in
            let refused = try await client.execute(
                uri: "/v1/builds?image=r.example.com/a:1", method: .post, headers: harness.auth,
                body: ByteBuffer(bytes: sampleContext()))
            #expect(refused.status.code == 507)
            let error = try refused.decode(ErrorEnvelope.self).error
            #expect(error.code == "insufficientStorage")
            #expect(error.message.contains("900 MiB free"))
        }
        #expect(try await harness.buildCount() == 0)
        #expect(harness.contextFiles.isEmpty)
    }
}
