import AsyncHTTPClient
import BuildGateCore
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL

/// Where the Kubernetes API is and how to authenticate, as client-go finds it: in a pod from the service account
/// (`KUBERNETES_SERVICE_HOST/PORT`, the token, CA and namespace files), else from a kubeconfig.
package struct KubernetesCredentials: Sendable, Equatable {
    /// `https://host:port` (or `http://` for a test server).
    package var server: String
    /// The CA that signed the API server's certificate, as a file or inline PEM; neither: the system's roots.
    package var caFile: String?
    package var caData: [UInt8]?
    /// kubeconfig `insecure-skip-tls-verify`: the server's certificate is not checked at all.
    package var insecureSkipTLSVerify = false
    /// A bearer token file, read on every request (projected service-account tokens rotate).
    package var tokenFile: String?
    /// A bearer token given inline (kubeconfig `token`).
    package var token: String?
    /// Client certificate and key, as files (kubeconfig `client-certificate`, `client-key`) or inline PEM (`-data`).
    package var clientCertificateFile: String?
    package var clientKeyFile: String?
    package var clientCertificateData: [UInt8]?
    package var clientKeyData: [UInt8]?
    /// The namespace of the pod the gateway runs in, when known.
    package var namespace: String?

    package init(server: String, caFile: String? = nil, tokenFile: String? = nil, token: String? = nil) {
        self.server = server
        self.caFile = caFile
        self.tokenFile = tokenFile
        self.token = token
    }

    static let serviceAccountDirectory = "/var/run/secrets/kubernetes.io/serviceaccount"

    /// client-go's `InClusterConfig`: nil when not running in a pod.
    package static func inCluster(
        environment: [String: String] = ProcessInfo.processInfo.environment, directory: String = serviceAccountDirectory
    ) -> KubernetesCredentials? {
        guard let host = environment["KUBERNETES_SERVICE_HOST"], let port = environment["KUBERNETES_SERVICE_PORT"],
            !host.isEmpty, !port.isEmpty, FileManager.default.fileExists(atPath: "\(directory)/token")
        else { return nil }
        var credentials = KubernetesCredentials(
            server: "https://\(host.contains(":") ? "[\(host)]" : host):\(port)", tokenFile: "\(directory)/token")
        if FileManager.default.fileExists(atPath: "\(directory)/ca.crt") { credentials.caFile = "\(directory)/ca.crt" }
        credentials.namespace =
            environment["POD_NAMESPACE"]
            ?? (try? String(contentsOfFile: "\(directory)/namespace", encoding: .utf8))?.trimmingCharacters(
                in: .whitespacesAndNewlines)
        return credentials
    }
}

/// The few Kubernetes API calls discovery needs, over AsyncHTTPClient.
struct KubernetesAPIClient: Sendable {
    let credentials: KubernetesCredentials
    let httpClient: HTTPClient

    /// A non-2xx answer, with the `Status` object's reason and code when the server sent one.
    struct Failure: Error, CustomStringConvertible {
        var httpStatus: Int
        var status: KubernetesStatus?
        var description: String {
            "HTTP \(httpStatus)" + (status.map { ": \($0.reason ?? "") \($0.message ?? "")" } ?? "")
        }
    }

    func get(_ path: String, query: [(String, String)], timeout: TimeAmount) async throws -> HTTPClientResponse {
        var request = HTTPClientRequest(url: credentials.server + path + URLQuery.encode(query))
        request.headers.add(name: "Accept", value: "application/json")
        if let token = try bearerToken() { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if credentials.server.hasPrefix("https://") { request.tlsConfiguration = try tlsConfiguration() }
        let response = try await httpClient.execute(request, timeout: timeout)
        guard (200..<300).contains(response.status.code) else {
            let body = try? await response.body.collect(upTo: 1 << 20)
            let status = body.flatMap {
                try? JSONDecoder().decode(KubernetesStatus.self, from: Data($0.readableBytesView))
            }
            throw Failure(httpStatus: Int(response.status.code), status: status)
        }
        return response
    }

    /// The CA, client certificate and verification the credentials ask for.
    func tlsConfiguration() throws -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        if credentials.insecureSkipTLSVerify {
            tls.certificateVerification = .none
        } else if let ca = credentials.caFile {
            tls.trustRoots = .file(ca)
        } else if let ca = credentials.caData {
            tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(ca))
        }
        let chain =
            try credentials.clientCertificateFile.map { try NIOSSLCertificate.fromPEMFile($0) }
            ?? credentials.clientCertificateData.map { try NIOSSLCertificate.fromPEMBytes($0) }
        let key =
            try credentials.clientKeyFile.map { try NIOSSLPrivateKey(file: $0, format: .pem) }
            ?? credentials.clientKeyData.map { try NIOSSLPrivateKey(bytes: $0, format: .pem) }
        if let chain, let key {
            tls.certificateChain = chain.map { .certificate($0) }
            tls.privateKey = .privateKey(key)
        }
        return tls
    }

    private func bearerToken() throws -> String? {
        if let file = credentials.tokenFile {
            return try String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return credentials.token
    }
}

// MARK: - The API's shapes (the fields discovery reads)

/// `meta/v1 Status`, the API's error object.
struct KubernetesStatus: Decodable, Equatable {
    var kind: String?
    var status: String?
    var message: String?
    var reason: String?
    var code: Int?
}

/// A pod as the API serves it, with only the fields discovery reads.
package struct KubernetesPod: Decodable, Equatable {
    struct Metadata: Decodable, Equatable {
        var name: String?
        var namespace: String?
        var resourceVersion: String?
        var labels: [String: String]?
        var annotations: [String: String]?
        var deletionTimestamp: String?
    }
    struct Spec: Decodable, Equatable {
        struct Container: Decodable, Equatable {
            struct Port: Decodable, Equatable { var name: String?; var containerPort: Int }
            var name: String
            var ports: [Port]?
        }
        var containers: [Container]
    }
    struct Status: Decodable, Equatable {
        struct Condition: Decodable, Equatable { var type: String; var status: String }
        var phase: String?
        var podIP: String?
        var conditions: [Condition]?
    }
    var metadata: Metadata
    var spec: Spec?
    var status: Status?

    /// Running, Ready, with an IP, and not being deleted: only such a pod takes builds.
    var isReady: Bool {
        metadata.deletionTimestamp == nil && status?.phase == "Running" && !(status?.podIP ?? "").isEmpty
            && status?.conditions?.contains { $0.type == "Ready" && $0.status == "True" } == true
    }
}

struct KubernetesPodList: Decodable {
    struct Metadata: Decodable { var resourceVersion: String? }
    var metadata: Metadata
    var items: [KubernetesPod]
}

/// One line of a watch stream. `object` is a Pod, a Status (type `ERROR`), or a bookmark's bare metadata.
struct KubernetesWatchEvent: Decodable {
    var type: String
    var object: Object

    struct Object: Decodable {
        var pod: KubernetesPod?
        var status: KubernetesStatus?
        var resourceVersion: String?

        init(from decoder: any Decoder) throws {
            let kind = try? decoder.container(keyedBy: KindKey.self).decodeIfPresent(String.self, forKey: .kind)
            if kind == "Status" {
                status = try KubernetesStatus(from: decoder)
            } else {
                pod = try? KubernetesPod(from: decoder)
            }
            resourceVersion =
                pod?.metadata.resourceVersion
                ?? (try? decoder.container(keyedBy: KindKey.self).nestedContainer(
                    keyedBy: KindKey.self, forKey: .metadata
                )
                .decodeIfPresent(String.self, forKey: .resourceVersion)) ?? nil
        }

        enum KindKey: String, CodingKey { case kind, metadata, resourceVersion }
    }
}
