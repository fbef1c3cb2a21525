import AsyncHTTPClient
import BuildGateCore
import BuildGateTesting
import EngineAPIDriver
import Foundation
import Logging
import Synchronization
import Testing

/// The driver reports what one read from the engine brought as one piece of output (`EngineBuildStreamTests`
/// checks the pieces); through a real Podman build printing 20,000 lines as fast as it can, nothing is lost or
/// reordered, and the steps report still follows the output it belongs after.
@Suite(.enabled(if: RealEngines.shouldRun, RealEngines.skipReason))
struct EngineBuildOutputTests {
    @Test func aFastBuildsOutputArrivesWholeAndInOrder() async throws {
        let socket = try #require(RealEngines.podmanSocket, "BUILDGATE_TEST_PODMAN_SOCKET is not set: run scripts/test")
        let registry = try #require(RealEngines.registry, "BUILDGATE_TEST_REGISTRY is not set: run scripts/test")
        let directory = try TemporaryDirectory("output")
        defer { directory.remove() }
        let lines = 20_000
        let job = try podmanJob(
            dockerfile: """
                FROM \(registry)/busybox:latest
                RUN i=0; while [ $i -lt \(lines) ]; do echo line-$i; i=$((i+1)); done
                RUN echo after-the-loop

                """, in: directory
        ) { $0.noCache = true }
        let driver = EngineAPIDriver(httpClient: .shared, logger: Logger(label: "test"))
        let endpoint = BuilderEndpoint(name: "podman", engine: .podman, address: .unix(path: socket))

        let events = Mutex<[BuildEvent]>([])
        _ = await driver.run(job, on: endpoint) { event in events.withLock { $0.append(event) } }

        let seen = events.withLock { $0 }
        let pieces = seen.compactMap { if case .output(let text) = $0 { text } else { nil } }
        let output = pieces.joined()
        let printed = output.split(separator: "\n").filter { $0.hasPrefix("line-") }.map(String.init)
        #expect(printed == (0..<lines).map { "line-\($0)" }, "every line, once, in order")
        // The second step's name comes after the loop's output, and a steps report follows the output before it.
        let loopEnd = try #require(output.range(of: "line-\(lines - 1)\n"))
        let secondStep = try #require(output.range(of: "echo after-the-loop"))
        #expect(loopEnd.upperBound <= secondStep.lowerBound)
        let stepReports = seen.enumerated().compactMap { index, event -> Int? in
            if case .steps(let steps) = event, steps.count == 3 { index } else { nil }
        }
        let lastLoopPiece = try #require(
            seen.lastIndex { if case .output(let text) = $0 { text.contains("line-\(lines - 1)\n") } else { false } })
        #expect(
            stepReports.first.map { $0 > lastLoopPiece } == true, "the third step is reported after the second's output"
        )
    }
}
