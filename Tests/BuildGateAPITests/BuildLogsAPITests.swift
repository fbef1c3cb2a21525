import AsyncHTTPClient
import BuildGateCore
import BuildGateTesting
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Testing

struct BuildLogsAPITests {
    /// A queued build whose log the test writes itself, standing in for the dispatcher.
    private func queuedBuild(_ harness: APIHarness, client: some TestClientProtocol) async throws -> BuildID {
        let response = try await client.execute(
            uri: "/v1/builds?image=r.example.com/a:1", method: .post, headers: harness.auth,
            body: ByteBuffer(bytes: sampleContext()))
        return try #require(BuildID(try response.decode(BuildJSON.self).id))
    }

    /// Ends the build the way the dispatcher does: claimed, then settled (result line, status, log finished).
    private func finish(_ id: BuildID, _ harness: APIHarness) async throws {
        let claimed = try #require(
            try await harness.store.claimNext(builder: "b", owner: "o", leaseUntil: Date() + 60, now: Date()))
        let settler = BuildSettler(
            store: harness.store, logs: harness.logs, observer: NoBuildObserver(), logger: Logger(label: "test"))
        _ = try await settler.settle(
            claimed, on: .engineFinished(.succeeded([]), timedOut: false), expecting: .lease(owner: "o"), at: Date())
    }

    @Test func rangeAndOffsetReadFromAByteAndSay416WhenNothingIsThereYet() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        try await harness.application().test(.router) { client in
            let id = try await queuedBuild(harness, client: client)
            let queuedLine = try await client.execute(uri: "/v1/builds/\(id)/logs", method: .get, headers: harness.auth)
            #expect(queuedLine.status == .ok)
            #expect(queuedLine.headers[.init("X-Build-Status")!] == "queued")
            #expect(queuedLine.headers[.init("X-Log-Complete")!] == "false")
            let length = queuedLine.body.readableBytes
            #expect(queuedLine.headers[.init("X-Next-Offset")!] == String(length))

            try await harness.logs.append(Array("0123456789".utf8), to: id)
            let ranged = try await client.execute(
                uri: "/v1/builds/\(id)/logs", method: .get,
                headers: harness.auth(adding: [.range: "bytes=\(length + 4)-"]))
            #expect(ranged.status == .partialContent)
            #expect(ranged.text == "456789")
            #expect(ranged.headers[.contentRange] == "bytes \(length + 4)-\(length + 9)/*")
            #expect(ranged.headers[.init("X-Next-Offset")!] == String(length + 10))

            let bounded = try await client.execute(
                uri: "/v1/builds/\(id)/logs", method: .get,
                headers: harness.auth(adding: [.range: "bytes=\(length)-\(length + 2)"]))
            #expect(bounded.text == "012")

            let beyond = try await client.execute(
                uri: "/v1/builds/\(id)/logs", method: .get,
                headers: harness.auth(adding: [.range: "bytes=\(length + 10)-"]))
            #expect(beyond.status == .rangeNotSatisfiable)
            #expect(beyond.headers[.contentRange] == "bytes */\(length + 10)")

            let offset = try await client.execute(
                uri: "/v1/builds/\(id)/logs?offset=\(length + 8)", method: .get, headers: harness.auth)
            #expect(offset.status == .ok)
            #expect(offset.text == "89")

            try await finish(id, harness)
            let complete = try await client.execute(
                uri: "/v1/builds/\(id)/logs", method: .get, headers: harness.auth(adding: [.range: "bytes=\(length)-"]))
            #expect(complete.headers[.init("X-Log-Complete")!] == "true")
            // The settlement's result line ends the log.
            let whole = length + 10 + "[buildgate] result: succeeded\n".utf8.count
            #expect(complete.headers[.contentRange] == "bytes \(length)-\(whole - 1)/\(whole)")
            #expect(complete.text.hasSuffix("0123456789[buildgate] result: succeeded\n"))

            let bad = try await client.execute(
                uri: "/v1/builds/\(id)/logs?wait=61&offset=0", method: .get, headers: harness.auth)
            #expect(bad.status == .badRequest)
        }
    }

    @Test func aLongPollReturnsAsSoonAsBytesArriveOrWhenTheWaitEnds() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        try await harness.application().test(.router) { client in
            let id = try await queuedBuild(harness, client: client)
            let length = await harness.logs.snapshot(id).length

            let clock = ContinuousClock()
            let start = clock.now
            let quiet = try await client.execute(
                uri: "/v1/builds/\(id)/logs?offset=\(length)&wait=1", method: .get, headers: harness.auth)
            #expect(clock.now - start >= .milliseconds(900))
            #expect(quiet.status == .ok && quiet.body.readableBytes == 0)
            #expect(quiet.headers[.init("X-Next-Offset")!] == String(length))

            let writer = Task {
                // Written once the long poll below waits for it.
                while harness.logs.waiterCount(id) == 0 { await Task.yield() }
                try await harness.logs.append(Array("new line\n".utf8), to: id)
            }
            let woken = clock.now
            let answer = try await client.execute(
                uri: "/v1/builds/\(id)/logs?offset=\(length)&wait=30", method: .get, headers: harness.auth)
            try await writer.value
            #expect(clock.now - woken < .seconds(10))
            #expect(answer.text == "new line\n")
            #expect(answer.headers[.init("X-Next-Offset")!] == String(length + 9))

            let ending = Task {
                while harness.logs.waiterCount(id) == 0 { await Task.yield() }
                try await finish(id, harness)
            }
            // The result line comes first, then the status: a poller goes on from X-Next-Offset until complete.
            var offset = length + 9
            var rest = ""
            var final: TestResponse
            repeat {
                final = try await client.execute(
                    uri: "/v1/builds/\(id)/logs?offset=\(offset)&wait=30", method: .get, headers: harness.auth)
                rest += final.text
                offset = try #require(Int64(final.headers[.init("X-Next-Offset")!] ?? ""))
            } while final.headers[.init("X-Log-Complete")!] != "true"
            try await ending.value
            #expect(final.headers[.init("X-Build-Status")!] == "succeeded")
            #expect(rest == "[buildgate] result: succeeded\n")
        }
    }

    @Test func twoFollowersGetEveryByteOnceFromFileThenLiveUntilTheBuildEnds() async throws {
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        try await harness.application().test(.live) { client in
            let id = try await queuedBuild(harness, client: client)
            for line in 0..<50 { try await harness.logs.append(Array("before \(line)\n".utf8), to: id) }
            let url = "http://127.0.0.1:\(client.port!)/v1/builds/\(id)/logs?follow=true"

            var request = HTTPClientRequest(url: url)
            request.headers.add(name: "Authorization", value: harness.auth[.authorization]!)
            let followers = (0..<2).map { [request] _ in
                Task {
                    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
                    #expect(response.status == .ok)
                    #expect(response.headers["Connection"] == ["close"])
                    var received: [UInt8] = []
                    for try await chunk in response.body { received += chunk.readableBytesView }
                    return received
                }
            }
            // One follower that goes away early must cost nothing and disturb no one.
            let quitter = Task { [request] in
                let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
                for try await _ in response.body { break }
            }
            // About 220 KB: several of the store's pieces, crossed mid-append.
            for line in 0..<2_000 {
                try await harness.logs.append(
                    Array("live \(line) \(String(repeating: "x", count: line % 200))\n".utf8), to: id)
                if line % 200 == 0 { try await Task.sleep(for: .milliseconds(10)) }
            }
            try await quitter.value
            try await finish(id, harness)

            let expected = try await harness.logs.whole(id)
            for follower in followers {
                let received = try await follower.value
                #expect(expected.count > 4 * 32 * 1024)
                #expect(received.count == expected.count)
                #expect(received == expected)
            }

            // Following a build that is already over: the headers say complete, with the final offset.
            let late = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
            #expect(late.headers["X-Log-Complete"] == ["true"])
            #expect(late.headers["X-Next-Offset"] == [String(expected.count)])
            #expect(late.headers["X-Build-Status"] == ["succeeded"])
            #expect(Array(try await late.body.collect(upTo: 1 << 20).readableBytesView) == expected)
        }
    }
}
