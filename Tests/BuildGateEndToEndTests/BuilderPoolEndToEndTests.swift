import AsyncHTTPClient
import BuildGateCore
import BuildGateTesting
import Foundation
import NIOCore
import Testing

/// Two real Podman services as one pool (capacity 1 each), started by this suite so one can be killed.
@Suite(.enabled(if: RealEngines.shouldRun, RealEngines.skipReason), .serialized, .timeLimit(.minutes(5)))
struct BuilderPoolEndToEndTests {
    /// A `podman system service` of its own (storage, socket), pulling from the test registry.
    struct PrivatePodman: Sendable {
        let directory: String
        let process: Process
        var socket: String { "\(directory)/podman.sock" }
        /// With a tmp dir of its own: the default, /run/libpod, is shared by every Podman on the machine, and
        /// `stop`'s `system reset` would delete it while other tests' Podman services use it.
        private static func podman(_ directory: String) -> [String] {
            [
                "podman", "--root", "\(directory)/storage", "--runroot", "\(directory)/run", "--tmpdir",
                "\(directory)/libpod", "--runtime", "runc", "--cgroup-manager", "cgroupfs",
            ]
        }

        static func start() async throws -> PrivatePodman {
            // Podman refuses a runroot longer than 50 characters: keep the directory short.
            let directory = "/tmp/bgpool-\(UUID().uuidString.prefix(8).lowercased())"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let registries = try #require(RealEngines.environment["BUILDGATE_TEST_DIR"]).appending("/registries.conf")
            let process = try ChildProcess.start(
                podman(directory) + ["system", "service", "--time=0", "unix://\(directory)/podman.sock"],
                environment: ["CONTAINERS_REGISTRIES_CONF": registries], logFile: "\(directory)/service.log")
            let podman = PrivatePodman(directory: directory, process: process)
            let started = try await ChildProcess.wait(for: .seconds(20)) {
                FileManager.default.fileExists(atPath: podman.socket)
            }
            try #require(started, "podman system service did not start")
            return podman
        }

        func kill() { Foundation.kill(process.processIdentifier, SIGKILL) }

        func stop() async {
            if process.isRunning { process.terminate() }
            _ = try? await ChildProcess.run(Self.podman(directory) + ["system", "reset", "--force"])
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    @Test func aPoolOfTwoSchedulesByCacheKeyAndRetriesElsewhereWhenABuilderDies() async throws {
        let services = try RealServices()
        let a = try await PrivatePodman.start()
        let b = try await PrivatePodman.start()
        do {
            try await poolScenario(services: services, a: a, b: b)
        } catch {
            await a.stop()
            await b.stop()
            throw error
        }
        await a.stop()
        await b.stop()
    }

    private func poolScenario(services: RealServices, a: PrivatePodman, b: PrivatePodman) async throws {
        let builders = ["podman=unix://\(a.socket),name=pm-a", "podman=unix://\(b.socket),name=pm-b"]
        // Two keys, one preferring each builder, found with the gateway's own rendezvous choice on an idle pool.
        let scratch = BuilderPool.healthy(
            ["pm-a", "pm-b"].map { BuilderEndpoint(name: $0, engine: .podman, address: .unix(path: "/\($0)")) })
        func preferred(_ image: String) throws -> String? {
            let build = Build(
                id: .generate(), request: BuildRequest(images: [try ImageReference(parsing: image)]), context: nil,
                createdAt: Date())
            if case .endpoint(let endpoint) = scratch.choose(for: build) { return endpoint.name }
            return nil
        }
        let candidates = (0..<64).map { services.uniqueImage("pool\($0)") }
        let onA = try #require(try candidates.first { try preferred($0) == "pm-a" })
        let onB = try #require(try candidates.first { try preferred($0) == "pm-b" })
        let others = candidates.filter { $0 != onA && $0 != onB }
        try await services.withGateway(builders: builders) { gateway, _ in
            // Four builds of four keys: two run at a time (capacity 1 each), all succeed, on both builders.
            let keys = [onA, onB] + others.prefix(2)
            var ids: [String] = []
            for key in keys {
                ids.append(try await gateway.submit(services.context("RUN sleep 2\n"), query: "image=\(key)").id)
            }
            var finished: [BuildJSON] = []
            for id in ids { finished.append(try await gateway.waitUntilFinished(id)) }
            // How many ran at once, from their own start and end times (polling statuses one by one would not
            // give a consistent picture).
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            let intervals = try finished.map { build in
                (
                    try #require(build.startedAt.flatMap(formatter.date(from:))),
                    try #require(build.finishedAt.flatMap(formatter.date(from:)))
                )
            }
            let mostRunning =
                intervals.map { start, _ in intervals.filter { $0.0 <= start && start < $0.1 }.count }.max() ?? 0
            #expect(finished.allSatisfy { $0.status == "succeeded" }, "\(finished.map(\.message))")
            #expect(mostRunning == 2)
            #expect(Set(finished.compactMap(\.builder)) == ["pm-a", "pm-b"])

            // Repeated builds of one key land where its cache is.
            for (key, builder) in [(onA, "pm-a"), (onB, "pm-b"), (onA, "pm-a"), (onB, "pm-b")] {
                let again = try await gateway.waitUntilFinished(
                    try await gateway.submit(services.context(""), query: "image=\(key)").id)
                #expect(again.builder == builder, "\(key)")
            }

            // pm-b dies in the middle of a build of its key: the build is retried on pm-a, nothing is lost.
            let doomed = try await gateway.submit(
                services.context("RUN echo started-on-b && sleep 5\n"), query: "image=\(onB)")
            _ = try await gateway.waitFor(doomed.id) { $0.status == "running" && $0.builder == "pm-b" }
            try await gateway.waitForLog(doomed.id, containing: "started-on-b\n")
            b.kill()
            let retried = try await gateway.waitUntilFinished(doomed.id)
            let log = try await gateway.log(doomed.id)
            #expect(retried.status == "succeeded", "\(log)")
            #expect(retried.builder == "pm-a")
            #expect(retried.attempt == 2)
            #expect(log.contains("attempt 1 of 3 ended without a result: builder pm-b is unavailable"))
            #expect(log.contains("dispatched to builder pm-a (podman, unix://\(a.socket)) (attempt 2 of 3)"))
            #expect(try await services.manifest(of: onB).digest == retried.images.first?.digest)

            // The key whose builder is gone moves; the other stays.
            let moved = try await gateway.waitUntilFinished(
                try await gateway.submit(services.context(""), query: "image=\(onB)").id)
            #expect(moved.builder == "pm-a")
            let stayed = try await gateway.waitUntilFinished(
                try await gateway.submit(services.context(""), query: "image=\(onA)").id)
            #expect(stayed.builder == "pm-a")
            let (_, body) = try await gateway.get("/v1/builders")
            #expect(String(decoding: body, as: UTF8.self).contains(#""health":"unhealthy""#))
        }
    }
}
