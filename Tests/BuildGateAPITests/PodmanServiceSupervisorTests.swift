import AsyncHTTPClient
import BuildGateApp
import BuildGateTesting
import Foundation
import Logging
import ServiceLifecycle
import Testing

/// The embedded default builder: a real `podman system service` the gateway starts, restarts and stops.
@Suite(.enabled(if: RealEngines.shouldRun, RealEngines.skipReason))
struct PodmanServiceSupervisorTests {
    private func ping(_ socket: String) async -> Bool {
        let url = "http+unix://\(socket.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)/_ping"
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "Host", value: "localhost")
        guard let response = try? await HTTPClient.shared.execute(request, timeout: .seconds(5)) else { return false }
        return response.status == .ok
    }

    private func pid(in directory: String) -> Int32? {
        (try? String(contentsOfFile: "\(directory)/podman/podman.pid", encoding: .utf8))
            .flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    @Test func theServiceIsStartedRestartedWhenItDiesAndStoppedAtShutdown() async throws {
        // Podman refuses a runroot path longer than 50 characters: keep it short.
        let directory = try TemporaryDirectory(path: "/tmp/bgsv-\(UUID().uuidString.prefix(8))")
        defer { directory.remove() }
        let supervisor = PodmanServiceSupervisor(
            dataDirectory: directory.path, executable: "podman",
            arguments: [
                "--root", "\(directory.path)/storage", "--runroot", "\(directory.path)/run",
                "--runtime", "runc", "--cgroup-manager", "cgroupfs",
            ],
            insecureRegistries: ["127.0.0.1:5999"], logger: Logger(label: "test"))
        try await supervisor.start()
        let running = Task { try await supervisor.run() }
        defer { running.cancel() }

        var answered = false
        for _ in 0..<100 where !answered {
            answered = await ping(supervisor.socketPath)
            if !answered { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(answered, "the embedded podman service never answered /_ping")
        let first = try #require(pid(in: directory.path))
        let conf = try String(contentsOfFile: "\(directory.path)/podman/registries.conf", encoding: .utf8)
        #expect(conf.contains("location = \"127.0.0.1:5999\"\ninsecure = true"))

        kill(first, SIGKILL)
        var restarted: Int32?
        for _ in 0..<150 {
            if let now = pid(in: directory.path), now != first, await ping(supervisor.socketPath) {
                restarted = now
                break
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        let second = try #require(restarted, "the podman service was not restarted after it died")

        supervisor.terminate()
        running.cancel()
        var gone = false
        for _ in 0..<100 where !gone {
            gone = kill(second, 0) != 0
            if !gone { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(gone, "the podman service outlived its supervisor")
    }

    /// After a gateway was killed (a crash, `kill -9`), its `podman system service` kept running as an orphan: three
    /// were found after three such runs.
    @Test func theServiceDiesWithAGatewayKilledWithSIGKILL() async throws {
        let binary = try #require(RealEngines.gatewayBinary, "BUILDGATE_TEST_BINARY is not set: run scripts/test")
        let directory = try TemporaryDirectory(path: "/tmp/bgk-\(UUID().uuidString.prefix(8))")
        defer { directory.remove() }
        let gateway = try GatewayProcess(
            binary: binary, dataDirectory: directory.path,
            arguments: [
                "--podman-args=--root \(directory.path)/storage --runroot \(directory.path)/run --runtime runc --cgroup-manager cgroupfs",
            ])
        _ = try await gateway.port()
        var service: Int32?
        _ = try await ChildProcess.wait(for: .seconds(30)) {
            service = pid(in: directory.path)
            return service.map { kill($0, 0) == 0 } ?? false
        }
        let podman = try #require(service, "the gateway started no podman service")
        let command = (try? String(contentsOfFile: "/proc/\(podman)/cmdline", encoding: .utf8)) ?? ""
        #expect(command.contains("podman") && command.contains("system"), "\(command)")

        gateway.kill9()

        let gone = try await ChildProcess.wait(for: .seconds(30)) { kill(podman, 0) != 0 }
        #expect(gone, "podman system service (pid \(podman)) outlived its gateway killed with SIGKILL")
        if !gone { kill(podman, SIGKILL) }
    }
}
