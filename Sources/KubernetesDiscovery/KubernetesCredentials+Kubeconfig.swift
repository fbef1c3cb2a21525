import BuildGateCore
import Foundation
import Yams

extension KubernetesCredentials {
    /// The current context of a kubeconfig, read as `kubectl` reads it: YAML or JSON (`kubectl config view` writes
    /// either), `current-context` (or the only context), the cluster's `server`, `certificate-authority` or
    /// `certificate-authority-data`, `insecure-skip-tls-verify`, and the user's `token`, `tokenFile`,
    /// `client-certificate` / `client-key` or their `-data`. Relative file paths are relative to the kubeconfig's
    /// folder, as kubectl takes them. Nothing is written anywhere: inline certificates stay in memory.
    ///
    /// - Throws: `invalidParameter` naming what is wrong: unreadable or not a kubeconfig, no usable context, a file
    ///   it names that does not exist, or an authentication this gateway does not support (`exec` plugins,
    ///   `auth-provider`, basic auth, impersonation, `tls-server-name`, `proxy-url`).
    package static func kubeconfig(file path: String) throws(BuildGateError) -> KubernetesCredentials {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw BuildGateError(.invalidParameter, "kubeconfig \(path) cannot be read: \(error.localizedDescription)")
        }
        let config: Kubeconfig
        do {
            config = try YAMLDecoder().decode(Kubeconfig.self, from: text)
        } catch {
            throw BuildGateError(.invalidParameter, "kubeconfig \(path) is not a kubeconfig (YAML or JSON): \(error)")
        }
        let folder = (path as NSString).deletingLastPathComponent
        do {
            return try config.currentCredentials(relativeTo: folder.isEmpty ? "." : folder)
        } catch let error as KubeconfigProblem {
            throw BuildGateError(.invalidParameter, "kubeconfig \(path): \(error.message)")
        } catch {
            throw BuildGateError(.invalidParameter, "kubeconfig \(path): \(error)")
        }
    }
}

private struct KubeconfigProblem: Error {
    var message: String
}

/// The parts of `clientcmd/api/v1.Config` the gateway reads, and the ones it refuses to ignore.
private struct Kubeconfig: Decodable {
    struct Named<Value: Decodable>: Decodable {
        var name: String
        var value: Value

        enum CodingKeys: String, CodingKey { case name, cluster, user, context }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            name = try container.decode(String.self, forKey: .name)
            let key: CodingKeys = Value.self == Cluster.self ? .cluster : Value.self == User.self ? .user : .context
            value = try container.decode(Value.self, forKey: key)
        }
    }

    /// A key that is there, whatever it holds.
    struct Present: Decodable {
        init(from decoder: any Decoder) throws {}
    }

    struct Cluster: Decodable {
        var server: String
        var certificateAuthority: String?
        var certificateAuthorityData: String?
        var insecureSkipTLSVerify: Bool?
        var tlsServerName: Present?
        var proxyURL: Present?

        enum CodingKeys: String, CodingKey {
            case server
            case certificateAuthority = "certificate-authority"
            case certificateAuthorityData = "certificate-authority-data"
            case insecureSkipTLSVerify = "insecure-skip-tls-verify"
            case tlsServerName = "tls-server-name"
            case proxyURL = "proxy-url"
        }
    }

    struct User: Decodable {
        var token: String?
        var tokenFile: String?
        var clientCertificate: String?
        var clientCertificateData: String?
        var clientKey: String?
        var clientKeyData: String?
        var exec: Present?
        var authProvider: Present?
        var username: Present?
        var impersonate: Present?

        enum CodingKeys: String, CodingKey {
            case token, tokenFile, exec, username
            case clientCertificate = "client-certificate"
            case clientCertificateData = "client-certificate-data"
            case clientKey = "client-key"
            case clientKeyData = "client-key-data"
            case authProvider = "auth-provider"
            case impersonate = "as"
        }
    }

    struct Context: Decodable {
        var cluster: String
        var user: String
        var namespace: String?
    }

    var clusters: [Named<Cluster>]?
    var users: [Named<User>]?
    var contexts: [Named<Context>]?
    var currentContext: String?

    enum CodingKeys: String, CodingKey {
        case clusters, users, contexts
        case currentContext = "current-context"
    }

    func currentCredentials(relativeTo folder: String) throws -> KubernetesCredentials {
        let contexts = self.contexts ?? []
        let context: Named<Context>
        if let name = currentContext, !name.isEmpty {
            guard let named = contexts.first(where: { $0.name == name }) else {
                throw KubeconfigProblem(message: "current-context '\(name)' is not among its contexts")
            }
            context = named
        } else if contexts.count == 1, let only = contexts.first {
            context = only
        } else {
            throw KubeconfigProblem(message: "current-context is not set and there is not exactly one context")
        }
        guard let cluster = clusters?.first(where: { $0.name == context.value.cluster })?.value else {
            throw KubeconfigProblem(
                message: "context '\(context.name)' names cluster '\(context.value.cluster)', which is not there")
        }
        guard let user = users?.first(where: { $0.name == context.value.user })?.value else {
            throw KubeconfigProblem(
                message: "context '\(context.name)' names user '\(context.value.user)', which is not there")
        }

        let unsupported = [
            (user.exec != nil, "an exec credential plugin (users[].user.exec)"),
            (user.authProvider != nil, "an auth-provider (users[].user.auth-provider)"),
            (user.username != nil, "basic authentication (users[].user.username)"),
            (user.impersonate != nil, "impersonation (users[].user.as)"),
            (cluster.tlsServerName != nil, "tls-server-name (clusters[].cluster.tls-server-name)"),
            (cluster.proxyURL != nil, "a proxy (clusters[].cluster.proxy-url)"),
        ].filter(\.0).map(\.1)
        if !unsupported.isEmpty {
            throw KubeconfigProblem(
                message:
                    "context '\(context.name)' uses \(unsupported.joined(separator: " and ")), which BuildGate does not "
                    + "support; give it a token, tokenFile or client certificate (a service-account token works everywhere)"
            )
        }
        let insecure = cluster.insecureSkipTLSVerify ?? false
        if insecure && (cluster.certificateAuthority != nil || cluster.certificateAuthorityData != nil) {
            throw KubeconfigProblem(
                message:
                    "insecure-skip-tls-verify and a certificate authority together: choose one, as kubectl requires")
        }

        func existingFile(_ name: String?) throws -> String? {
            guard let name else { return nil }
            let path = name.hasPrefix("/") ? name : "\(folder)/\(name)"
            guard FileManager.default.isReadableFile(atPath: path) else {
                throw KubeconfigProblem(message: "\(path) (named by context '\(context.name)') cannot be read")
            }
            return path
        }
        func inline(_ base64: String?, _ field: String) throws -> [UInt8]? {
            guard let base64 else { return nil }
            guard let data = Data(base64Encoded: base64.filter { !$0.isWhitespace }) else {
                throw KubeconfigProblem(message: "\(field) is not base64")
            }
            return Array(data)
        }

        var credentials = KubernetesCredentials(
            server: cluster.server, tokenFile: try existingFile(user.tokenFile), token: user.token)
        credentials.insecureSkipTLSVerify = insecure
        credentials.caFile = try existingFile(cluster.certificateAuthority)
        credentials.caData =
            credentials.caFile == nil ? try inline(cluster.certificateAuthorityData, "certificate-authority-data") : nil
        credentials.clientCertificateFile = try existingFile(user.clientCertificate)
        credentials.clientCertificateData = try inline(user.clientCertificateData, "client-certificate-data")
        credentials.clientKeyFile = try existingFile(user.clientKey)
        credentials.clientKeyData = try inline(user.clientKeyData, "client-key-data")
        let hasCertificate = credentials.clientCertificateFile != nil || credentials.clientCertificateData != nil
        let hasKey = credentials.clientKeyFile != nil || credentials.clientKeyData != nil
        if hasCertificate != hasKey {
            throw KubeconfigProblem(
                message:
                    "user '\(context.value.user)' has a client certificate without its key, or a key without its certificate"
            )
        }
        credentials.namespace = context.value.namespace
        return credentials
    }
}
