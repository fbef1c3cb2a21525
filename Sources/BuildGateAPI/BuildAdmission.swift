import BuildGateCore

/// What a build request must satisfy beyond its own syntax before it is queued: a builder in the pool that
/// supports every option it uses (else 422, never a silent drop), and the stored secrets it names.
struct BuildAdmission: Sendable {
    /// The features each builder in the pool offers, as of now.
    let builderFeatures: @Sendable () -> [BuildFeatures]
    let secrets: any BuildSecretRepository

    func check(_ request: BuildRequest, tenant: TenantID) async throws {
        let needed = request.requiredFeatures
        guard needed.isEmpty || builderFeatures().contains(where: { $0.isSuperset(of: needed) }) else {
            let offered = builderFeatures().reduce(BuildFeatures()) { $0.union($1) }
            let missing = needed.subtracting(offered)
            throw BuildGateError(
                .noCapableBuilder,
                missing.isEmpty
                    ? "no single builder in this gateway's pool supports \(needed.names.joined(separator: " together with "))"
                    : "no builder in this gateway's pool supports \(missing.names.map { "'\($0)'" }.joined(separator: ", ")); see the README's engine table"
            )
        }
        guard !request.secrets.isEmpty else { return }
        let stored = try await secrets.secrets(tenant: tenant, names: request.secrets)
        if let missing = request.secrets.first(where: { stored[$0] == nil }) {
            throw BuildGateError(
                .noSuchSecret, "secret '\(missing)' is not set; store it first with PUT /v1/secrets/\(missing)")
        }
    }
}
