import Foundation
import Logging
import ServiceLifecycle

/// Probes every discovered builder on an interval (Podman/dockerd `/_ping` and `/version`, buildkitd `buildctl
/// debug workers`) and records the result in the pool: a builder that fails leaves rotation, and comes back when
/// a probe succeeds again.
package struct BuilderHealthMonitor: Service {
    private let pool: BuilderPool
    private let drivers: [BuilderEngine: any BuilderDriver]
    private let interval: Duration
    private let timeout: Duration
    private let logger: Logger

    package init(
        pool: BuilderPool, drivers: [BuilderEngine: any BuilderDriver], interval: Duration = .seconds(5),
        timeout: Duration = .seconds(10), logger: Logger
    ) {
        self.pool = pool
        self.drivers = drivers
        self.interval = interval
        self.timeout = timeout
        self.logger = logger
    }

    package func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await probeAll()
                try? await Task.sleep(for: interval)
            }
        }
    }

    /// Probes every discovered builder once, all at the same time.
    package func probeAll() async {
        await withTaskGroup(of: Void.self) { group in
            for endpoint in pool.discovered {
                group.addTask { await probe(endpoint) }
            }
        }
    }

    private func probe(_ endpoint: BuilderEndpoint) async {
        guard let driver = drivers[endpoint.engine] else {
            pool.record(endpoint.name, health: .unhealthy, error: "no driver for engine \(endpoint.engine.rawValue)")
            return
        }
        let before = pool.members.first { $0.endpoint.name == endpoint.name }?.health
        let result = await withTaskGroup(of: Result<BuilderProbe, any Error>?.self) { group in
            group.addTask { do { return .success(try await driver.probe(endpoint)) } catch { return .failure(error) } }
            group.addTask { [timeout] in
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        switch result {
        case .success(let probe)?:
            pool.record(endpoint.name, health: .healthy, version: probe.version, platforms: probe.platforms)
            if before != .healthy {
                logger.info(
                    "builder is healthy",
                    metadata: [
                        "buildgate.builder.endpoint": "\(endpoint)", "buildgate.builder.version": "\(probe.version)",
                    ])
            }
        case .failure(let error)?:
            pool.record(endpoint.name, health: .unhealthy, error: "\(error)")
            if before != .unhealthy {
                logger.warning(
                    "builder is unhealthy",
                    metadata: ["buildgate.builder.endpoint": "\(endpoint)", "buildgate.error": "\(error)"])
            }
        case nil:
            pool.record(endpoint.name, health: .unhealthy, error: "no answer within \(timeout)")
            if before != .unhealthy {
                logger.warning("builder does not answer", metadata: ["buildgate.builder.endpoint": "\(endpoint)"])
            }
        }
    }
}
