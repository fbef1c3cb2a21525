import Foundation

/// Where the command line finds its gateway and token: `BUILDGATE_URL` and `BUILDGATE_TOKEN`, over the file that
/// `buildgate login` writes (`$XDG_CONFIG_HOME/buildgate/credentials`, else `~/.config/buildgate/credentials`, JSON,
/// mode 0600).
package struct ClientCredentials: Codable, Equatable, Sendable {
    package var url: String
    package var token: String?

    package init(url: String, token: String?) {
        self.url = url
        self.token = token
    }

    /// The credentials file's path for `environment`.
    package static func file(environment: [String: String]) -> String {
        let base =
            environment["XDG_CONFIG_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? "\(environment["HOME"] ?? NSHomeDirectory())/.config"
        return "\(base)/buildgate/credentials"
    }

    /// The stored credentials with the environment's over them; nil when no URL is known.
    package static func resolve(environment: [String: String]) -> ClientCredentials? {
        var stored = (try? Data(contentsOf: URL(fileURLWithPath: file(environment: environment))))
            .flatMap { try? JSONDecoder().decode(ClientCredentials.self, from: $0) }
        if let url = environment["BUILDGATE_URL"], !url.isEmpty {
            stored = ClientCredentials(url: url, token: stored?.url == url ? stored?.token : nil)
        }
        if let token = environment["BUILDGATE_TOKEN"], !token.isEmpty, stored != nil { stored?.token = token }
        return stored
    }

    /// Writes the credentials file, readable by its owner only (created so: never briefly readable by others).
    package func save(environment: [String: String]) throws {
        let path = Self.file(environment: environment)
        let directory = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(
            atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let data = Array(try JSONEncoder().encode(self))
        let temporary = "\(path).\(getpid()).tmp"
        unlink(temporary)
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw BuildGateClientError.unexpectedAnswer("cannot write \(temporary)") }
        let written = data.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        close(descriptor)
        guard written == data.count, rename(temporary, path) == 0 else {
            unlink(temporary)
            throw BuildGateClientError.unexpectedAnswer("cannot write \(path)")
        }
    }
}
