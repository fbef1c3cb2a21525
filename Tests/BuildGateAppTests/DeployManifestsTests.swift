import BuildGateApp
import BuildGateCore
import BuildGateTesting
import Foundation
import Testing

/// Whether `kubectl` and `kubernetes-validate` are on `PATH`.
let manifestToolsPresent = ["kubectl", "kubernetes-validate"].allSatisfy { tool in
    (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").contains {
        FileManager.default.isExecutableFile(atPath: "\($0)/\(tool)")
    }
}

/// `deploy/kubernetes`: every overlay renders with `kubectl kustomize` and validates against the Kubernetes API
/// schemas (`kubernetes-validate --strict`, offline), and what the gateway is told parses as it will at start-up.
@Suite(
    .enabled(
        if: manifestToolsPresent || RealEngines.isCI,
        "needs kubectl and kubernetes-validate (scripts/test installs them)"))
struct DeployManifestsTests {
    @Test(arguments: ["buildkit", "podman", "dind"])
    func anOverlayRendersAndValidatesAgainstTheKubernetesSchemas(pool: String) async throws {
        let rendered = try await ChildProcess.run([
            "kubectl", "kustomize", "\(repositoryRoot)/deploy/kubernetes/overlays/\(pool)",
        ])
        try #require(rendered.status == 0, "\(rendered.output)")
        let directory = try TemporaryDirectory("manifests")
        defer { directory.remove() }
        let file = "\(directory.path)/\(pool).yaml"
        try rendered.output.write(toFile: file, atomically: true, encoding: .utf8)
        for version in ["1.32.0", "1.37.0"] {
            let validated = try await ChildProcess.run([
                "kubernetes-validate", "--strict", "--quiet", "-k", version, file,
            ])
            #expect(validated.status == 0, "\(pool) against \(version): \(validated.output)")
        }

        let yaml = rendered.output
        // The gateway: one replica, probes on /healthz and /readyz, and discovery may only read pods.
        #expect(yaml.contains("path: /readyz") && yaml.contains("path: /healthz"))
        #expect(yaml.contains("verbs:\n  - get\n  - list\n  - watch"))
        #expect(!yaml.contains("- create") && !yaml.contains("- delete"))
        // Only the gateway reaches the builders.
        #expect(yaml.contains("kind: NetworkPolicy"))
        // The pool the gateway is given parses as `buildgate serve` will parse it (certificate paths aside).
        let line = try #require(yaml.split(separator: "\n").first { $0.contains("BUILDGATE_POOLS:") })
        let spec = line.split(separator: ":", maxSplits: 1)[1].trimmingCharacters(in: .whitespaces)
        for name in ["ca.pem", "cert.pem", "key.pem"] {
            FileManager.default.createFile(atPath: "\(directory.path)/\(name)", contents: Data("x".utf8))
        }
        let local = spec.replacingOccurrences(of: "/etc/buildgate/builder-certs", with: directory.path)
        guard case .kubernetes(let namespace, let selector, let template) = try BuildGateConfiguration.parsePool(local)
        else {
            Issue.record("\(spec) is not a kubernetes pool")
            return
        }
        #expect(namespace == "buildgate-builders")
        #expect(yaml.contains("app: \(selector.dropFirst("app=".count))"))
        #expect(template.engine.rawValue == ["buildkit": "buildkit", "podman": "podman", "dind": "docker"][pool])
    }
}
