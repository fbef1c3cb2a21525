import BuildGateCore
import BuildGateTesting
import Foundation
import Hummingbird
import HummingbirdTLS
import HummingbirdTesting
import NIOSSL
import Testing

@testable import KubernetesDiscovery

/// Kubeconfigs as `kubectl` writes them (YAML and JSON), the parts the gateway refuses to ignore, and TLS against
/// an API served over HTTPS with a certificate of its own.
@Suite(.timeLimit(.minutes(2))) struct KubeconfigTests {
    private func write(_ text: String, as name: String = "config", in directory: TemporaryDirectory) throws -> String {
        let path = "\(directory.path)/\(name)"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    private func refusal(_ text: String) throws -> String {
        let directory = try TemporaryDirectory("kubeconfig")
        defer { directory.remove() }
        let path = try write(text, in: directory)
        do {
            _ = try KubernetesCredentials.kubeconfig(file: path)
            Issue.record("accepted:\n\(text)")
            return ""
        } catch {
            #expect(error.code == .invalidParameter)
            return error.message
        }
    }

    @Test func aYAMLKubeconfigAsKubectlWritesItUsesItsCurrentContext() throws {
        let directory = try TemporaryDirectory("kubeconfig")
        defer { directory.remove() }
        try FileManager.default.createDirectory(atPath: "\(directory.path)/certs", withIntermediateDirectories: true)
        _ = try write("CA PEM", as: "certs/ca.crt", in: directory)
        _ = try write("token-from-file\n", as: "token", in: directory)
        let key = Data("KEY PEM".utf8).base64EncodedString()
        let certificate = Data("CERT PEM".utf8).base64EncodedString()
        let path = try write(
            """
            apiVersion: v1
            kind: Config
            preferences: {}
            clusters:
            - cluster:
                server: https://10.0.0.1:6443
                insecure-skip-tls-verify: true
              name: other
            - cluster:
                certificate-authority: certs/ca.crt
                server: https://127.0.0.1:6443
              name: kind-builders
            contexts:
            - context:
                cluster: other
                user: other
              name: other
            - context:
                cluster: kind-builders
                namespace: buildgate
                user: robot
              name: kind-builders
            current-context: kind-builders
            users:
            - name: other
              user:
                token: not-this-one
            - name: robot
              user:
                tokenFile: token
                client-certificate-data: \(certificate)
                client-key-data: \(key)

            """, in: directory)

        let credentials = try KubernetesCredentials.kubeconfig(file: path)

        #expect(credentials.server == "https://127.0.0.1:6443")
        func standardized(_ path: String?) -> String? { path?.replacingOccurrences(of: "//", with: "/") }
        #expect(standardized(credentials.caFile) == standardized("\(directory.path)/certs/ca.crt"))
        #expect(credentials.insecureSkipTLSVerify == false)
        #expect(standardized(credentials.tokenFile) == standardized("\(directory.path)/token"))
        #expect(credentials.token == nil)
        #expect(credentials.clientCertificateData == Array("CERT PEM".utf8))
        #expect(credentials.clientKeyData == Array("KEY PEM".utf8))
        #expect(credentials.namespace == "buildgate")
        // Nothing was written beside it: inline certificates stay in memory.
        #expect(
            try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted() == [
                "certs", "config", "token",
            ])
    }

    @Test func aJSONKubeconfigReadsTheSame() throws {
        let directory = try TemporaryDirectory("kubeconfig")
        defer { directory.remove() }
        let path = try write(
            """
            {"apiVersion":"v1","kind":"Config","current-context":"kind",
             "clusters":[{"name":"kind","cluster":{"server":"https://127.0.0.1:6443","certificate-authority-data":"\(Data("CA PEM".utf8).base64EncodedString())"}}],
             "users":[{"name":"kind","user":{"token":"abc"}}],
             "contexts":[{"name":"kind","context":{"cluster":"kind","user":"kind","namespace":"builders"}}]}
            """, in: directory)

        let credentials = try KubernetesCredentials.kubeconfig(file: path)

        #expect(credentials.server == "https://127.0.0.1:6443")
        #expect(credentials.token == "abc")
        #expect(credentials.namespace == "builders")
        #expect(credentials.caData == Array("CA PEM".utf8))
    }

    @Test func whatTheGatewayCannotDoIsRefusedByName() throws {
        let header = """
            apiVersion: v1
            kind: Config
            current-context: c
            contexts: [{name: c, context: {cluster: k, user: u}}]

            """
        let exec = try refusal(
            header + """
                clusters: [{name: k, cluster: {server: "https://127.0.0.1:6443"}}]
                users:
                - name: u
                  user:
                    exec:
                      apiVersion: client.authentication.k8s.io/v1beta1
                      command: aws
                      args: [eks, get-token, --cluster-name, prod]
                """)
        #expect(exec.contains("exec credential plugin"), "\(exec)")
        let provider = try refusal(
            header + """
                clusters: [{name: k, cluster: {server: "https://127.0.0.1:6443"}}]
                users: [{name: u, user: {auth-provider: {name: gcp}}}]
                """)
        #expect(provider.contains("auth-provider"), "\(provider)")
        let both = try refusal(
            header + """
                clusters: [{name: k, cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true, certificate-authority-data: Q0E=}}]
                users: [{name: u, user: {token: t}}]
                """)
        #expect(both.contains("insecure-skip-tls-verify and a certificate authority"), "\(both)")
        let missingFile = try refusal(
            header + """
                clusters: [{name: k, cluster: {server: "https://127.0.0.1:6443", certificate-authority: /nowhere/ca.crt}}]
                users: [{name: u, user: {token: t}}]
                """)
        #expect(missingFile.contains("/nowhere/ca.crt"), "\(missingFile)")
        let noContext = try refusal(
            """
            apiVersion: v1
            kind: Config
            current-context: gone
            contexts: [{name: c, context: {cluster: k, user: u}}]
            clusters: [{name: k, cluster: {server: "https://127.0.0.1:6443"}}]
            users: [{name: u, user: {token: t}}]
            """)
        #expect(noContext.contains("current-context 'gone'"), "\(noContext)")
        let notAKubeconfig = try refusal("just: [a, list]\n")
        #expect(!notAKubeconfig.isEmpty)
    }

    // MARK: - TLS against a real HTTPS listener

    /// A self-signed certificate for 127.0.0.1, made with openssl (PEM certificate, PEM key).
    private func selfSignedCertificate(in directory: TemporaryDirectory) async throws -> (
        certificate: String, key: String
    ) {
        let made = try await ChildProcess.run([
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=kube-apiserver",
            "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", "\(directory.path)/key.pem", "-out",
            "\(directory.path)/cert.pem",
        ])
        try #require(made.status == 0, "\(made.output)")
        return ("\(directory.path)/cert.pem", "\(directory.path)/key.pem")
    }

    private func serverTLS(_ files: (certificate: String, key: String)) throws -> TLSConfiguration {
        TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(files.certificate).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: files.key, format: .pem)))
    }

    /// Lists the builders' pods from the fake API served over HTTPS, with the credentials the kubeconfig that
    /// `kubeconfig(port, token)` returns gives: the pods' names, or the error.
    private func listPods(
        _ kubeconfig: @escaping @Sendable (Int, String) -> String, tls: TLSConfiguration, directory: TemporaryDirectory
    ) async throws -> Result<[String], any Error> {
        let api = FakeKubernetesAPI()
        api.addPod("bk-0", ip: "10.2.0.10", ready: true)
        let app = Application(
            router: api.router(), server: try .tls(.http1(), tlsConfiguration: tls),
            configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        return try await app.test(.live) { client in
            let path = try write(kubeconfig(client.port!, api.token), as: "kubeconfig", in: directory)
            let apiClient = KubernetesAPIClient(
                credentials: try KubernetesCredentials.kubeconfig(file: path), httpClient: .shared)
            let result: Result<[String], any Error>
            do {
                let response = try await apiClient.get(
                    "/api/v1/namespaces/\(api.namespace)/pods", query: [("labelSelector", "app=builder")],
                    timeout: .seconds(10))
                let list = try JSONDecoder().decode(
                    KubernetesPodList.self, from: Data(try await response.body.collect(upTo: 1 << 20).readableBytesView)
                )
                result = .success(list.items.compactMap(\.metadata.name))
            } catch {
                result = .failure(error)
            }
            api.shutDown()
            return result
        }
    }

    @Test func insecureSkipTLSVerifyReachesAServerWithACertificateOfItsOwn() async throws {
        let directory = try TemporaryDirectory("kube-tls")
        defer { directory.remove() }
        let tls = try serverTLS(try await selfSignedCertificate(in: directory))
        let found = try await listPods(
            { port, token in
                """
                apiVersion: v1
                kind: Config
                current-context: c
                contexts: [{name: c, context: {cluster: k, user: u}}]
                clusters: [{name: k, cluster: {server: "https://127.0.0.1:\(port)", insecure-skip-tls-verify: true}}]
                users: [{name: u, user: {token: \(token)}}]
                """
            }, tls: tls, directory: directory)
        #expect(try found.get() == ["bk-0"])
    }

    @Test func theCertificateAuthorityDataIsTrustedAndNothingElse() async throws {
        let directory = try TemporaryDirectory("kube-tls")
        defer { directory.remove() }
        let files = try await selfSignedCertificate(in: directory)
        let tls = try serverTLS(files)
        let ca = try Data(contentsOf: URL(fileURLWithPath: files.certificate)).base64EncodedString()
        func config(_ cluster: String) -> @Sendable (Int, String) -> String {
            { port, token in
                """
                apiVersion: v1
                kind: Config
                current-context: c
                contexts: [{name: c, context: {cluster: k, user: u}}]
                clusters: [{name: k, cluster: {server: "https://127.0.0.1:\(port)"\(cluster)}}]
                users: [{name: u, user: {token: \(token)}}]
                """
            }
        }
        let trusted = try await listPods(config(", certificate-authority-data: \(ca)"), tls: tls, directory: directory)
        #expect(try trusted.get() == ["bk-0"])
        // The system's roots do not know this certificate: the handshake fails.
        let untrusted = try await listPods(config(""), tls: tls, directory: directory)
        guard case .failure(let error) = untrusted else {
            Issue.record("a certificate no root signed was accepted")
            return
        }
        #expect("\(error)".contains("CERTIFICATE_VERIFY_FAILED") || "\(error)".contains("certificate"), "\(error)")
    }
}
