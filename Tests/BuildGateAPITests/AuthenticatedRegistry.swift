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
        let htpasswd = Process()
        htpasswd.executableURL = URL(fileURLWithPath: "/usr/bin/htpasswd")
        htpasswd.arguments = ["-Bbc", "\(directory.path)/htpasswd", username, password]
        htpasswd.standardOutput = FileHandle.nullDevice
        htpasswd.standardError = FileHandle.nullDevice
        try htpasswd.run()
        htpasswd.waitUntilExit()
        let port = Int.random(in: 20_000...60_000)
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
        for _ in 0..<50 {
            let probe = Process()
            probe.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
            probe.arguments = ["-s", "-o", "/dev/null", "-w", "%{http_code}", "http://\(address)/v2/"]
            let out = Pipe()
            probe.standardOutput = out
            try probe.run()
            let code = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            probe.waitUntilExit()
            if code == "401" { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("the authenticated registry did not start on \(address)")
    }

    func stop() {
        kill(process.processIdentifier, SIGKILL)
        directory.remove()
    }
}
