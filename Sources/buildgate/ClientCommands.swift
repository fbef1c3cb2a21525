import ArgumentParser
import AsyncHTTPClient
import BuildGateClient
import BuildGateCore
import Foundation
import NIOCore

/// Exit codes of the client commands.
enum ClientExit: Int32 {
    case succeeded = 0
    case buildFailed = 1
    case refused = 2
    case cancelled = 3
    case unreachable = 4
    case interrupted = 130

    /// The exit code for a finished build's status.
    init(status: String) {
        switch status {
        case "succeeded": self = .succeeded
        case "failed": self = .buildFailed
        default: self = .cancelled  // cancelled, timedOut, expired
        }
    }
}

/// The client commands' one HTTP client, for the life of the process (it exits without shutting it down).
let commandLineHTTPClient = BuildGateClient.makeHTTPClient()

/// Where the client commands find the gateway: `--url`/`--token`, else `BUILDGATE_URL`/`BUILDGATE_TOKEN`, else
/// what `buildgate login` stored.
struct GatewayOptions: ParsableArguments {
    @Option(help: "The gateway's URL (default: BUILDGATE_URL, else what `buildgate login` stored).")
    var url: String?

    @Option(help: "An API token (default: BUILDGATE_TOKEN, else what `buildgate login` stored).")
    var token: String?

    func client() throws -> BuildGateClient {
        let environment = ProcessInfo.processInfo.environment
        let stored = ClientCredentials.resolve(environment: environment)
        guard let url = url ?? stored?.url else {
            throw ValidationError("no gateway: run `buildgate login URL`, or set BUILDGATE_URL, or give --url")
        }
        return BuildGateClient(
            baseURL: url, token: token ?? (url == stored?.url ? stored?.token : nil), http: commandLineHTTPClient)
    }
}

/// Runs a client command's body, turning what went wrong into a message and the documented exit code.
func runClient(_ body: () async throws -> ClientExit) async throws {
    let exit: ClientExit
    do {
        exit = try await body()
    } catch let error as BuildGateClientError {
        Terminal.error("buildgate: \(error)")
        switch error {
        case .refused: exit = .refused
        case .unreachable: exit = .unreachable
        case .unexpectedAnswer: exit = .unreachable
        }
    } catch let error as PackError {
        Terminal.error("buildgate: \(error)")
        exit = .refused
    }
    guard exit == .succeeded else { throw ExitCode(exit.rawValue) }
}

/// What the client writes: plain lines when not on a terminal, one updated progress line when on one.
enum Terminal {
    static let errorIsTerminal = isatty(STDERR_FILENO) == 1

    static func error(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    static func output(_ text: String) {
        FileHandle.standardOutput.write(Data(text.utf8))
    }

    /// Replaces the progress line on a terminal; elsewhere says nothing (progress is for people watching).
    static func progress(_ line: String) {
        guard errorIsTerminal else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[2K\(line)".utf8))
    }

    static func endProgress() {
        guard errorIsTerminal else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[2K".utf8))
    }

    static func size(_ bytes: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(bytes) B" : String(format: "%.1f %@", value, units[unit])
    }
}

/// `buildgate submit [DIR]`: pack a directory as a build context, upload it, follow the build.
struct Submit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Build a directory on the gateway and follow the build.",
        discussion: """
            Packs DIR (default .) as docker build would send it, its .dockerignore applied, uploads it, then shows the \
            build's log as it runs and a summary. Exit codes: 0 succeeded, 1 the build failed, 2 a usage error or a \
            refused request, 3 cancelled, timed out or expired, 4 the gateway cannot be reached, 130 interrupted \
            (Ctrl-C cancels the build on the gateway).
            """)

    @Argument(help: "The build context's directory.")
    var directory = "."

    @Option(name: [.customShort("t"), .customLong("image")], help: "An image to push (repeatable).")
    var images: [String] = []

    @Option(name: [.customShort("f"), .customLong("file")], help: "The Dockerfile (default DIR/Dockerfile).")
    var dockerfile: String?

    @Option(name: .customLong("build-arg"), help: "A build argument KEY=VALUE (repeatable).")
    var buildArgs: [String] = []

    @Option(help: "The stage to build.")
    var target: String?

    @Option(help: "The platform to build for (os/arch[/variant]).")
    var platform: String?

    @Option(name: .customLong("label"), help: "An image label KEY=VALUE (repeatable).")
    var labels: [String] = []

    @Flag(name: .customLong("no-cache"), help: "Do not use the builder's cache.")
    var noCache = false

    @Option(name: .customLong("secret"), help: "A stored secret to mount for RUN --mount=type=secret (repeatable).")
    var secrets: [String] = []

    @Option(help: "Seconds the build may run.")
    var timeout: Int?

    @Flag(help: "Return once the build is queued, printing its id.")
    var detach = false

    @Flag(name: .customLong("no-reuse"), help: "Upload the context even when the gateway already keeps it.")
    var noReuse = false

    @Flag(help: "Compress the context with gzip (for a slow link; as docker build --compress).")
    var compress = false

    @Flag(help: "Print the build as JSON (the queued build with --detach, else the finished one) instead of the log.")
    var json = false

    @OptionGroup var gateway: GatewayOptions

    func validate() throws {
        guard !images.isEmpty else { throw ValidationError("give at least one image to push with -t/--image") }
        for pair in buildArgs + labels where !pair.contains("=") {
            throw ValidationError("'\(pair)' is not KEY=VALUE")
        }
    }

    func run() async throws {
        try await runClient {
            let client = try gateway.client()
            let root = URL(fileURLWithPath: directory).standardizedFileURL.path
            let dockerfile = try relativeDockerfile(root: root)
            let packer = try ContextPacker(directory: root, dockerfile: dockerfile)
            for path in packer.skipped { Terminal.error("buildgate: left out \(path): not a file, directory or link") }

            var query = images.map { ("image", $0) }
            if dockerfile != "Dockerfile" { query.append(("dockerfile", dockerfile)) }
            query += buildArgs.map { ("buildArg", $0) } + labels.map { ("label", $0) } + secrets.map { ("secret", $0) }
            if let target { query.append(("target", target)) }
            if let platform { query.append(("platform", platform)) }
            if noCache { query.append(("noCache", "true")) }
            if let timeout { query.append(("timeout", String(timeout))) }

            let interrupt = Interrupt()
            let parameters = query
            let reuse = !noReuse
            let compressed = compress
            let build = try await interrupt.upload {
                // The tar is the same for the same tree: when the gateway keeps it already, it is not sent again.
                if reuse {
                    let digest = try await packer.digest(compressed: compressed) { read in
                        Terminal.progress("hashing \(Terminal.size(read)) of \(Terminal.size(packer.contentBytes))")
                    }
                    Terminal.endProgress()
                    if try await client.hasContext(digest) {
                        Terminal.error("context \(digest) is already on the gateway: not sent again")
                        return try await client.submit(storedContext: digest, query: parameters)
                    }
                }
                return try await upload(packer, compressed: compressed, with: client, query: parameters)
            }
            guard let build else { return .interrupted }
            if detach {
                Terminal.output(
                    json
                        ? String(decoding: try await client.buildJSON(build.id), as: UTF8.self) + "\n" : build.id + "\n"
                )
                return .succeeded
            }
            if !json { Terminal.error("build \(build.id) queued (context \(build.context?.digest ?? "?"))") }
            let finished = try await interrupt.follow(build.id, client: client) {
                try await client.followLog(build.id) { piece in
                    if !json { Terminal.output(String(buffer: piece)) }
                }
                return try await client.build(build.id)
            }
            guard let finished else { return .interrupted }
            if json {
                Terminal.output(String(decoding: try await client.buildJSON(finished.id), as: UTF8.self) + "\n")
            } else {
                Terminal.output(Summary(finished).text)
            }
            return ClientExit(status: finished.status)
        }
    }

    /// The Dockerfile's path inside the context (`-f` is taken relative to the current directory, as docker does).
    private func relativeDockerfile(root: String) throws -> String {
        guard let dockerfile else { return "Dockerfile" }
        let absolute = URL(fileURLWithPath: dockerfile).standardizedFileURL.path
        guard absolute.hasPrefix(root + "/") else {
            throw ValidationError("the Dockerfile \(dockerfile) is not inside the context \(directory)")
        }
        return String(absolute.dropFirst(root.count + 1))
    }

    private func upload(
        _ packer: ContextPacker, compressed: Bool, with client: BuildGateClient, query: [(String, String)]
    ) async throws
        -> ClientBuild
    {
        let total = packer.contentBytes
        let started = ContinuousClock.now
        let build = try await client.submit(
            context: .stream(
                packer.archive(compressed: compressed) { read in
                    let seconds =
                        Double((ContinuousClock.now - started).components.attoseconds) / 1e18
                        + Double((ContinuousClock.now - started).components.seconds)
                    let rate = seconds > 0 ? Int64(Double(read) / seconds) : 0
                    let percent = total > 0 ? read * 100 / total : 100
                    Terminal.progress(
                        "uploading \(Terminal.size(read)) of \(Terminal.size(total)) (\(percent)%), \(Terminal.size(rate))/s"
                    )
                }, length: .unknown),
            compressed: compressed, query: query)
        Terminal.endProgress()
        return build
    }
}

/// The lines after a build's log: status, duration, images.
struct Summary {
    let text: String

    init(_ build: ClientBuild) {
        var duration = ""
        if let start = APITimestamp.date(build.startedAt) ?? APITimestamp.date(build.createdAt),
            let end = APITimestamp.date(build.finishedAt)
        {
            duration = String(format: " in %.1fs", end.timeIntervalSince(start))
        }
        var lines = ["\(build.status)\(build.reason.map { " (\($0))" } ?? "")\(duration): build \(build.id)"]
        if let message = build.message, build.status != "succeeded" { lines.append("  \(message)") }
        for image in build.images {
            lines.append("  \(image.reference)\(image.digest.map { "@\($0)" } ?? "")")
        }
        text = lines.joined(separator: "\n") + "\n"
    }
}

/// Ctrl-C while a command works: during the upload it stops the upload (the gateway keeps nothing of it); once the
/// build is queued it cancels the build on the gateway. Either way the command then exits 130.
final class Interrupt: @unchecked Sendable {
    private let source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
    private let lock = NSLock()
    /// What Ctrl-C does now, and whether it came.
    private var onInterrupt: (@Sendable () -> Void)?
    private var interrupted = false

    init() {
        signal(SIGINT, SIG_IGN)
        source.setEventHandler { [weak self] in self?.fire() }
        source.resume()
    }

    deinit {
        source.cancel()
    }

    private func fire() {
        let action: (@Sendable () -> Void)? = lock.withLock {
            interrupted = true
            return onInterrupt
        }
        action?()
    }

    /// Runs `body`; nil when it was interrupted.
    func upload<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T? {
        try await interruptible(body) { task in task.cancel() }
    }

    /// Runs `body` (following build `id`); on Ctrl-C, cancels the build, then returns nil.
    func follow<T: Sendable>(_ id: String, client: BuildGateClient, _ body: @escaping @Sendable () async throws -> T)
        async throws -> T?
    {
        try await interruptible(body) { task in
            Terminal.endProgress()
            Terminal.error("\nbuildgate: interrupted; cancelling build \(id)")
            _ = try? await client.cancel(id)
            task.cancel()
        }
    }

    private func interruptible<T: Sendable>(
        _ body: @escaping @Sendable () async throws -> T,
        onInterrupt: @escaping @Sendable (Task<T, any Error>) async -> Void
    ) async throws -> T? {
        let task = Task { try await body() }
        let alreadyInterrupted = lock.withLock {
            self.onInterrupt = { Task { await onInterrupt(task) } }
            return interrupted
        }
        if alreadyInterrupted { await onInterrupt(task) }
        defer { lock.withLock { self.onInterrupt = nil } }
        do {
            return try await task.value
        } catch  where lock.withLock({ interrupted }) {
            return nil
        }
    }
}

/// `buildgate login [URL]`: check a token against the gateway and keep both for the other commands.
struct Login: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Store the gateway's URL and an API token for the other commands.",
        discussion:
            "The token is read from --token, BUILDGATE_TOKEN or standard input, checked against the gateway, and "
            + "kept in ~/.config/buildgate/credentials (mode 0600).")

    @Argument(help: "The gateway's URL (default: BUILDGATE_URL, else http://127.0.0.1:8080).")
    var url: String?

    @Option(help: "The API token (default: BUILDGATE_TOKEN, else read from standard input).")
    var token: String?

    func run() async throws {
        try await runClient {
            let environment = ProcessInfo.processInfo.environment
            func variable(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
            let url = url ?? variable("BUILDGATE_URL") ?? "http://127.0.0.1:8080"
            var token = token ?? variable("BUILDGATE_TOKEN")
            if token == nil {
                if isatty(STDIN_FILENO) == 1 { Terminal.error("API token for \(url): ") }
                token = readLine(strippingNewline: true)?.trimmingCharacters(in: .whitespaces)
            }
            guard let token, !token.isEmpty else { throw ValidationError("no token given") }
            _ = try await BuildGateClient(baseURL: url, token: token, http: commandLineHTTPClient).builds(
                status: nil, limit: 1)
            try ClientCredentials(url: url, token: token).save(environment: environment)
            Terminal.error("logged in to \(url); kept in \(ClientCredentials.file(environment: environment))")
            return .succeeded
        }
    }
}

/// `buildgate logs ID [-f]`.
struct Logs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a build's log (-f: follow it until it ends).")

    @Argument(help: "The build's id.") var id: String
    @Flag(name: [.customShort("f"), .long], help: "Follow the log until the build is over.") var follow = false
    @OptionGroup var gateway: GatewayOptions

    func run() async throws {
        try await runClient {
            let client = try gateway.client()
            if follow {
                try await client.followLog(id) { Terminal.output(String(buffer: $0)) }
            } else {
                Terminal.output(String(buffer: try await client.log(id)))
            }
            return .succeeded
        }
    }
}

/// `buildgate status ID [--json]`.
struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show a build's status.")

    @Argument(help: "The build's id.") var id: String
    @Flag(help: "Print the build as JSON.") var json = false
    @OptionGroup var gateway: GatewayOptions

    func run() async throws {
        try await runClient {
            let client = try gateway.client()
            if json {
                Terminal.output(String(decoding: try await client.buildJSON(id), as: UTF8.self) + "\n")
                return .succeeded
            }
            let build = try await client.build(id)
            if build.isFinished {
                Terminal.output(Summary(build).text)
            } else {
                let queue = build.queue.map { ", position \($0.position)\($0.reason.map { ": \($0)" } ?? "")" } ?? ""
                Terminal.output("\(build.status)\(queue): build \(build.id)\n")
            }
            return .succeeded
        }
    }
}

/// `buildgate cancel ID`.
struct Cancel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Cancel a build.")

    @Argument(help: "The build's id.") var id: String
    @OptionGroup var gateway: GatewayOptions

    func run() async throws {
        try await runClient {
            let build = try await gateway.client().cancel(id)
            Terminal.output(
                "\(build.status == "cancelled" ? "cancelled" : "cancellation requested"): build \(build.id)\n")
            return .succeeded
        }
    }
}

/// `buildgate builds [--status S] [--limit N]`.
struct Builds: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List builds, newest first.")

    @Option(help: "Only builds of this status.") var status: String?
    @Option(help: "How many (1 to 200).") var limit = 20
    @OptionGroup var gateway: GatewayOptions

    func run() async throws {
        try await runClient {
            let builds = try await gateway.client().builds(status: status, limit: limit)
            for build in builds {
                let images = build.images.map(\.reference).joined(separator: " ")
                Terminal.output(
                    "\(build.id)  \(build.status.padding(toLength: 10, withPad: " ", startingAt: 0))  \(build.createdAt)  \(images)\n"
                )
            }
            return .succeeded
        }
    }
}

/// `buildgate rerun ID`.
struct Rerun: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Build a build's stored context again with the same parameters; prints the new build's id.")

    @Argument(help: "The build's id.") var id: String
    @OptionGroup var gateway: GatewayOptions

    func run() async throws {
        try await runClient {
            Terminal.output(try await gateway.client().rerun(id).id + "\n")
            return .succeeded
        }
    }
}
