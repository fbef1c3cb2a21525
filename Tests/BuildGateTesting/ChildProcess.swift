import Foundation

/// Runs a command and waits for it without blocking a thread: tests run on Swift concurrency's few cooperative
/// threads (two on a 2-core machine), and a `waitUntilExit` or `Thread.sleep` there can starve the very tasks the
/// command waits for. Output (stdout and stderr together) goes through a file, so a chatty command never fills a pipe.
package enum ChildProcess {
    package struct Result: Sendable {
        package var status: Int32
        package var output: String
    }

    package static func run(
        _ arguments: [String], environment: [String: String]? = nil, input: Data? = nil
    ) async throws -> Result {
        let directory = try TemporaryDirectory("child")
        defer { directory.remove() }
        let outputPath = "\(directory.path)/output"
        FileManager.default.createFile(atPath: outputPath, contents: nil)
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        if let environment { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        process.standardOutput = output
        process.standardError = output
        if let input {
            let inputPath = "\(directory.path)/input"
            FileManager.default.createFile(atPath: inputPath, contents: input)
            process.standardInput = try FileHandle(forReadingFrom: URL(fileURLWithPath: inputPath))
        } else {
            process.standardInput = FileHandle(forReadingAtPath: "/dev/null")
        }
        let status: Int32 = try await withCheckedThrowingContinuation { continuation in
            process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
            do { try process.run() } catch {
                process.terminationHandler = nil
                continuation.resume(throwing: error)
            }
        }
        try output.close()
        return Result(status: status, output: (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "")
    }

    /// Starts a long-running command (a service) with its output in `logFile`; stop it with `kill`.
    package static func start(_ arguments: [String], environment: [String: String]? = nil, logFile: String) throws
        -> Process
    {
        FileManager.default.createFile(atPath: logFile, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        if let environment { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logFile))
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle(forReadingAtPath: "/dev/null")
        try process.run()
        return process
    }

    /// Waits (without blocking a thread) until `condition` holds, checking every 100 ms, for at most `timeout`.
    package static func wait(for timeout: Duration, until condition: () async throws -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await condition() { return true }
            try await Task.sleep(for: .milliseconds(100))
        }
        return try await condition()
    }
}
