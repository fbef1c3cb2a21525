import BuildGateCore
import Foundation
import Synchronization

/// A scripted `BuilderDriver` for dispatcher tests: reports `accepted`, writes the script's lines, optionally holds
/// until released or cancelled, and returns the scripted outcome. Like a real driver, when cancelled it keeps its
/// slot for `stopDelay` (an engine that needs time to stop) before returning `.failed(.cancelled)`.
package final class FakeBuilderDriver: BuilderDriver {
    package struct Script: Sendable {
        package var lines: [String] = ["step 1\n"]
        package var holdUntilReleased = false
        package var outcome: BuildOutcome = .succeeded([])
        package var stopDelay: Duration = .zero
        /// Builders that vanish mid-build: a build there ends `builderUnavailable` after its output.
        package var vanishingBuilders: Set<String> = []

        package init() {}
    }

    private struct State {
        var running = 0
        var maxConcurrent = 0
        var runs: [BuildID] = []
        var released = false
        var endpoints: [String] = []
    }

    private let script: Script
    private let state = Mutex(State())

    package init(script: Script = Script()) {
        self.script = script
    }

    /// Most builds that were inside `run` at the same time.
    package var maxConcurrent: Int { state.withLock { $0.maxConcurrent } }
    /// Every build `run` was called with, in order.
    package var runs: [BuildID] { state.withLock { $0.runs } }
    /// The builder of each call to `run`, in order.
    package var endpoints: [String] { state.withLock { $0.endpoints } }

    package func probe(_ endpoint: BuilderEndpoint) async throws -> BuilderProbe {
        BuilderProbe(version: "fake engine at \(endpoint.address)")
    }

    /// Lets every held build (and every later one) finish.
    package func release() { state.withLock { $0.released = true } }

    package func run(
        _ job: BuildJob,
        on endpoint: BuilderEndpoint,
        events: @escaping @Sendable (BuildEvent) async -> Void
    ) async -> BuildOutcome {
        state.withLock {
            $0.running += 1
            $0.maxConcurrent = max($0.maxConcurrent, $0.running)
            $0.runs.append(job.id)
            $0.endpoints.append(endpoint.name)
        }
        defer { state.withLock { $0.running -= 1 } }
        await events(.accepted(engine: "fake engine"))
        for line in script.lines { await events(.output(line)) }
        if script.holdUntilReleased {
            while !state.withLock({ $0.released }) && !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(10))
            }
        }
        if Task.isCancelled {
            // Sleep in a task that is not cancelled: the engine takes this long to stop.
            await Task.detached { [delay = script.stopDelay] in try? await Task.sleep(for: delay) }.value
            return .failed(.cancelled, message: "stopped")
        }
        if script.vanishingBuilders.contains(endpoint.name) {
            return .failed(.builderUnavailable, message: "lost the builder during the build: connection reset")
        }
        return script.outcome
    }
}

extension BuilderPool {
    /// A pool of `endpoints` from a static list, all healthy, as a probed pool would be.
    package static func healthy(_ endpoints: [BuilderEndpoint]) -> BuilderPool {
        let pool = BuilderPool()
        pool.update(endpoints, from: "static")
        for endpoint in endpoints { pool.record(endpoint.name, health: .healthy) }
        return pool
    }
}
