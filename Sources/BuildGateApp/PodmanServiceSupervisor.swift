import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// The embedded default builder: a `podman system service` on a unix socket in the data directory, started by the
/// gateway, restarted when it dies, and stopped when the gateway stops.
///
/// Insecure registries are written to a private `registries.conf` for this service, so base images can be pulled
/// from them too. A service left behind by a gateway that was killed (its pid file) is stopped first.
package final class PodmanServiceSupervisor: Service {
    package let socketPath: String
    private let directory: String
    private let executable: String
    private let arguments: [String]
    private let insecureRegistries: Set<String>
    private let logger: Logger
    private let process = Mutex<Process?>(nil)

    package init(
        dataDirectory: String, executable: String, arguments: [String], insecureRegistries: Set<String>, logger: Logger
    ) {
        directory = "\(dataDirectory)/podman"
        socketPath = "\(directory)/podman.sock"
        self.executable = executable
        self.arguments = arguments
        self.insecureRegistries = insecureRegistries
        self.logger = logger
    }

    /// Starts the service and waits (up to `timeout`) until it answers on its socket.
    package func start(timeout: Duration = .seconds(30)) async throws {
        try FileManager.default.createDirectory(
            atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        stopLeftover()
        try launch()
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if FileManager.default.fileExists(atPath: socketPath) { return }
            if process.withLock({ $0?.isRunning == false }) { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        let log = (try? String(contentsOfFile: "\(directory)/podman-service.log", encoding: .utf8)) ?? ""
        throw SupervisorError(
            message: "podman system service did not start on \(socketPath); its log ends:\n"
                + log.suffix(2000))
    }

    package func run() async throws {
        var restarts = 0
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            let exited = await waitForExit()
            if Task.isShuttingDownGracefully || Task.isCancelled { break }
            restarts += 1
            logger.warning(
                "podman system service exited; restarting",
                metadata: ["buildgate.podman.status": "\(exited)", "buildgate.podman.restarts": "\(restarts)"])
            try? await Task.sleep(for: .seconds(min(restarts, 10)))
            do { try launch() } catch {
                logger.error("cannot restart podman system service", metadata: ["buildgate.error": "\(error)"])
            }
        }
        terminate()
    }

    /// Stops the service (SIGTERM) if it runs.
    package func terminate() {
        process.withLock { process in
            if let running = process, running.isRunning { running.terminate() }
        }
        try? FileManager.default.removeItem(atPath: pidFile)
    }

    private var pidFile: String { "\(directory)/podman.pid" }

    private func launch() throws {
        try? FileManager.default.removeItem(atPath: socketPath)
        let child = Process()
        child.executableURL = URL(fileURLWithPath: try resolveExecutable())
        child.arguments = arguments + ["system", "service", "--time=0", "unix://\(socketPath)"]
        var environment = ProcessInfo.processInfo.environment
        if !insecureRegistries.isEmpty {
            let conf = "\(directory)/registries.conf"
            let entries = insecureRegistries.sorted().map { "[[registry]]\nlocation = \"\($0)\"\ninsecure = true\n" }
            try ("unqualified-search-registries = [\"docker.io\"]\n\n" + entries.joined(separator: "\n"))
                .write(toFile: conf, atomically: true, encoding: .utf8)
            environment["CONTAINERS_REGISTRIES_CONF"] = conf
        }
        child.environment = environment
        child.standardOutput = FileHandle.nullDevice
        child.standardError = try FileHandle(forWritingTo: logFile())
        try child.run()
        try "\(child.processIdentifier)".write(toFile: pidFile, atomically: true, encoding: .utf8)
        process.withLock { $0 = child }
        logger.info(
            "started podman system service",
            metadata: ["buildgate.podman.pid": "\(child.processIdentifier)", "buildgate.podman.socket": "\(socketPath)"])
    }

    private func logFile() throws -> URL {
        let path = "\(directory)/podman-service.log"
        if !FileManager.default.fileExists(atPath: path) {
            FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600])
        }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.seekToEnd()
        try handle.close()
        return URL(fileURLWithPath: path)
    }

    private func waitForExit() async -> Int32 {
        guard let child = process.withLock({ $0 }) else { return -1 }
        return await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                while child.isRunning {
                    try? await Task.sleep(for: .milliseconds(500))
                    if Task.isShuttingDownGracefully || Task.isCancelled { return -1 }
                }
                return child.terminationStatus
            } onGracefulShutdown: {}
        } onCancel: {}
    }

    /// A service whose pid file survived a killed gateway would hold the socket: stop it.
    private func stopLeftover() {
        guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
            let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)),
            let command = try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8),
            command.contains("podman"), command.contains(socketPath)
        else { return }
        kill(pid, SIGTERM)
        for _ in 0..<50 where kill(pid, 0) == 0 { usleep(100_000) }
        logger.notice("stopped a podman service left by an earlier run", metadata: ["buildgate.podman.pid": "\(pid)"])
    }

    private func resolveExecutable() throws -> String {
        if executable.contains("/") { return executable }
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(directory)/\(executable)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw SupervisorError(message: "'\(executable)' is not installed (or not on PATH): install podman, or give --builder")
    }

    struct SupervisorError: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }
}
