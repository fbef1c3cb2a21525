import BuildGateCore
import Foundation
import Hummingbird

/// `/v1/registries/{host}`: a tenant's registry credentials (scope `admin`). Write-only: the API lists hosts and
/// when they were set, never usernames or passwords.
struct RegistriesController<Context: AuthenticatedRequestContext>: Sendable {
    let credentials: any RegistryCredentialRepository

    func addRoutes(to group: RouterGroup<Context>) {
        group.get(use: list)
        group.put("{host}", use: put)
        group.delete("{host}", use: delete)
    }

    private struct Body: Decodable {
        var username: String
        var password: String
    }

    @Sendable func put(_ request: Request, context: Context) async throws -> Response {
        let principal = try context.require(.admin)
        let host = try Self.host(context)
        let bytes = try await request.body.collect(upTo: 16 * 1024)
        guard let body = try? JSONDecoder().decode(Body.self, from: Data(bytes.readableBytesView)),
            !body.username.isEmpty, !body.password.isEmpty
        else { throw BuildGateError(.invalidParameter, "the body must be {\"username\":…,\"password\":…}") }
        try await credentials.setCredential(
            RegistryCredential(username: body.username, password: body.password), tenant: principal.tenant, host: host,
            at: Date())
        return Response(status: .noContent)
    }

    @Sendable func list(_ request: Request, context: Context) async throws -> Response {
        let principal = try context.require(.admin)
        let hosts = try await credentials.hosts(of: principal.tenant).map {
            RegistryHostRepresentation(host: $0.host, updatedAt: $0.updatedAt)
        }
        return try APIResponse.json(["registries": hosts], status: .ok)
    }

    @Sendable func delete(_ request: Request, context: Context) async throws -> Response {
        let principal = try context.require(.admin)
        let host = try Self.host(context)
        guard try await credentials.deleteCredential(tenant: principal.tenant, host: host) else {
            throw BuildGateError(.notFound, "no credentials for \(host)")
        }
        return Response(status: .noContent)
    }

    /// `host[:port]`, as in image references.
    private static func host(_ context: Context) throws -> String {
        let host = try context.parameters.require("host")
        guard (try? ImageReference(parsing: "\(host)/x:1")) != nil else {
            throw BuildGateError(.invalidParameter, "'\(host)' is not a registry host (host[:port])")
        }
        return host
    }
}

/// A registry the tenant has credentials for; the credentials themselves are never shown.
struct RegistryHostRepresentation: Encodable {
    var host: String
    var updatedAt: Date
}
