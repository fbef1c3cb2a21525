import BuildGateCore
import Foundation

/// Registry credentials read from a Docker `config.json`-style file, by registry host.
///
/// Accepts `{"auths":{"host":{"auth":"base64(user:password)"}}}` and `{"auths":{"host":{"username":…,"password":…}}}`.
/// Credential helpers (`credsStore`) are not consulted. Values are never logged.
package struct RegistryCredentials: Sendable {
    package let byHost: [String: RegistryCredential]

    package init(byHost: [String: RegistryCredential] = [:]) {
        self.byHost = byHost
    }

    package init(file path: String) throws {
        struct File: Decodable {
            struct Entry: Decodable {
                var auth: String?
                var username: String?
                var password: String?
            }
            var auths: [String: Entry]?
        }
        let file: File
        do {
            file = try JSONDecoder().decode(File.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw BuildGateError(
                .invalidParameter,
                "cannot read the registry auth file \(path) (not JSON in Docker's config.json format)")
        }
        var byHost: [String: RegistryCredential] = [:]
        for (host, entry) in file.auths ?? [:] {
            let key =
                host.replacingOccurrences(of: "https://", with: "").replacingOccurrences(of: "http://", with: "")
                .split(separator: "/").first.map(String.init) ?? host
            if let username = entry.username, let password = entry.password {
                byHost[key] = RegistryCredential(username: username, password: password)
            } else if let auth = entry.auth,
                let decoded = Data(base64Encoded: auth).map({ String(decoding: $0, as: UTF8.self) }),
                let colon = decoded.firstIndex(of: ":")
            {
                byHost[key] = RegistryCredential(
                    username: String(decoded[..<colon]), password: String(decoded[decoded.index(after: colon)...]))
            } else {
                throw BuildGateError(
                    .invalidParameter, "registry auth file \(path): entry for \(host) has no usable credentials")
            }
        }
        self.byHost = byHost
    }
}
