import BuildGateCore
import HTTPTypes
import Hummingbird

/// The API's JSON answers: one encoder (`BuildRepresentation.encoder`), one shape per kind of answer.
enum APIResponse {
    /// `value` as JSON with `status`.
    static func json(_ value: some Encodable, status: HTTPResponse.Status) throws -> Response {
        let data = try BuildRepresentation.encoder.encode(value)
        return Response(
            status: status, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// A build as JSON; a 200 or 202 also says where it lives (`Location`).
    static func build(_ build: Build, queue: BuildRepresentation.Queue? = nil, status: HTTPResponse.Status) throws
        -> Response
    {
        var response = try json(BuildRepresentation(build, queue: queue), status: status)
        if status == .accepted || status == .ok {
            response.headers[.location] = "/v1/builds/\(build.id)"
        }
        return response
    }
}

extension AuthenticatedRequestContext {
    /// The build named in the path (`{id}`), if the caller may use `scope` on it. Another tenant's build is answered
    /// exactly like one that does not exist.
    func build(in repository: any BuildRepository, scope: Scope) async throws -> Build {
        let text = try parameters.require("id")
        let id = BuildID(text)
        let principal = try require(scope, build: id)
        guard let id, let build = try await repository.build(id), build.tenant == principal.tenant else {
            throw BuildGateError(.notFound, "no build '\(text)'")
        }
        return build
    }
}
