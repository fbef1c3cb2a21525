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
}
