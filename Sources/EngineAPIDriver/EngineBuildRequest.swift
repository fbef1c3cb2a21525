import BuildGateCore
import NIOHTTP1

/// What one build sends to `POST /build`: the query, the headers, and the secret files that travel in front of the
/// stored context. A pure function of the job and the endpoint, so what reaches the engine is tested without one.
///
/// Podman and dockerd read the same query (Podman's compat handler follows dockerd's names); the differences are
/// spelled out where they are made: Podman takes a cache *repository*, and secrets only as files inside the
/// uploaded context.
struct EngineBuildRequest {
    /// The query items, in the order they are sent; a repeated name (`t`) is a list.
    var query: [(String, String)]
    var headers: HTTPHeaders
    /// Files prepended to the context archive, one per secret, under names no context file can have.
    var secretFiles: [(name: String, contents: [UInt8])]

    init(_ job: BuildJob, endpoint: BuilderEndpoint) {
        let request = job.request
        var query: [(String, String)] = request.images.map { ("t", $0.description) }
        query.append(("dockerfile", request.dockerfile))
        if let target = request.target { query.append(("target", target)) }
        if let platform = request.platform { query.append(("platform", platform.description)) }
        if !request.buildArgs.isEmpty { query.append(("buildargs", EngineAPIDriver.json(request.buildArgs))) }
        if !request.labels.isEmpty { query.append(("labels", EngineAPIDriver.json(request.labels))) }
        if request.noCache { query.append(("nocache", "true")) }
        if let network = endpoint.networkMode { query.append(("networkmode", network)) }
        // Podman takes a cache *repository* (it tags one image per cached layer there), so the tag is left off.
        if let cacheFrom = request.cacheFrom.first { query.append(("cachefrom", cacheFrom.name)) }
        if let cacheTo = request.cacheTo { query.append(("cacheto", cacheTo.name)) }
        if request.cacheFrom.count + (request.cacheTo == nil ? 0 : 1) > 0 { query.append(("layers", "true")) }
        if endpoint.engine == .docker && endpoint.useBuildKit { query.append(("version", "2")) }
        query.append(("rm", "true"))
        query.append(("forcerm", "true"))

        // Podman takes secret files only inside the uploaded context, and moves each one named by `secrets` out of
        // the extracted context before building: so they travel in front of the stored archive, under names no
        // context file can have (the build ID is unique; secret names are flat).
        let names = job.secrets.keys.sorted()
        secretFiles = names.map { name in
            (name: ".buildgate-secret-\(job.id)-\(name)", contents: job.secrets[name]?.bytes ?? [])
        }
        if !names.isEmpty {
            let specs = zip(names, secretFiles).map { "id=\($0),src=\($1.name)" }
            query.append(("secrets", EngineAPIDriver.json(specs)))
        }
        self.query = query

        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/x-tar")
        if !job.registryCredentials.isEmpty {
            headers.add(name: "X-Registry-Config", value: EngineAPIDriver.registryConfig(job.registryCredentials))
        }
        self.headers = headers
    }
}
