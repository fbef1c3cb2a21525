import BuildGateApp
import BuildGateCore
import BuildGateTesting
import Foundation
import KubernetesDiscovery
import Testing
import Yams

/// Whether `kubectl` and `kubernetes-validate` are on `PATH`.
let manifestToolsPresent = ["kubectl", "kubernetes-validate"].allSatisfy { tool in
    (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").contains {
        FileManager.default.isExecutableFile(atPath: "\($0)/\(tool)")
    }
}

private let kubernetesDirectory = "\(repositoryRoot)/deploy/kubernetes"
private let overlays =
    (try? FileManager.default.contentsOfDirectory(atPath: "\(kubernetesDirectory)/overlays").sorted())
    ?? []

/// One object of a rendered manifest, read through its keys.
private struct Object {
    var fields: [String: Any]

    subscript(_ path: String...) -> Any? {
        path.reduce(fields as Any?) { ($0 as? [String: Any])?[$1] }
    }
    var kind: String { self["kind"] as? String ?? "" }
    var name: String { self["metadata", "name"] as? String ?? "" }
    var namespace: String { self["metadata", "namespace"] as? String ?? "" }
    var podSpec: [String: Any]? { self["spec", "template", "spec"] as? [String: Any] }
    var containers: [[String: Any]] { podSpec?["containers"] as? [[String: Any]] ?? [] }
}

/// Renders an overlay with `kubectl kustomize` and reads its objects.
private func render(_ overlay: String) async throws -> (yaml: String, objects: [Object]) {
    let rendered = try await ChildProcess.run(["kubectl", "kustomize", "\(kubernetesDirectory)/overlays/\(overlay)"])
    try #require(rendered.status == 0, "\(rendered.output)")
    let objects = try Yams.load_all(yaml: rendered.output).compactMap { $0 as? [String: Any] }.map(Object.init)
    return (rendered.output, objects)
}

/// `deploy/kubernetes`: every overlay renders with `kubectl kustomize` and validates against the Kubernetes API
/// schemas (`kubernetes-validate --strict`, offline); the gateway's pool setting parses as `buildgate serve` parses
/// it, and every builder pod the overlay runs is one the gateway's discovery takes in, as the engine it is.
@Suite(
    .enabled(
        if: manifestToolsPresent || RealEngines.isCI,
        "needs kubectl and kubernetes-validate (scripts/test installs them)"))
struct DeployManifestsTests {
    @Test func everyComponentHasAnOverlay() throws {
        let components = try FileManager.default.contentsOfDirectory(atPath: "\(kubernetesDirectory)/components")
        let used = try overlays.map {
            try String(contentsOfFile: "\(kubernetesDirectory)/overlays/\($0)/kustomization.yaml", encoding: .utf8)
        }
        for component in components {
            #expect(used.contains { $0.contains("../../components/\(component)\n") }, "\(component) is in no overlay")
        }
        #expect(components.count >= 6)
    }

    @Test(arguments: overlays)
    func anOverlayRendersValidatesAndItsBuildersAreDiscovered(overlay: String) async throws {
        let (yaml, objects) = try await render(overlay)
        let directory = try TemporaryDirectory("manifests")
        defer { directory.remove() }
        let file = "\(directory.path)/\(overlay).yaml"
        try yaml.write(toFile: file, atomically: true, encoding: .utf8)
        for version in ["1.32.0", "1.37.0"] {
            let validated = try await ChildProcess.run([
                "kubernetes-validate", "--strict", "--quiet", "-k", version, file,
            ])
            #expect(validated.status == 0, "\(overlay) against \(version): \(validated.output)")
        }

        // The gateway: probes on /healthz and /readyz, and discovery may only read pods.
        let gateway = try #require(objects.first { $0.kind == "Deployment" && $0.name == "buildgate" })
        #expect(gateway.containers.first?["readinessProbe"].map { "\($0)" }?.contains("/readyz") == true)
        #expect(gateway.containers.first?["livenessProbe"].map { "\($0)" }?.contains("/healthz") == true)
        let role = try #require(objects.first { $0.kind == "Role" })
        let rules = try #require(role["rules"] as? [[String: Any]])
        #expect(rules.count == 1 && rules[0]["resources"] as? [String] == ["pods"])
        #expect(rules[0]["verbs"] as? [String] == ["get", "list", "watch"])

        // The pool the gateway is given parses as `buildgate serve` will parse it (certificate paths aside).
        let config = try #require(objects.first { $0.kind == "ConfigMap" && $0.name.hasPrefix("buildgate-config") })
        let spec = try #require(config["data", "BUILDGATE_POOLS"] as? String)
        for name in ["ca.pem", "cert.pem", "key.pem"] {
            _ = FileManager.default.createFile(atPath: "\(directory.path)/\(name)", contents: Data("x".utf8))
        }
        let local = spec.replacingOccurrences(of: "/etc/buildgate/builder-certs", with: directory.path)
        guard case .kubernetes(let namespace, let selector, let template) = try BuildGateConfiguration.parsePool(local)
        else {
            Issue.record("\(spec) is not a kubernetes pool")
            return
        }
        #expect(namespace == "buildgate-builders")

        // Every builder workload: its pods match the pool's selector, only the gateway may reach them, and
        // discovery makes each pod a builder of the engine its component says, over TLS where the engine has it.
        let workloads = objects.filter { ["StatefulSet", "Deployment"].contains($0.kind) && $0.namespace == namespace }
        try #require(!workloads.isEmpty, "\(overlay) runs no builders")
        let policy = try #require(objects.first { $0.kind == "NetworkPolicy" && $0.namespace == namespace })
        let labelled = selector.split(separator: ",").map { $0.split(separator: "=").map(String.init) }
        for workload in workloads {
            let labels = workload["spec", "template", "metadata", "labels"] as? [String: String] ?? [:]
            #expect(labelled.allSatisfy { labels[$0[0]] == $0[1] }, "\(workload.name) does not match \(selector)")
            let guarded = try #require(policy["spec", "podSelector", "matchLabels"] as? [String: String])
            #expect(guarded.allSatisfy { labels[$0.key] == $0.value }, "\(workload.name) is open to every pod")

            let pod = try podAsTheAPIServesIt(workload)
            let endpoint = try KubernetesBuilderDiscovery.endpoint(for: pod, namespace: namespace, template: template)
            let engine = try #require(labels["buildgate.dev/engine"].flatMap(BuilderEngine.init(rawValue:)))
            #expect(endpoint.engine == engine)
            let certificates = "\(workload.podSpec?["volumes"] ?? [])"
            switch engine {
            case .podman:
                #expect(endpoint.tls == nil, "Podman's API has no TLS")
            case .buildkit, .docker:
                #expect(endpoint.tls?.serverName == (engine == .buildkit ? "buildkitd" : "dockerd"))
                #expect(endpoint.tls?.clientCertificate != nil)
                #expect(certificates.contains(engine == .buildkit ? "buildkit-daemon-certs" : "dockerd-daemon-certs"))
                #expect(engine == .buildkit || endpoint.useBuildKit)
            }
        }
    }

    /// The `ha` overlay: two replicas rolled one at a time, never both disrupted, on PostgreSQL (URL and password
    /// from a Secret, as the settings the gateway reads) and a ReadWriteMany volume; every other overlay keeps one
    /// replica replaced whole, as one SQLite writer needs.
    @Test(arguments: overlays)
    func onlyTheHAOverlayRunsSeveralReplicasAndTheyShareADatabase(overlay: String) async throws {
        let (_, objects) = try await render(overlay)
        let gateway = try #require(objects.first { $0.kind == "Deployment" && $0.name == "buildgate" })
        let claim = try #require(objects.first { $0.kind == "PersistentVolumeClaim" && $0.name == "buildgate-data" })
        let modes = claim["spec", "accessModes"] as? [String]
        let environment = gateway.containers.first?["env"] as? [[String: Any]] ?? []
        let variables = Set(environment.compactMap { $0["name"] as? String })
        guard overlay == "ha" else {
            #expect(gateway["spec", "replicas"] as? Int == 1)
            #expect(gateway["spec", "strategy", "type"] as? String == "Recreate")
            #expect(modes == ["ReadWriteOnce"])
            #expect(!variables.contains("BUILDGATE_DATABASE_URL"))
            return
        }
        #expect(gateway["spec", "replicas"] as? Int == 2)
        #expect(gateway["spec", "strategy", "type"] as? String == "RollingUpdate")
        #expect(gateway["spec", "strategy", "rollingUpdate", "maxUnavailable"] as? Int == 0)
        #expect(modes == ["ReadWriteMany"])
        let budget = try #require(objects.first { $0.kind == "PodDisruptionBudget" })
        #expect(budget["spec", "minAvailable"] as? Int == 1)
        #expect(budget["spec", "selector", "matchLabels"] as? [String: String] == ["app": "buildgate"])
        let url = try #require(environment.first { $0["name"] as? String == "BUILDGATE_DATABASE_URL" })
        #expect((url["valueFrom"] as? [String: Any])?["secretKeyRef"] != nil, "the database URL is not from a Secret")
        // The names the deployment sets are settings `buildgate serve` reads.
        let settings = Set(BuildGateConfiguration.settings.map(\.environment))
        #expect(variables.subtracting(["POD_NAMESPACE"]).isSubset(of: settings), "\(variables)")
        #expect(variables.isSuperset(of: ["BUILDGATE_DATABASE_URL", "BUILDGATE_DATABASE_PASSWORD_FILE"]))
    }

    /// Two components combined keep both pools: the gateway's setting is the base's, and both kinds of pod are
    /// builders under it.
    @Test func twoComponentsCombineWithoutRewritingTheGateway() async throws {
        let (_, combined) = try await render("buildkit-and-podman")
        let (_, podmanOnly) = try await render("podman")
        let builders = Set(
            combined.filter { $0.namespace == "buildgate-builders" && ["StatefulSet", "Deployment"].contains($0.kind) }
                .map(\.name))
        #expect(builders == ["buildkitd", "podman"])
        func pools(_ objects: [Object]) -> String? {
            objects.first { $0.kind == "ConfigMap" && $0.name.hasPrefix("buildgate-config") }?[
                "data", "BUILDGATE_POOLS"]
                as? String
        }
        #expect(pools(combined) != nil && pools(combined) == pools(podmanOnly))
    }

    /// The rootless BuildKit pods can write their cache volume: a new volume is root's with mode 0755.
    @Test func rootlessBuildKitOwnsItsCacheVolume() async throws {
        let (_, objects) = try await render("buildkit")
        let buildkitd = try #require(objects.first { $0.kind == "StatefulSet" && $0.name == "buildkitd" })
        #expect(buildkitd["spec", "template", "spec", "securityContext", "fsGroup"] as? Int == 1000)
        #expect(
            buildkitd["spec", "template", "spec", "securityContext", "fsGroupChangePolicy"] as? String
                == "OnRootMismatch")
        let mounts = "\(buildkitd.containers.first?["volumeMounts"] ?? [])"
        #expect(mounts.contains("/home/user/.local/share/buildkit"))
    }

    /// On a cluster without user namespaces the API server drops `hostUsers: false`, and the Podman pod would run
    /// as root on the node: its guard refuses to start unless uid 0 maps to another uid, run here in user namespaces
    /// made for the purpose.
    @Test func thePodmanBuildersRefuseToStartOutsideAUserNamespace() async throws {
        let (_, objects) = try await render("podman")
        let podman = try #require(objects.first { $0.kind == "StatefulSet" && $0.name == "podman" })
        #expect(podman["spec", "template", "spec", "hostUsers"] as? Bool == false)
        let guardContainer = try #require(
            (podman.podSpec?["initContainers"] as? [[String: Any]])?.first { $0["name"] as? String == "userns-guard" })
        let command = try #require(guardContainer["command"] as? [String])
        let script = try #require(command.last)

        // uid 0 → uid 0: what a pod gets when hostUsers: false was dropped.
        let identity = try await ChildProcess.run(["unshare", "--user", "--map-root-user", "sh", "-c", script])
        #expect(identity.status != 0)
        #expect(identity.output.contains("refusing to start"), "\(identity.output)")
        #expect(identity.output.contains("UserNamespacesSupport"))

        // uid 0 → uid 100000, as the kubelet maps a pod with hostUsers: false. The map is written by this (root)
        // parent, as the kubelet's runtime does.
        let mapped = try await ChildProcess.run(["python3", "-c", Self.inMappedUserNamespace, script])
        #expect(mapped.status == 0, "\(mapped.output)")
        #expect(mapped.output.contains("uid 0 is uid 100000 on the node"), "\(mapped.output)")
    }

    /// Runs `sh -c SCRIPT` in a new user namespace whose uid 0 is uid 100000 outside.
    private static let inMappedUserNamespace = """
        import ctypes, os, sys
        ready_r, ready_w = os.pipe(); mapped_r, mapped_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            if ctypes.CDLL(None, use_errno=True).unshare(0x10000000) != 0:
                sys.exit("unshare: " + os.strerror(ctypes.get_errno()))
            os.write(ready_w, b"x"); os.read(mapped_r, 1)
            os.execvp("sh", ["sh", "-c", sys.argv[1]])
        os.read(ready_r, 1)
        with open(f"/proc/{pid}/uid_map", "w") as f: f.write("0 100000 65536")
        os.write(mapped_w, b"x")
        sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
        """

    /// `make-certs` runs before any overlay, as the README says: it makes the namespaces it writes into. Run against
    /// a `kubectl` stand-in that, like the API server, refuses an object in a namespace that does not exist yet.
    @Test func makeCertsCreatesTheNamespacesItWritesInto() async throws {
        let directory = try TemporaryDirectory("make-certs")
        defer { directory.remove() }
        let stand = """
            #!/bin/sh
            # kubectl stand-in: records namespaces applied from files and refuses secrets in other namespaces.
            state=\(directory.path)/namespaces
            touch "$state"
            case "$*" in
              *"--dry-run=client"*) echo "kind: Secret"; echo "namespace: $2"; exit 0 ;;
              "apply -f -")
                input=$(cat); ns=$(printf '%s\\n' "$input" | sed -n 's/^namespace: //p')
                grep -qx "$ns" "$state" || { echo "Error from server (NotFound): namespaces \\"$ns\\" not found" >&2; exit 1; }
                echo "secret applied in $ns" ;;
              "apply -f "*)
                sed -n '/^kind: Namespace/,/^---/s/^  name: //p' "$3" >> "$state"; echo "namespaces applied" ;;
              *) echo "unexpected kubectl $*" >&2; exit 2 ;;
            esac
            """
        let bin = "\(directory.path)/bin"
        try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
        try stand.write(toFile: "\(bin)/kubectl", atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: "\(bin)/kubectl")

        let path = "\(bin):\(ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")"
        let result = try await ChildProcess.run(
            ["\(kubernetesDirectory)/make-certs", "2"], environment: ["PATH": path])
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.components(separatedBy: "secret applied in buildgate-builders").count == 3)
        #expect(result.output.contains("secret applied in buildgate\n"))
    }

    /// The pod a workload's template makes, as the API serves it once it runs: the template's metadata and spec,
    /// with an IP and a Ready status.
    private func podAsTheAPIServesIt(_ workload: Object) throws -> KubernetesPod {
        let template = try #require(workload["spec", "template"] as? [String: Any])
        var pod = template
        var metadata = template["metadata"] as? [String: Any] ?? [:]
        metadata["name"] = "\(workload.name)-0"
        pod["metadata"] = metadata
        pod["status"] = ["phase": "Running", "podIP": "10.0.0.7", "conditions": [["type": "Ready", "status": "True"]]]
        return try JSONDecoder().decode(KubernetesPod.self, from: JSONSerialization.data(withJSONObject: pod))
    }
}
