import BuildGateTesting
import Foundation
import Testing

/// A second real registry (Debian `docker-registry`) on loopback that requires htpasswd basic auth.
final class AuthenticatedRegistry: Sendable {
    let directory: TemporaryDirectory
    let address: String
    let username: String
    let password: String
    private let process: Process

    init(username: String, password: String) async throws {
        self.username = username
        self.password = password
        directory = try TemporaryDirectory("authregistry")
        let htpasswd = try await ChildProcess.run([
            "htpasswd", "-Bbc", "\(directory.path)/htpasswd", username, password,
        ])
        try #require(htpasswd.status == 0, "\(htpasswd.output)")
        let port = try freeLoopbackPort()
        address = "127.0.0.1:\(port)"
        try """
        version: 0.1
        log: {level: warn}
        storage: {filesystem: {rootdirectory: \(directory.path)/data}}
        http: {addr: \(address)}
        auth: {htpasswd: {realm: buildgate-test, path: \(directory.path)/htpasswd}}
        """.write(toFile: "\(directory.path)/config.yml", atomically: true, encoding: .utf8)
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/docker-registry")
        process.arguments = ["serve", "\(directory.path)/config.yml"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // A bound for a registry that never starts, not a timing: a loaded CI run once took longer than the 50 tries
        // this used to make (about 5 s).
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline && process.isRunning {
            let code = try await ChildProcess.run([
                "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://\(address)/v2/",
            ]).output
            if code == "401" { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("the authenticated registry did not start on \(address) (running: \(process.isRunning))")
    }

    func stop() {
        kill(process.processIdentifier, SIGKILL)
        directory.remove()
    }
}
