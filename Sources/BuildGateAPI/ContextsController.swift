import BuildGateCore
import Foundation
import Hummingbird

/// `HEAD /v1/contexts/{digest}`: whether this tenant may build the stored context `sha256:<hex>` without sending it
/// again (`POST /v1/builds?context=…`). 200 when a build of this tenant uploaded it and retention has not removed
/// it; 404 otherwise, also when only another tenant has the same bytes: nothing tells one tenant what another
/// stored.
struct ContextsController<Context: AuthenticatedRequestContext>: Sendable {
    let repository: any BuildRepository
    let contexts: any ContextStore

    func addRoutes(to group: RouterGroup<Context>) {
        group.head("{digest}", use: head)
    }

    @Sendable func head(_ request: Request, context: Context) async throws -> Response {
        let principal = try context.require(.buildsWrite)
        guard let digest = ContextDigest(try context.parameters.require("digest")) else {
            throw BuildGateError(.invalidParameter, "a context is named sha256:<64 lowercase hex digits>")
        }
        guard let stored = try await repository.storedContext(digest, tenant: principal.tenant),
            FileManager.default.fileExists(atPath: contexts.path(of: stored))
        else {
            throw BuildGateError(.notFound, "no context \(digest) stored by this tenant")
        }
        return Response(status: .ok, headers: [.contentLength: "0"])
    }
}
