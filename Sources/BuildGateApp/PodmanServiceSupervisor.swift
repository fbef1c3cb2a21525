import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// The embedded default builder: a `podman system service` on a unix socket in the data directory, started by the
/// gateway, restarted when it dies, and stopped when the gateway stops.
///
/// The service reads a private `registries.conf` that makes loopback registries insecure (`localhost`, `127.0.0.1`
/// and `[::1]`, at any port, as dockerd does for pulls) and lists the configured insecure registries, so base images
/// can be pulled from them too. (A `location` without a port covers every port of that host in containers/image,
/// Podman's registry library; the end-to-end test that pulls from 127.0.0.1 fails if a Podman stops doing so.)
///
/// The service cannot outlive its gateway, however the gateway ends (a crash or SIGKILL included): beside it runs a
/// small `sh` watcher whose standard input is a pipe only the gateway holds open; when the kernel closes that pipe
/// with the dying gateway, the watcher stops the service. (A parent-death signal would be tied to the thread that
/// spawned the child, and Swift's pool threads come and go; a watcher forked into the service's own process tree
/// would hold Foundation's exit-notification socket and hide the service's exit.) A service left behind anyway by
/// an older gateway (its pid file) is stopped first.
package final class PodmanServiceSupervisor: Service {
    package let socketPath: String
    private let directory: String
    private let executable: String
    private let arguments: [String]
    private let insecureRegistries: Set<String>
    private let logger: Logger
    private let process = Mutex<Process?>(nil)
    /// The watcher of the running service, and the gateway's end of its pipe (never written).
    private let watcher = Mutex<(process: Process, lifeline: FileHandle)?>(nil)

    /// `sh -c` script, `$1` the service's pid: waits for end-of-file on standard input, then stops the service.
    static let watcherScript = #"read -r _ || :; kill -TERM "$1" 2>/dev/null"#

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
        stopWatcher()
        process.withLock { process in
            if let running = process, running.isRunning { running.terminate() }
        }
        try? FileManager.default.removeItem(atPath: pidFile)
    }

    private var pidFile: String { "\(directory)/podman.pid" }

    /// The service's `registries.conf`: loopback registries and `insecure` ones reached without TLS verification.
    static func registriesConf(insecure: Set<String>) -> String {
        let locations =
            ["localhost", "127.0.0.1", "[::1]"] + insecure.subtracting(["localhost", "127.0.0.1", "[::1]"]).sorted()
        return "unqualified-search-registries = [\"docker.io\"]\n"
            + locations.map { "\n[[registry]]\nlocation = \"\($0)\"\ninsecure = true\n" }.joined()
    }

    private func launch() throws {
        try? FileManager.default.removeItem(atPath: socketPath)
        let child = Process()
        child.executableURL = URL(fileURLWithPath: try resolveExecutable())
        child.arguments = arguments + ["system", "service", "--time=0", "unix://\(socketPath)"]
        var environment = ProcessInfo.processInfo.environment
        let conf = "\(directory)/registries.conf"
        try Self.registriesConf(insecure: insecureRegistries).write(toFile: conf, atomically: true, encoding: .utf8)
        environment["CONTAINERS_REGISTRIES_CONF"] = conf
        child.environment = environment
        child.standardOutput = FileHandle.nullDevice
        child.standardError = try FileHandle(forWritingTo: logFile())
        try child.run()
        try "\(child.processIdentifier)".write(toFile: pidFile, atomically: true, encoding: .utf8)
        process.withLock { $0 = child }
        do { try watch(child.processIdentifier) } catch {
            child.terminate()
            throw error
        }
        logger.info(
            "started podman system service",
            metadata: [
                "buildgate.podman.pid": "\(child.processIdentifier)", "buildgate.podman.socket": "\(socketPath)",
            ])
    }

    /// Starts the watcher that stops `pid` when this process's end of its pipe closes (replacing the previous one).
    private func watch(_ pid: Int32) throws {
        var ends: [Int32] = [0, 0]
        // A socket pair rather than a pipe, for close-on-exec from the start (Glibc's pipe2 is not imported): no
        // other child (the service, git, buildctl…) may inherit either end.
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &ends) == 0 else {
            throw SupervisorError(message: "cannot make the watcher's pipe: \(String(cString: strerror(errno)))")
        }
        let readEnd = FileHandle(fileDescriptor: ends[0], closeOnDealloc: true)
        let lifeline = FileHandle(fileDescriptor: ends[1], closeOnDealloc: true)
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/bin/sh")
        child.arguments = ["-c", Self.watcherScript, "buildgate-podman-watcher", "\(pid)"]
        child.standardInput = readEnd
        child.standardOutput = FileHandle.nullDevice
        child.standardError = FileHandle.nullDevice
        try child.run()
        try? readEnd.close()
        stopWatcher()
        watcher.withLock { $0 = (child, lifeline) }
    }

    /// Ends the watcher without letting it signal: its service is being stopped, or is gone and its pid may be reused.
    private func stopWatcher() {
        watcher.withLock { watcher in
            guard let (child, lifeline) = watcher else { return }
            if child.isRunning { kill(child.processIdentifier, SIGKILL) }
            try? lifeline.close()
            watcher = nil
        }
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
            } onGracefulShutdown: {
            }
        } onCancel: {
        }
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
        throw SupervisorError(
            message: "'\(executable)' is not installed (or not on PATH): install podman, or give --builder")
    }

    struct SupervisorError: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }
}
