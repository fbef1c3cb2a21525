import BuildGateCore
import ContextArchive
import Foundation

/// Fetches git sources with the `git` command-line client and turns the commit into a context with `git archive`.
///
/// Each fetch runs in a private temporary repository with an empty `HOME` and no system configuration, prompts
/// disabled and only the https/ssh/git protocols allowed. Credentials travel in environment variables
/// (`GIT_CONFIG_*` for an https `Authorization` header, `GIT_SSH_COMMAND` with a 0600 key file), never on the
/// command line, so they do not show in process listings; they are never logged. Git's own error output is
/// scrubbed of anything URL-credential-like before it reaches the build log.
package struct GitCLISourceFetcher: SourceFetcher {
    package struct Configuration: Sendable {
        /// The `git` executable.
        package var git = "git"
        /// Hosts git sources may come from (`*` wildcards allowed); empty allows any host.
        package var allowedHosts: [String] = []
        /// Limits for the archive, as for uploads.
        package var archiveLimits = ContextArchiveValidator.Limits()

        package init() {}
    }

    private let contexts: any ContextStore
    private let workDirectory: String
    private let configuration: Configuration

    /// - Parameter workDirectory: where temporary repositories go (removed after each fetch).
    package init(contexts: any ContextStore, workDirectory: String, configuration: Configuration = .init()) {
        self.contexts = contexts
        self.workDirectory = workDirectory
        self.configuration = configuration
    }

    package func fetch(
        _ source: GitSource, dockerfile: String, credential: GitCredential?,
        log: @escaping @Sendable (String) async -> Void
    ) async throws -> (context: BuildContext, commit: String) {
        guard GitSource.isHostAllowed(source.url, hosts: configuration.allowedHosts) else {
            throw BuildGateError(.invalidParameter, "git host of \(GitSource.redacted(source.url)) is not allowed")
        }
        try FileManager.default.createDirectory(atPath: workDirectory, withIntermediateDirectories: true)
        let directory = "\(workDirectory)/git-\(UUID().uuidString.lowercased())"
        try FileManager.default.createDirectory(
            atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(atPath: directory) }

        let environment = try environment(for: credential, in: directory)
        let repository = "\(directory)/repo"
        try await run(["init", "--quiet", "--bare", repository], environment: environment)

        // Fetch exactly the commit when one is given (shallow if the server allows fetching by id), else the ref.
        let wanted = source.commit ?? source.ref!
        do {
            try await run(
                ["-C", repository, "fetch", "--quiet", "--depth=1", "--no-tags", "--", source.url, wanted],
                environment: environment)
        } catch  where source.commit != nil && source.ref != nil {
            await log("the server does not serve commits by id; fetching \(source.ref!) instead")
            try await run(
                ["-C", repository, "fetch", "--quiet", "--no-tags", "--", source.url, source.ref!],
                environment: environment)
        }
        // The wanted commit must be there (a ref fetch may have brought others); without one, the ref's commit.
        let commit = try await output(
            ["-C", repository, "rev-parse", "--verify", "\(source.commit ?? "FETCH_HEAD")^{commit}"],
            environment: environment)

        let upload = try contexts.makeUploadFile()
        do {
            try await run(
                ["-C", repository, "archive", "--format=tar", "--output=\(upload)", commit], environment: environment)
            let context = try Self.validate(upload, dockerfile: dockerfile, limits: configuration.archiveLimits)
            try contexts.commit(upload: upload, as: context)
            return (context, commit)
        } catch {
            contexts.discard(upload: upload)
            throw error
        }
    }

    /// Hashes and validates an archive file like an upload.
    static func validate(_ path: String, dockerfile: String, limits: ContextArchiveValidator.Limits) throws
        -> BuildContext
    {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw BuildGateError(.internalError, "cannot read the archive git wrote")
        }
        defer { try? handle.close() }
        var digester = ContextArchiveDigester(dockerfile: dockerfile, limits: limits)
        do {
            while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
                try chunk.withUnsafeBytes { try digester.consume($0) }
            }
            let (_, sha256) = try digester.finish()
            return BuildContext(digest: ContextDigest(sha256: sha256), size: digester.size, compression: .none)
        } catch let error as ContextArchiveError {
            throw BuildGateError(.invalidContext, "the commit is not a valid build context: \(error.message)")
        }
    }

    // MARK: - Running git

    private func environment(for credential: GitCredential?, in directory: String) throws -> [String: String] {
        var environment = [
            "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin",
            "HOME": directory,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_ASKPASS": "/bin/false",
            "SSH_ASKPASS": "/bin/false",
            "GIT_PROTOCOL_FROM_USER": "0",
            "GIT_SSH_COMMAND":
                "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile=\(directory)/known_hosts",
        ]
        var config: [(String, String)] = [
            ("protocol.allow", "never"), ("protocol.https.allow", "always"),
            ("protocol.ssh.allow", "always"), ("protocol.git.allow", "always"),
        ]
        switch credential {
        case .basic(let username, let password)?:
            let basic = Data("\(username):\(password)".utf8).base64EncodedString()
            config.append(("http.extraHeader", "Authorization: Basic \(basic)"))
        case .sshKey(let privateKey)?:
            let keyFile = "\(directory)/identity"
            guard
                FileManager.default.createFile(
                    atPath: keyFile, contents: Data(privateKey.utf8), attributes: [.posixPermissions: 0o600])
            else {
                throw BuildGateError(.internalError, "cannot write the ssh key file")
            }
            environment["GIT_SSH_COMMAND"]! += " -o IdentitiesOnly=yes -i \(keyFile)"
        case nil:
            break
        }
        environment["GIT_CONFIG_COUNT"] = String(config.count)
        for (index, (key, value)) in config.enumerated() {
            environment["GIT_CONFIG_KEY_\(index)"] = key
            environment["GIT_CONFIG_VALUE_\(index)"] = value
        }
        return environment
    }

    private func run(_ arguments: [String], environment: [String: String]) async throws {
        _ = try await output(arguments, environment: environment)
    }

    /// Runs git, returns its trimmed standard output; throws with its (scrubbed) error output when it fails.
    ///
    /// git writes to files, not pipes: draining pipes would need blocking reads, and blocking reads would hold the
    /// cooperative thread pool (two threads on a 2-core machine) for as long as a fetch runs.
    private func output(_ arguments: [String], environment: [String: String]) async throws -> String {
        let outputs = "\(workDirectory)/git-output-\(UUID().uuidString.lowercased())"
        FileManager.default.createFile(atPath: "\(outputs).out", contents: nil, attributes: [.posixPermissions: 0o600])
        FileManager.default.createFile(atPath: "\(outputs).err", contents: nil, attributes: [.posixPermissions: 0o600])
        defer {
            try? FileManager.default.removeItem(atPath: "\(outputs).out")
            try? FileManager.default.removeItem(atPath: "\(outputs).err")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try resolve(configuration.git))
        process.arguments = arguments
        process.environment = environment
        // The child gets its own copies; ours are closed once it is done (Process does not close them).
        let standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: "\(outputs).out"))
        let standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: "\(outputs).err"))
        defer {
            try? standardOutput.close()
            try? standardError.close()
        }
        process.standardOutput = standardOutput
        process.standardError = standardError
        process.standardInput = FileHandle.nullDevice
        let exited = AsyncStream<Int32>.makeStream()
        process.terminationHandler = {
            exited.continuation.yield($0.terminationStatus); exited.continuation.finish()
        }
        try process.run()
        let status = await withTaskCancellationHandler {
            var iterator = exited.stream.makeAsyncIterator()
            return await iterator.next() ?? -1
        } onCancel: {
            process.terminate()
        }
        if Task.isCancelled { throw CancellationError() }
        guard status == 0 else {
            let errors = (try? Data(contentsOf: URL(fileURLWithPath: "\(outputs).err"))) ?? Data()
            let message = Self.scrub(String(decoding: errors.suffix(2000), as: UTF8.self))
            let command = arguments.first(where: { !$0.hasPrefix("-") && !$0.hasPrefix("/") }) ?? ""
            throw BuildGateError(.invalidParameter, "git \(command) failed: \(message)")
        }
        let output = (try? Data(contentsOf: URL(fileURLWithPath: "\(outputs).out"))) ?? Data()
        return String(decoding: output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private func resolve(_ executable: String) throws -> String {
        if executable.contains("/") { return executable }
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(directory)/\(executable)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw BuildGateError(.internalError, "git is not installed")
    }

    /// Removes `user:password@` from URLs in git's messages.
    static func scrub(_ text: String) -> String {
        text.trimmingCharacters(in: .whitespacesAndNewlines)
            .replacingOccurrences(of: #"://[^/\s@]+@"#, with: "://***@", options: .regularExpression)
    }
}
