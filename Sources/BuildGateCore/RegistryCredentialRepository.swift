import Foundation

/// A username and password (or token) for a registry. Its description never shows the secret.
package struct RegistryCredential: Sendable, Equatable, CustomStringConvertible {
    package var username: String
    package var password: String

    package init(username: String, password: String) {
        self.username = username
        self.password = password
    }

    package var description: String { "RegistryCredential(username: \(username), password: <redacted>)" }
}

/// Registry credentials per tenant, sealed at rest. Never returned by the API or logged; handed to a builder only
/// for the owning tenant's pushes and pulls.
package protocol RegistryCredentialRepository: Sendable {
    func setCredential(_ credential: RegistryCredential, tenant: TenantID, host: String, at date: Date) async throws
    func credential(tenant: TenantID, host: String) async throws -> RegistryCredential?
    /// The hosts the tenant has credentials for, with when each was last set.
    func hosts(of tenant: TenantID) async throws -> [(host: String, updatedAt: Date)]
    func deleteCredential(tenant: TenantID, host: String) async throws -> Bool
}
