import BuildGateCore
import BuildKitProgress
import Foundation
import Logging
import Subprocess

#if canImport(System)
    import System
#else
    import SystemPackage
#endif

/// Runs builds on buildkitd by running BuildKit's own client, `buildctl`.
///
/// Per build, in a private directory that is removed afterwards:
/// - the validated context archive is extracted (`context/`) and handed to BuildKit as local sources
///   (`--local context=… --local dockerfile=…`), so BuildKit applies the context's `.dockerignore` itself and fetches
///   only the files the Dockerfile uses;
/// - registry credentials go into a `config.json` that `buildctl` finds through `DOCKER_CONFIG`;
/// - build secrets are files (mode 0600) passed as `--secret id=…,src=…`;
/// - `--metadata-file` receives the pushed manifest's digest.
///
/// `buildctl --progress=rawjson` reports progress on standard error, one JSON `SolveStatus` per line; it becomes the
/// same plain-style log text as dockerd's BuildKit progress. After a failure buildctl prints plain error lines after
/// the JSON; they go to the log as they are, and the last `error:` line becomes the build's message.
///
/// Cancellation ends `buildctl` (SIGTERM, then SIGKILL): BuildKit cancels the solve when its client goes away.
package struct BuildKitDriver: BuilderDriver {
    package struct Configuration: Sendable {
        /// The `buildctl` executable: a path, or a name looked up on `PATH`.
        package var buildctl = "buildctl"
        /// Where per-build directories are made; it should be on the same disk as the context store.
        package var workDirectory: String
        /// Registries reached over plain HTTP or with self-signed certificates (`registry.insecure=true`); loopback
        /// registries (`localhost`, 127.0.0.0/8, `::1`) are always.
        package var insecureRegistries: Set<String> = []
        /// How long `buildctl` gets to end after SIGTERM before it is killed.
        package var stopGracePeriod: Duration = .seconds(10)

        package init(workDirectory: String) {
            self.workDirectory = workDirectory
        }
    }

    private let configuration: Configuration
    private let logger: Logger

    package init(configuration: Configuration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Removes build directories a killed gateway left behind (they may hold credentials and secrets). Call at
    /// start-up, before any build runs.
    package func removeLeftoverWorkspaces() {
        BuildKitWorkspace.removeAll(in: configuration.workDirectory)
    }

    package func run(
        _ job: BuildJob,
        on endpoint: BuilderEndpoint,
        events: @escaping @Sendable (BuildEvent) async -> Void
    ) async -> BuildOutcome {
        let workspace: BuildKitWorkspace
        do {
            workspace = try BuildKitWorkspace(in: configuration.workDirectory, for: job)
        } catch {
            return .failed(.builderUnavailable, message: "could not prepare the build directory: \(error)")
        }
        defer { workspace.remove() }

        let description: String
        switch await describe(endpoint) {
        case .success(let text): description = text
        case .failure(let failure):
            if Task.isCancelled { return .failed(.cancelled, message: "cancelled before the engine was reached") }
            return .failed(.builderUnavailable, message: "builder \(endpoint.name) is unreachable: \(failure.message)")
        }
        do {
            try await workspace.extractContext(from: job.contextPath)
            try workspace.writeDockerConfig(job.registryCredentials)
            try workspace.writeSecrets(job.secrets)
        } catch {
            return .failed(.buildFailed, message: "could not unpack the build context: \(error)")
        }
        await events(.accepted(engine: description))
        // BuildKit pushes as the last step of the solve (its "exporting to image" lines); `.pushed` follows success.

        let arguments = Self.buildArguments(
            job, endpoint: endpoint, workspace: workspace, insecure: configuration.insecureRegistries)
        let finished: BuildctlRun
        do {
            finished = try await runBuildctl(arguments, dockerConfig: workspace.dockerConfigDirectory, events: events)
        } catch {
            if Task.isCancelled { return .failed(.cancelled, message: "the build was stopped") }
            return .failed(.builderUnavailable, message: "could not run \(configuration.buildctl): \(error)")
        }
        if Task.isCancelled { return .failed(.cancelled, message: "the build was stopped") }
        guard finished.status.isSuccess else { return Self.failure(finished) }

        guard let digest = workspace.pushedDigest() else {
            return .failed(.pushFailed, message: "buildctl finished but reported no manifest digest")
        }
        let pushed = job.request.images.map { PushedImage(reference: $0, digest: digest) }
        for image in pushed { await events(.pushed(image)) }
        return .succeeded(pushed)
    }

    /// `buildctl debug info` for the version, `buildctl debug workers` for the platforms the workers build for.
    package func probe(_ endpoint: BuilderEndpoint) async throws -> BuilderProbe {
        let version = try await describe(endpoint).get()
        let result = try await Subprocess.run(
            executable, arguments: Arguments(Self.connectionArguments(endpoint) + ["debug", "workers"]),
            platformOptions: platformOptions, output: .string(limit: 64 << 10), error: .string(limit: 64 << 10))
        guard result.terminationStatus.isSuccess else {
            throw BuildGateError(
                .internalError,
                "buildctl debug workers: \(result.standardError.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        return BuilderProbe(version: version, platforms: Self.platforms(fromDebugWorkers: result.standardOutput))
    }

    /// The PLATFORMS column of `buildctl debug workers` (`ID  PLATFORMS` then one line per worker), deduplicated.
    static func platforms(fromDebugWorkers text: String) -> [Platform] {
        var seen: [Platform] = []
        for line in text.split(separator: "\n").dropFirst() {
            let columns = line.split(whereSeparator: \.isWhitespace)
            guard columns.count >= 2 else { continue }
            for item in columns[1].split(separator: ",") {
                if let platform = try? Platform(parsing: String(item)), !seen.contains(platform) {
                    seen.append(platform)
                }
            }
        }
        return seen
    }

    // MARK: - Arguments

    /// `buildctl [connection] build …`, as BuildKit documents it (docs/reference/buildctl.md).
    static func buildArguments(
        _ job: BuildJob, endpoint: BuilderEndpoint, workspace: BuildKitWorkspace, insecure: Set<String>
    ) -> [String] {
        let request = job.request
        var arguments = connectionArguments(endpoint)
        arguments += ["build", "--frontend", "dockerfile.v0", "--progress", "rawjson"]
        arguments += ["--local", "context=\(workspace.contextDirectory)"]
        arguments += ["--local", "dockerfile=\(workspace.dockerfileDirectory(request.dockerfile))"]
        arguments += ["--opt", "filename=\(workspace.dockerfileName(request.dockerfile))"]
        if let target = request.target { arguments += ["--opt", "target=\(target)"] }
        if let platform = request.platform { arguments += ["--opt", "platform=\(platform)"] }
        for (key, value) in request.buildArgs.sorted(by: { $0.key < $1.key }) {
            arguments += ["--opt", "build-arg:\(key)=\(value)"]
        }
        for (key, value) in request.labels.sorted(by: { $0.key < $1.key }) {
            arguments += ["--opt", "label:\(key)=\(value)"]
        }
        if request.noCache { arguments += ["--no-cache"] }
        switch endpoint.networkMode {
        case "host": arguments += ["--opt", "force-network-mode=host", "--allow", "network.host"]
        case "none": arguments += ["--opt", "force-network-mode=none"]
        default: break
        }
        func isInsecure(_ image: ImageReference) -> Bool {
            insecure.contains(image.registry) || image.isLoopbackRegistry
        }
        func insecureFlag(_ image: ImageReference) -> String { isInsecure(image) ? ",registry.insecure=true" : "" }
        for source in request.cacheFrom {
            arguments += ["--import-cache", "type=registry,ref=\(source)\(insecureFlag(source))"]
        }
        if let cacheTo = request.cacheTo {
            arguments += ["--export-cache", "type=registry,ref=\(cacheTo),mode=max\(insecureFlag(cacheTo))"]
        }
        for name in job.secrets.keys.sorted() {
            arguments += ["--secret", "id=\(name),src=\(workspace.secretFile(name))"]
        }
        // One output pushes every name; a comma inside the list needs CSV quoting, which buildctl reads.
        let names = request.images.map(\.description).joined(separator: ",")
        var output = "type=image,\"name=\(names)\",push=true"
        if request.images.contains(where: isInsecure) { output += ",registry.insecure=true" }
        arguments += ["--output", output, "--metadata-file", workspace.metadataFile]
        return arguments
    }

    /// `--addr` and the mutual-TLS flags, before the subcommand.
    static func connectionArguments(_ endpoint: BuilderEndpoint) -> [String] {
        var arguments = ["--addr", "\(endpoint.address)"]
        if let tls = endpoint.tls {
            arguments += ["--tlscacert", tls.caCertificate]
            if let certificate = tls.clientCertificate, let key = tls.clientKey {
                arguments += ["--tlscert", certificate, "--tlskey", key]
            }
            if let name = tls.serverName { arguments += ["--tlsservername", name] }
        }
        return arguments
    }

    // MARK: - Running buildctl

    private struct BuildctlRun {
        var status: TerminationStatus
        /// buildctl's own text (not progress JSON), for the failure message.
        var plainLines: [String]
    }

    private struct ProbeFailure: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }

    /// "BuildKit v0.24.0 at tcp://…" from `buildctl debug info`, which also proves the endpoint answers.
    private func describe(_ endpoint: BuilderEndpoint) async -> Result<String, ProbeFailure> {
        do {
            let result = try await Subprocess.run(
                executable, arguments: Arguments(Self.connectionArguments(endpoint) + ["debug", "info"]),
                platformOptions: platformOptions, output: .string(limit: 64 << 10), error: .string(limit: 64 << 10))
            guard result.terminationStatus.isSuccess else {
                let text = (result.standardError).trimmingCharacters(in: .whitespacesAndNewlines)
                return .failure(ProbeFailure(message: text.isEmpty ? "buildctl \(result.terminationStatus)" : text))
            }
            return .success("\(Self.version(fromDebugInfo: result.standardOutput)) at \(endpoint.address)")
        } catch {
            return .failure(ProbeFailure(message: "could not run \(configuration.buildctl): \(error)"))
        }
    }

    /// `BuildKit: github.com/moby/buildkit v0.24.0 <revision>` → `BuildKit v0.24.0`.
    static func version(fromDebugInfo text: String) -> String {
        for line in text.split(separator: "\n") where line.hasPrefix("BuildKit:") {
            let words = line.dropFirst("BuildKit:".count).split(whereSeparator: \.isWhitespace)
            if let version = words.first(where: { $0.hasPrefix("v") }) { return "BuildKit \(version)" }
        }
        return "BuildKit"
    }

    private func runBuildctl(
        _ arguments: [String], dockerConfig: String, events: @escaping @Sendable (BuildEvent) async -> Void
    ) async throws -> BuildctlRun {
        let result = try await Subprocess.run(
            executable, arguments: Arguments(arguments),
            environment: .inherit.updating(["DOCKER_CONFIG": dockerConfig]),
            platformOptions: platformOptions, input: .none, output: .discarded, error: .sequence
        ) { execution in
            var renderer = BuildKitPlainRenderer()
            var steps = BuildKitSteps()
            var plainLines: [String] = []
            for try await line in execution.standardError.strings(bufferingPolicy: .unbounded) {
                if let status = BuildKitStatus(rawJSON: Array(line.utf8)) {
                    let text = renderer.render(status)
                    if !text.isEmpty { await events(.output(text)) }
                    if steps.record(status) { await events(.steps(steps.steps)) }
                } else if !line.isEmpty {
                    plainLines.append(line)
                    await events(.output(line + "\n"))
                }
            }
            let settled = renderer.finish()
            if !settled.isEmpty { await events(.output(settled)) }
            return plainLines
        }
        return BuildctlRun(status: result.terminationStatus, plainLines: result.closureResult)
    }

    private var executable: Executable {
        configuration.buildctl.contains("/") ? .path(FilePath(configuration.buildctl)) : .name(configuration.buildctl)
    }

    private var platformOptions: PlatformOptions {
        var options = PlatformOptions()
        options.teardownSequence = [.gracefulShutDown(allowedDurationToNextStep: configuration.stopGracePeriod)]
        return options
    }

    /// The build's outcome from buildctl's trailing text: `error: failed to solve: …`. A failed push is told apart
    /// from a failed build, so a wrong credential reads as a push failure.
    private static func failure(_ run: BuildctlRun) -> BuildOutcome {
        let errorLine = run.plainLines.last { $0.hasPrefix("error: ") }.map { String($0.dropFirst("error: ".count)) }
        let message = errorLine ?? run.plainLines.last ?? "buildctl \(run.status)"
        let pushFailure = ["failed to push", "push access denied", "unexpected status from PUT", "failed to authorize"]
        if pushFailure.contains(where: message.contains) { return .failed(.pushFailed, message: message) }
        return .failed(.buildFailed, message: message)
    }
}
