import BuildGateTesting
import Foundation
import Testing

/// A real git repository served by `git daemon` on loopback, for end-to-end tests.
final class GitServer: Sendable {
    let directory: TemporaryDirectory
    let port: Int
    private let daemon: Process

    /// The clone URL of the repository `name` (created by `makeRepository`).
    func url(_ name: String) -> String { "git://127.0.0.1:\(port)/\(name).git" }

    init() throws {
        directory = try TemporaryDirectory("git")
        try FileManager.default.createDirectory(atPath: "\(directory.path)/repos", withIntermediateDirectories: true)
        port = try freeLoopbackPort()
        daemon = Process()
        daemon.executableURL = URL(fileURLWithPath: "/usr/bin/git")
        daemon.arguments = [
            "daemon", "--reuseaddr", "--export-all", "--enable=upload-pack", "--listen=127.0.0.1", "--port=\(port)",
            "--pid-file=\(directory.path)/daemon.pid",
            "--base-path=\(directory.path)/repos",
        ]
        daemon.standardError = FileHandle.nullDevice
        try daemon.run()
    }

    func stop() {
        // `git daemon` runs `git-daemon` as a child: stop that one (its pid file) as well as the wrapper.
        if let text = try? String(contentsOfFile: "\(directory.path)/daemon.pid", encoding: .utf8),
            let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
        {
            kill(pid, SIGKILL)
        }
        kill(daemon.processIdentifier, SIGKILL)
        directory.remove()
    }

    /// Creates a bare repository with a work tree beside it; returns the work tree path.
    func makeRepository(_ name: String) throws -> String {
        let bare = "\(directory.path)/repos/\(name).git"
        let work = "\(directory.path)/work-\(name)"
        try git(["init", "--quiet", "--bare", "--initial-branch=main", bare])
        // Serve commits by id, so the gateway's shallow fetch of an exact commit works.
        try git(["-C", bare, "config", "uploadpack.allowAnySHA1InWant", "true"])
        try git(["init", "--quiet", "--initial-branch=main", work])
        try git(["-C", work, "remote", "add", "origin", bare])
        return work
    }

    /// Writes `files`, commits, pushes `main`; returns the commit id.
    func commit(_ work: String, files: [String: String], message: String) throws -> String {
        for (path, contents) in files {
            let url = URL(fileURLWithPath: "\(work)/\(path)")
            try FileManager.default.createDirectory(
                at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(contents.utf8).write(to: url)
        }
        try git(["-C", work, "add", "-A"])
        try git([
            "-C", work, "-c", "user.name=Test", "-c", "user.email=test@example.com", "commit", "--quiet", "-m", message,
        ])
        try git(["-C", work, "push", "--quiet", "origin", "main"])
        return try git(["-C", work, "rev-parse", "HEAD"]).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Waits until the daemon answers (it starts asynchronously).
    func waitUntilServing(_ name: String) async throws {
        for _ in 0..<50 {
            if (try? git(["ls-remote", url(name)])) != nil { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("git daemon never served \(url(name))")
    }

    @discardableResult
    func git(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/git")
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw GitError(message: "git \(arguments.joined(separator: " ")) exited \(process.terminationStatus)")
        }
        return String(decoding: data, as: UTF8.self)
    }

    struct GitError: Error { var message: String }

}
