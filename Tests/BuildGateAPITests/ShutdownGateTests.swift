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

/// While shutting down gracefully, new uploads and webhook deliveries are told to come back later; reads go on.
struct ShutdownGateTests {
    @Test func uploadsAndWebhooksGet503WithRetryAfterWhileReadsWork() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        try await testGracefulShutdown { trigger in
            try await harness.application().test(.router) { client in
                let before = try await client.execute(
                    uri: "/v1/builds?image=r.example.com/a:1", method: .post, headers: harness.auth,
                    body: ByteBuffer(bytes: sampleContext()))
                #expect(before.status == .accepted)
                #expect(try await client.execute(uri: "/readyz", method: .get).status == .ok)
                trigger.triggerGracefulShutdown()
                let upload = try await client.execute(
                    uri: "/v1/builds?image=r.example.com/a:1", method: .post, headers: harness.auth,
                    body: ByteBuffer(bytes: sampleContext()))
                #expect(upload.status == .serviceUnavailable)
                #expect(upload.headers[.retryAfter] == "30")
                #expect(try upload.decode(ErrorEnvelope.self).error.code == "shuttingDown")
                let webhook = try await client.execute(
                    uri: "/v1/webhooks/github", method: .post, body: ByteBuffer(string: "{}"))
                #expect(webhook.status == .serviceUnavailable)
                // A draining replica leaves the Service's endpoints while it finishes what it has.
                let ready = try await client.execute(uri: "/readyz", method: .get)
                #expect(ready.status == .serviceUnavailable)
                #expect(try ready.decode(ErrorEnvelope.self).error.message.contains("draining"))
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
        // Room to see shutdown in effect before the rest is sent; short where the upload must run out of time.
        limits.uploadShutdownGrace = finishesInTime ? .seconds(20) : .milliseconds(500)
        let harness = try await APIHarness(limits: limits)
        defer { harness.directory.remove() }
        let context = sampleContext()
        let (pieces, feed) = AsyncStream<ByteBuffer>.makeStream()
        try await testGracefulShutdown { trigger in
            try await harness.application().test(.live) { client in
                var request = HTTPClientRequest(
                    url: "http://127.0.0.1:\(client.port!)/v1/builds?image=r.example.com/a:1")
                request.method = .POST
                request.headers.add(name: "Authorization", value: harness.auth[.authorization]!)
                request.body = .stream(pieces, length: .known(Int64(context.count)))
                let upload = Task { [request] in
                    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
                    return (response.status, try await response.body.collect(upTo: 1 << 16))
                }
                feed.yield(ByteBuffer(bytes: context.prefix(512)))
                let inFlight = try await ChildProcess.wait(for: .seconds(10)) {
                    !harness.directory.files(under: "tmp").isEmpty
                }
                #expect(inFlight, "the upload is in flight")

                let started = ContinuousClock.now
                trigger.triggerGracefulShutdown()
                if finishesInTime {
                    // Once shutdown is in effect (a new connection is refused, or a new upload gets 503), the upload
                    // in flight finishes within its grace.
                    var probe = HTTPClientRequest(
                        url: "http://127.0.0.1:\(client.port!)/v1/builds?image=r.example.com/a:1")
                    probe.method = .POST
                    probe.headers.add(name: "Authorization", value: harness.auth[.authorization]!)
                    while let answer = try? await HTTPClient.shared.execute(probe, timeout: .seconds(10)),
                        answer.status != .serviceUnavailable
                    {
                        await Task.yield()
                    }
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
