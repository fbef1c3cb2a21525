import BuildGateCore
import ContextArchive

/// What a client asked a build to be, before it is checked: the one input that every road into a build fills in
/// (the query parameters of an upload, the JSON body of a git build, a trigger's settings at its creation), and
/// the one place it is checked and turned into a `BuildRequest` and its scheduling.
struct BuildDraft: Sendable, Equatable {
    var images: [String] = []
    var dockerfile: String?
    var target: String?
    var buildArgs: [String: String] = [:]
    var labels: [String: String] = [:]
    var platform: String?
    var noCache = false
    var timeout: Int?
    var secrets: [String] = []
    var cacheFrom: String?
    var cacheTo: String?
    var queueTTL: Int?
    var runPolicy: String?
    var runKey: String?

    /// What one build may ask for. An engine gets all of it in one request head, which must stay small (a head over
    /// 64 KiB once crashed the gateway inside AsyncHTTPClient), so every count and size is bounded here, at intake,
    /// with a 400 `invalidParameter` naming the limit. The README's Security section lists the same numbers.
    enum Limits {
        /// The raw (percent-encoded) query string of `POST /v1/builds`.
        static let maxQueryBytes = 32 * 1024
        static let maxImages = 16
        static let maxBuildArgs = 100
        static let maxLabels = 100
        static let maxSecrets = 32
        /// Keys and values of all build arguments together (likewise of all labels), in UTF-8 bytes.
        static let maxPairBytes = 8 * 1024
        /// Any single parameter value (an image reference, a Dockerfile path, a platform…).
        static let maxValueBytes = 1024
    }

    /// How a build is scheduled, as opposed to how it is built.
    struct Scheduling: Equatable {
        var queueTTL: Int
        var runPolicy: RunPolicy = .parallel
        var runKey: String?

        /// The build's stored run key: the tenant's own namespace, the given key or else the first image's
        /// repository; nil for `parallel`.
        func storedRunKey(tenant: TenantID, request: BuildRequest) -> String? {
            guard runPolicy != .parallel else { return nil }
            return "\(tenant)/\(runKey ?? request.images.first?.name ?? "")"
        }
    }

    /// The gateway's bounds on what a draft may ask for (from configuration).
    struct Bounds: Sendable {
        var defaultTimeout: Int
        var maxTimeout: Int
        var defaultQueueTTL: Int
        var maxQueueTTL: Int
    }

    // MARK: - From query parameters

    static let queryParameters: Set<String> = [
        "image", "dockerfile", "target", "buildArg", "label", "platform", "noCache", "timeout", "secret", "cacheFrom",
        "cacheTo", "queueTTL", "runPolicy", "runKey",
    ]

    /// The query parameters of `POST /v1/builds`: every `name=value` pair in order (repeated names allowed),
    /// already percent-decoded.
    /// - Throws: `BuildGateError.invalidParameter` naming the parameter at fault.
    init(query: [(name: String, value: String)]) throws {
        if let unknown = query.first(where: { !Self.queryParameters.contains($0.name) }) {
            throw BuildGateError(
                .invalidParameter,
                "unknown parameter '\(unknown.name)'; known: \(Self.queryParameters.sorted().joined(separator: ", "))")
        }
        func all(_ name: String) -> [String] { query.filter { $0.name == name }.map(\.value) }
        // Counted before anything is collected: a query of thousands of pairs is refused at once.
        for (name, limit) in [
            ("image", Limits.maxImages), ("buildArg", Limits.maxBuildArgs), ("label", Limits.maxLabels),
            ("secret", Limits.maxSecrets),
        ] where all(name).count > limit {
            throw BuildGateError(
                .invalidParameter, "at most \(limit) '\(name)' parameters are allowed, got \(all(name).count)")
        }
        func single(_ name: String) throws -> String? {
            let values = all(name)
            guard values.count <= 1 else { throw BuildGateError(.invalidParameter, "'\(name)' may be given once") }
            return values.first
        }
        func pairs(_ name: String) throws -> [String: String] {
            var result: [String: String] = [:]
            for item in all(name) {
                guard let equals = item.firstIndex(of: "="), equals != item.startIndex else {
                    throw BuildGateError(.invalidParameter, "'\(name)' must be KEY=VALUE, got '\(item)'")
                }
                let key = String(item[..<equals])
                guard result[key] == nil else {
                    throw BuildGateError(.invalidParameter, "'\(name)' sets '\(key)' twice")
                }
                result[key] = String(item[item.index(after: equals)...])
            }
            return result
        }
        func number(_ name: String) throws -> Int? {
            guard let text = try single(name) else { return nil }
            guard let value = Int(text) else {
                throw BuildGateError(.invalidParameter, "'\(name)' must be whole seconds, got '\(text)'")
            }
            return value
        }
        images = all("image")
        dockerfile = try single("dockerfile")
        target = try single("target")
        buildArgs = try pairs("buildArg")
        labels = try pairs("label")
        platform = try single("platform")
        switch try single("noCache") {
        case nil, "false", "0": noCache = false
        case "true", "1", "": noCache = true
        case let other?: throw BuildGateError(.invalidParameter, "'noCache' must be true or false, got '\(other)'")
        }
        timeout = try number("timeout")
        secrets = all("secret")
        cacheFrom = try single("cacheFrom")
        cacheTo = try single("cacheTo")
        queueTTL = try number("queueTTL")
        runPolicy = try single("runPolicy")
        runKey = try single("runKey")
    }

    init() {}

    // MARK: - Checked

    /// The request and scheduling this draft stands for, every field checked.
    /// - Throws: `BuildGateError.invalidParameter` naming the field at fault.
    func validated(_ bounds: Bounds) throws -> (request: BuildRequest, scheduling: Scheduling) {
        try checkSizes()
        let images = try images.map { try ImageReference(parsing: $0) }
        guard !images.isEmpty else {
            throw BuildGateError(.invalidParameter, "give at least one 'image', e.g. ?image=registry.example.com/app:1")
        }
        guard Set(images).count == images.count else {
            throw BuildGateError(.invalidParameter, "'image' lists the same reference twice")
        }
        let dockerfileText = dockerfile ?? "Dockerfile"
        guard let dockerfile = ContextPath.normalize(dockerfileText), dockerfile != "." else {
            throw BuildGateError(
                .invalidParameter, "'dockerfile' must be a relative path inside the context, got '\(dockerfileText)'")
        }
        if let target,
            target.isEmpty || !target.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) })
        {
            throw BuildGateError(.invalidParameter, "'target' must be a stage name, got '\(target)'")
        }
        let platform = try platform.map { text throws(BuildGateError) in try Platform(parsing: text) }
        let timeout = timeout ?? bounds.defaultTimeout
        guard (1...bounds.maxTimeout).contains(timeout) else {
            throw BuildGateError(
                .invalidParameter, "'timeout' must be whole seconds from 1 to \(bounds.maxTimeout), got \(timeout)")
        }
        if let bad = secrets.first(where: { !BuildSecretName.isValid($0) }) {
            throw BuildGateError(
                .invalidParameter, "'secret' must name a stored secret (letters, digits, _ - .; up to 64), got '\(bad)'"
            )
        }
        guard Set(secrets).count == secrets.count else {
            throw BuildGateError(.invalidParameter, "'secret' names the same secret twice")
        }
        // One cache source: Podman 4.3 takes a single cache repository.
        let cacheFrom = try cacheFrom.map { text throws(BuildGateError) in [try ImageReference(parsing: text)] } ?? []
        let cacheTo = try cacheTo.map { text throws(BuildGateError) in try ImageReference(parsing: text) }
        let request = BuildRequest(
            images: images, dockerfile: dockerfile, target: target, buildArgs: buildArgs, labels: labels,
            platform: platform, noCache: noCache, timeoutSeconds: timeout, secrets: secrets.sorted(),
            cacheFrom: cacheFrom, cacheTo: cacheTo)
        return (request, try scheduling(bounds))
    }

    /// `queueTTL`, `runPolicy` and `runKey`.
    private func scheduling(_ bounds: Bounds) throws -> Scheduling {
        var scheduling = Scheduling(queueTTL: queueTTL ?? bounds.defaultQueueTTL)
        guard (1...bounds.maxQueueTTL).contains(scheduling.queueTTL) else {
            throw BuildGateError(
                .invalidParameter,
                "'queueTTL' must be whole seconds from 1 to \(bounds.maxQueueTTL), got \(scheduling.queueTTL)")
        }
        if let text = runPolicy {
            guard let policy = RunPolicy(rawValue: text) else {
                throw BuildGateError(
                    .invalidParameter, "'runPolicy' must be parallel, serial or latestOnly, got '\(text)'")
            }
            scheduling.runPolicy = policy
        }
        if let key = runKey {
            guard (1...200).contains(key.utf8.count), key.utf8.allSatisfy({ (0x21...0x7e).contains($0) }) else {
                throw BuildGateError(.invalidParameter, "'runKey' must be 1 to 200 visible ASCII characters")
            }
            scheduling.runKey = key
        }
        return scheduling
    }

    /// The counts and sizes of `Limits`.
    private func checkSizes() throws {
        for (name, count, limit) in [
            ("image", images.count, Limits.maxImages), ("buildArg", buildArgs.count, Limits.maxBuildArgs),
            ("label", labels.count, Limits.maxLabels), ("secret", secrets.count, Limits.maxSecrets),
        ] where count > limit {
            throw BuildGateError(.invalidParameter, "at most \(limit) '\(name)' parameters are allowed, got \(count)")
        }
        for (name, pairs) in [("buildArg", buildArgs), ("label", labels)] {
            // Counted as the query spells them: KEY=VALUE.
            let bytes = pairs.reduce(0) { $0 + $1.key.utf8.count + 1 + $1.value.utf8.count }
            guard bytes <= Limits.maxPairBytes else {
                throw BuildGateError(
                    .invalidParameter,
                    "the '\(name)' parameters may hold \(Limits.maxPairBytes) bytes together, got \(bytes)")
            }
        }
        let single: [(String, String?)] = [
            ("dockerfile", dockerfile), ("target", target), ("platform", platform), ("cacheFrom", cacheFrom),
            ("cacheTo", cacheTo), ("runPolicy", runPolicy), ("runKey", runKey),
        ]
        for (name, value) in single.map({ ($0.0, [$0.1].compactMap { $0 }) }) + [
            ("image", images), ("secret", secrets),
        ] {
            if value.contains(where: { $0.utf8.count > Limits.maxValueBytes }) {
                throw BuildGateError(.invalidParameter, "'\(name)' is longer than \(Limits.maxValueBytes) bytes")
            }
        }
    }
}
