import BuildGateCore
import Foundation
import Hummingbird
import NIOCore

/// `/v1/secrets/{name}`: a tenant's build secrets (scope `admin`). The request body is the value, as bytes (up to
/// 64 KiB). Write-only: the API lists names and when they were set, never values.
struct SecretsController<Context: AuthenticatedRequestContext>: Sendable {
    let secrets: any BuildSecretRepository

    func addRoutes(to group: RouterGroup<Context>) {
        group.get(use: list)
        group.put("{name}", use: put)
        group.delete("{name}", use: delete)
    }

    @Sendable func put(_ request: Request, context: Context) async throws -> Response {
        let principal = try context.require(.admin)
        let name = try Self.name(context)
        let bytes = try await request.body.collect(upTo: BuildSecretName.maxValueSize)
        guard bytes.readableBytes > 0 else {
            throw BuildGateError(.invalidParameter, "the body is the secret's value and must not be empty")
        }
        try await secrets.setSecret(
            SecretValue(Array(bytes.readableBytesView)), tenant: principal.tenant, name: name, at: Date())
        return Response(status: .noContent)
    }

    @Sendable func list(_ request: Request, context: Context) async throws -> Response {
        let principal = try context.require(.admin)
        let names = try await secrets.names(of: principal.tenant).map {
            SecretNameRepresentation(name: $0.name, updatedAt: $0.updatedAt)
        }
        return try APIResponse.json(["secrets": names], status: .ok)
    }

    @Sendable func delete(_ request: Request, context: Context) async throws -> Response {
        let principal = try context.require(.admin)
        let name = try Self.name(context)
        guard try await secrets.deleteSecret(tenant: principal.tenant, name: name) else {
            throw BuildGateError(.notFound, "no secret named \(name)")
        }
        return Response(status: .noContent)
    }

    private static func name(_ context: Context) throws -> String {
        let name = try context.parameters.require("name")
        guard BuildSecretName.isValid(name) else {
            throw BuildGateError(.invalidParameter, "'\(name)' is not a secret name (letters, digits, _ - .; up to 64)")
        }
        return name
    }
}

struct SecretNameRepresentation: Encodable {
    var name: String
    var updatedAt: Date
}
