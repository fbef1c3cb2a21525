import BuildGateTesting
import Foundation
import Testing

/// The `buildgate` administration commands, run as the real executable on a data directory, and what a first start
/// leaves on disk.
@Suite(
    .enabled(if: RealEngines.gatewayBinary != nil || RealEngines.isCI, "needs BUILDGATE_TEST_BINARY: run scripts/test"))
struct CommandLineEndToEndTests {
    private func buildgate(_ arguments: [String], data: String) async throws -> ChildProcess.Result {
        let binary = try #require(RealEngines.gatewayBinary, "BUILDGATE_TEST_BINARY is not set: run scripts/test")
        return try await ChildProcess.run(
            [binary] + arguments + ["--data-dir", data, "--migrations", migrationsDirectory])
    }

    @Test func tokensAreCreatedListedAndRevokedAndMigrateAndBackupWorkOnTheDataDirectory() async throws {
        let directory = try TemporaryDirectory("cli")
        defer { directory.remove() }
        let data = "\(directory.path)/data"

        let migrated = try await buildgate(["migrate"], data: data)
        #expect(migrated.status == 0, "\(migrated.output)")
        #expect(migrated.output.contains("0008_abandoned_dispatches_token_parents"))

        let created = try await buildgate(
            [
                "token", "create", "--tenant", "acme", "--name", "ci", "--scope", "builds:write", "--scope",
                "builds:read",
            ], data: data)
        #expect(created.status == 0, "\(created.output)")
        let lines = created.output.split(separator: "\n")
        let token = try #require(lines.last.map(String.init))
        #expect(token.hasPrefix("bgt_") && token.count == 60)
        let id = String(token.split(separator: "_")[1])
        #expect(lines.first?.contains("tenant: acme") == true)

        let listed = try await buildgate(["token", "list", "--tenant", "acme"], data: data)
        #expect(listed.status == 0)
        #expect(listed.output.contains("\(id)\tacme\tbuilds:read,builds:write\tactive\tci"), "\(listed.output)")
        #expect(!listed.output.contains(token), "a token's secret is never listed")

        let revoked = try await buildgate(["token", "revoke", id], data: data)
        #expect(revoked.status == 0 && revoked.output.contains("revoked \(id)"))
        #expect(
            try await buildgate(["token", "list"], data: data).output.contains(
                "\(id)\tacme\tbuilds:read,builds:write\trevoked"))
        #expect(try await buildgate(["token", "revoke", "nosuchtoken0"], data: data).status != 0)
        #expect(
            try await buildgate(["token", "create", "--name", "x", "--scope", "logs:read"], data: data).status != 0)

        let limits = try await buildgate(
            ["tenant", "limits", "--tenant", "acme", "--max-running-builds", "2"], data: data)
        #expect(limits.status == 0 && limits.output.contains("running 2"), "\(limits.output)")

        let backup = "\(directory.path)/backup.sqlite"
        let backedUp = try await buildgate(["backup", backup], data: data)
        #expect(backedUp.status == 0, "\(backedUp.output)")
        let copy = try await ChildProcess.run([
            "sqlite3", backup, "SELECT tenantId, name FROM accessToken WHERE id = '\(id)'",
        ])
        #expect(copy.output.trimmingCharacters(in: .whitespacesAndNewlines) == "acme|ci")
        #expect(try await buildgate(["backup", backup], data: data).status != 0, "a backup never overwrites")
    }

    /// The first start writes the admin token readable by its owner only.
    @Test func theAdminTokenFileIsMode0600() async throws {
        let services = try RealServices()
        let binary = try #require(RealEngines.gatewayBinary, "BUILDGATE_TEST_BINARY is not set: run scripts/test")
        let directory = try TemporaryDirectory("admin-token")
        defer { directory.remove() }
        let gateway = try GatewayProcess(binary: binary, dataDirectory: directory.path, services: services)
        defer { gateway.terminate() }
        _ = try await gateway.port()
        let attributes = try FileManager.default.attributesOfItem(atPath: "\(directory.path)/admin-token")
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        let key = try FileManager.default.attributesOfItem(atPath: "\(directory.path)/secret.key")
        #expect((key[.posixPermissions] as? NSNumber)?.intValue == 0o600)
    }
}
