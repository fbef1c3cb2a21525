import BuildGateCore
import Foundation
import Subprocess

/// One build's private directory (mode 0700): the extracted context, the `DOCKER_CONFIG` directory, secret files
/// and the metadata file. Removed when the build ends, whatever the outcome.
struct BuildKitWorkspace: Sendable {
    let root: String

    init(in workDirectory: String, for job: BuildJob) throws {
        let files = FileManager.default
        try files.createDirectory(atPath: workDirectory, withIntermediateDirectories: true)
        root = "\(workDirectory)/buildkit-\(job.id)-\(UUID().uuidString.prefix(8))"
        try files.createDirectory(
            atPath: root, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        for directory in [contextDirectory, dockerConfigDirectory, secretsDirectory] {
            try files.createDirectory(
                atPath: directory, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        }
    }

    var contextDirectory: String { "\(root)/context" }
    var dockerConfigDirectory: String { "\(root)/docker" }
    var secretsDirectory: String { "\(root)/secrets" }
    var metadataFile: String { "\(root)/metadata.json" }

    func secretFile(_ name: String) -> String { "\(secretsDirectory)/\(name)" }

    /// The directory holding the Dockerfile (`--local dockerfile=`); `dockerfile` is a validated relative path.
    func dockerfileDirectory(_ dockerfile: String) -> String {
        let parent = (dockerfile as NSString).deletingLastPathComponent
        return parent.isEmpty ? contextDirectory : "\(contextDirectory)/\(parent)"
    }

    func dockerfileName(_ dockerfile: String) -> String { (dockerfile as NSString).lastPathComponent }

    /// Extracts the stored archive with GNU tar. The archive was validated at intake (no absolute paths, no `..`,
    /// no link leaving the root); tar is still told not to restore owners, and it refuses `..` members itself.
    func extractContext(from archive: String) async throws {
        let result = try await Subprocess.run(
            .name("tar"),
            arguments: [
                "--extract", "--file", archive, "--directory", contextDirectory, "--no-same-owner",
                "--delay-directory-restore",
            ],
            output: .discarded, error: .string(limit: 16 << 10))
        guard result.terminationStatus.isSuccess else {
            throw BuildGateError(.internalError, "tar \(result.terminationStatus): \(result.standardError)")
        }
    }

    /// `config.json` with an `auths` entry per registry host, as docker's credential store reads it.
    func writeDockerConfig(_ credentials: [String: RegistryCredential]) throws {
        struct Config: Encodable {
            struct Auth: Encodable { var auth: String }
            var auths: [String: Auth]
        }
        let config = Config(
            auths: credentials.mapValues {
                Config.Auth(auth: Data("\($0.username):\($0.password)".utf8).base64EncodedString())
            })
        try writePrivate(try JSONEncoder().encode(config), to: "\(dockerConfigDirectory)/config.json")
    }

    func writeSecrets(_ secrets: [String: SecretValue]) throws {
        for (name, value) in secrets {
            try writePrivate(Data(value.bytes), to: secretFile(name))
        }
    }

    /// `containerimage.digest` from `--metadata-file`.
    func pushedDigest() -> String? {
        struct Metadata: Decodable {
            var digest: String?
            enum CodingKeys: String, CodingKey { case digest = "containerimage.digest" }
        }
        guard let data = FileManager.default.contents(atPath: metadataFile) else { return nil }
        return (try? JSONDecoder().decode(Metadata.self, from: data))?.digest
    }

    static func removeAll(in workDirectory: String) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: workDirectory)) ?? []
        for name in names where name.hasPrefix("buildkit-") {
            try? FileManager.default.removeItem(atPath: "\(workDirectory)/\(name)")
        }
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: root)
    }

    private func writePrivate(_ data: Data, to path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: data, attributes: [.posixPermissions: 0o600])
        else {
            throw BuildGateError(.internalError, "could not write \(path)")
        }
    }
}
