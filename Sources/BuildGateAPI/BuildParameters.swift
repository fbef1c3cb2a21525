import BuildGateCore
import ContextArchive

/// The query parameters of `POST /v1/builds`, parsed and checked into a `BuildRequest`.
enum BuildParameters {
    static let known: Set<String> = [
        "image", "dockerfile", "target", "buildArg", "label", "platform", "noCache", "timeout", "secret", "cacheFrom",
        "cacheTo", "queueTTL", "runPolicy", "runKey",
    ]

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

    /// The value of a parameter that may be given at most once.
    private static func single(_ name: String, in query: [(name: String, value: String)]) throws -> String? {
        let values = query.filter { $0.name == name }.map(\.value)
        guard values.count <= 1 else { throw BuildGateError(.invalidParameter, "'\(name)' may be given once") }
        return values.first
    }

    /// `queueTTL`, `runPolicy` and `runKey`.
    static func scheduling(_ query: [(name: String, value: String)], defaultTTL: Int, maxTTL: Int) throws -> Scheduling {
        func single(_ name: String) throws -> String? { try BuildParameters.single(name, in: query) }
        var scheduling = Scheduling(queueTTL: defaultTTL)
        if let text = try single("queueTTL") {
            guard let seconds = Int(text), (1...maxTTL).contains(seconds) else {
                throw BuildGateError(.invalidParameter, "'queueTTL' must be whole seconds from 1 to \(maxTTL), got '\(text)'")
            }
            scheduling.queueTTL = seconds
        }
        if let text = try single("runPolicy") {
            guard let policy = RunPolicy(rawValue: text) else {
                throw BuildGateError(.invalidParameter, "'runPolicy' must be parallel, serial or latestOnly, got '\(text)'")
            }
            scheduling.runPolicy = policy
        }
        if let key = try single("runKey") {
            guard (1...200).contains(key.utf8.count), key.utf8.allSatisfy({ (0x21...0x7e).contains($0) }) else {
                throw BuildGateError(.invalidParameter, "'runKey' must be 1 to 200 visible ASCII characters")
            }
            scheduling.runKey = key
        }
        return scheduling
    }

    /// The counts and sizes of `Limits`, checked before anything is parsed.
    private static func checkCounts(_ query: [(name: String, value: String)]) throws {
        func count(_ name: String) -> Int { query.reduce(0) { $0 + ($1.name == name ? 1 : 0) } }
        for (name, limit) in [("image", Limits.maxImages), ("buildArg", Limits.maxBuildArgs), ("label", Limits.maxLabels),
            ("secret", Limits.maxSecrets)] where count(name) > limit {
            throw BuildGateError(.invalidParameter, "at most \(limit) '\(name)' parameters are allowed, got \(count(name))")
        }
        for name in ["buildArg", "label"] {
            let bytes = query.reduce(0) { $0 + ($1.name == name ? $1.value.utf8.count : 0) }
            guard bytes <= Limits.maxPairBytes else {
                throw BuildGateError(
                    .invalidParameter, "the '\(name)' parameters may hold \(Limits.maxPairBytes) bytes together, got \(bytes)")
            }
        }
        if let long = query.first(where: { !["buildArg", "label"].contains($0.name) && $0.value.utf8.count > Limits.maxValueBytes }) {
            throw BuildGateError(.invalidParameter, "'\(long.name)' is longer than \(Limits.maxValueBytes) bytes")
        }
    }

    /// - Parameter query: every `name=value` pair in order (repeated names allowed), already percent-decoded.
    /// - Throws: `BuildGateError.invalidParameter` naming the parameter at fault.
    static func parse(_ query: [(name: String, value: String)], defaultTimeout: Int, maxTimeout: Int) throws -> BuildRequest {
        if let unknown = query.first(where: { !known.contains($0.name) }) {
            throw BuildGateError(
                .invalidParameter,
                "unknown parameter '\(unknown.name)'; known: \(known.sorted().joined(separator: ", "))")
        }
        try checkCounts(query)
        func single(_ name: String) throws -> String? { try BuildParameters.single(name, in: query) }
        func pairs(_ name: String) throws -> [String: String] {
            var result: [String: String] = [:]
            for item in query where item.name == name {
                guard let equals = item.value.firstIndex(of: "="), equals != item.value.startIndex else {
                    throw BuildGateError(.invalidParameter, "'\(name)' must be KEY=VALUE, got '\(item.value)'")
                }
                let key = String(item.value[..<equals])
                guard result[key] == nil else {
                    throw BuildGateError(.invalidParameter, "'\(name)' sets '\(key)' twice")
                }
                result[key] = String(item.value[item.value.index(after: equals)...])
            }
            return result
        }

        let images = try query.filter { $0.name == "image" }.map { try ImageReference(parsing: $0.value) }
        guard !images.isEmpty else {
            throw BuildGateError(.invalidParameter, "give at least one 'image', e.g. ?image=registry.example.com/app:1")
        }
        guard Set(images).count == images.count else {
            throw BuildGateError(.invalidParameter, "'image' lists the same reference twice")
        }
        let dockerfileText = try single("dockerfile") ?? "Dockerfile"
        guard let dockerfile = ContextPath.normalize(dockerfileText), dockerfile != "." else {
            throw BuildGateError(
                .invalidParameter, "'dockerfile' must be a relative path inside the context, got '\(dockerfileText)'")
        }
        let target = try single("target")
        if let target, target.isEmpty || !target.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }) {
            throw BuildGateError(.invalidParameter, "'target' must be a stage name, got '\(target)'")
        }
        let platform = try single("platform").map { text throws(BuildGateError) in try Platform(parsing: text) }
        let noCache: Bool
        switch try single("noCache") {
        case nil, "false", "0": noCache = false
        case "true", "1", "": noCache = true
        case let other?: throw BuildGateError(.invalidParameter, "'noCache' must be true or false, got '\(other)'")
        }
        var timeout = defaultTimeout
        if let text = try single("timeout") {
            guard let seconds = Int(text), (1...maxTimeout).contains(seconds) else {
                throw BuildGateError(.invalidParameter, "'timeout' must be whole seconds from 1 to \(maxTimeout), got '\(text)'")
            }
            timeout = seconds
        }
        let secrets = query.filter { $0.name == "secret" }.map(\.value)
        if let bad = secrets.first(where: { !BuildSecretName.isValid($0) }) {
            throw BuildGateError(
                .invalidParameter, "'secret' must name a stored secret (letters, digits, _ - .; up to 64), got '\(bad)'")
        }
        guard Set(secrets).count == secrets.count else {
            throw BuildGateError(.invalidParameter, "'secret' names the same secret twice")
        }
        // One cache source: Podman 4.3 takes a single cache repository.
        let cacheFrom = try single("cacheFrom").map { text throws(BuildGateError) in [try ImageReference(parsing: text)] } ?? []
        let cacheTo = try single("cacheTo").map { text throws(BuildGateError) in try ImageReference(parsing: text) }
        return BuildRequest(
            images: images, dockerfile: dockerfile, target: target, buildArgs: try pairs("buildArg"),
            labels: try pairs("label"), platform: platform, noCache: noCache, timeoutSeconds: timeout,
            secrets: secrets.sorted(), cacheFrom: cacheFrom, cacheTo: cacheTo)
    }
}
