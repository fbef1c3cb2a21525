import BuildGateCore
import Foundation
import Hummingbird

/// `GET /v1/builders`: the pool as the gateway sees it (scope `builds:read`). Builders are shared by all tenants;
/// the answer counts running builds but never names them.
struct BuildersController<Context: AuthenticatedRequestContext>: Sendable {
    let pool: BuilderPool

    func addRoutes(to group: RouterGroup<Context>) {
        group.get(use: list)
    }

    struct BuilderRepresentation: Encodable {
        var name: String
        var engine: String
        var address: String
        var tls: Bool
        /// Where it came from (`static`, `dns:NAME`, `kubernetes:NAMESPACE/SELECTOR`); absent once it left discovery
        /// while builds still ran there.
        var source: String?
        var health: String
        var version: String?
        var platforms: [String]
        var capacity: Int
        var running: Int
        var lastError: String?
    }

    @Sendable func list(_ request: Request, context: Context) async throws -> Response {
        _ = try context.require(.buildsRead)
        let builders = pool.members.map { member in
            BuilderRepresentation(
                name: member.endpoint.name,
                engine: member.endpoint.engine.rawValue + (member.endpoint.useBuildKit ? "+buildkit" : ""),
                address: "\(member.endpoint.address)", tls: member.endpoint.tls != nil, source: member.source,
                health: member.health.rawValue, version: member.version, platforms: member.platforms.map(\.description),
                capacity: member.endpoint.capacity, running: member.running.count,
                lastError: member.health == .unhealthy ? pool.lastError(of: member.endpoint.name) : nil)
        }
        return try APIResponse.json(["builders": builders], status: .ok)
    }
}
