import BuildGateTesting
import Foundation
import Testing

/// The embedded Podman service and the real `buildgate` binary.
@Suite(.enabled(if: RealEngines.shouldRun, RealEngines.skipReason))
struct EmbeddedPodmanEndToEndTests {
    private func pid(in directory: String) -> Int32? {
        (try? String(contentsOfFile: "\(directory)/podman/podman.pid", encoding: .utf8))
            .flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// After a gateway was killed (a crash, `kill -9`), its `podman system service` kept running as an orphan: three
    /// were found after three such runs.
    @Test func theServiceDiesWithAGatewayKilledWithSIGKILL() async throws {
        let binary = try #require(RealEngines.gatewayBinary, "BUILDGATE_TEST_BINARY is not set: run scripts/test")
        let directory = try TemporaryDirectory(path: "/tmp/bgk-\(UUID().uuidString.prefix(8))")
        defer { directory.remove() }
        let gateway = try GatewayProcess(
            binary: binary, dataDirectory: directory.path,
            arguments: [
                "--podman-args=--root \(directory.path)/storage --runroot \(directory.path)/run --runtime runc --cgroup-manager cgroupfs"
            ])
        _ = try await gateway.port()
        var service: Int32?
        _ = try await ChildProcess.wait(for: .seconds(30)) {
            service = pid(in: directory.path)
            return service.map { kill($0, 0) == 0 } ?? false
        }
        let podman = try #require(service, "the gateway started no podman service")
        let command = (try? String(contentsOfFile: "/proc/\(podman)/cmdline", encoding: .utf8)) ?? ""
        #expect(command.contains("podman") && command.contains("system"), "\(command)")

        gateway.kill9()

        let gone = try await ChildProcess.wait(for: .seconds(30)) { kill(podman, 0) != 0 }
        #expect(gone, "podman system service (pid \(podman)) outlived its gateway killed with SIGKILL")
        if !gone { kill(podman, SIGKILL) }
    }

    /// The README's first example: the embedded Podman, no `--insecure-registry`, a base image pulled from and the
    /// image pushed to a registry on 127.0.0.1. dockerd treats loopback registries as insecure by default, and so
    /// does the gateway (the push, then the pull, failed with "http: server gave HTTP response to HTTPS client").
    @Test func theEmbeddedBuilderPullsFromAndPushesToALoopbackRegistryWithoutBeingToldItIsInsecure() async throws {
        let services = try RealServices()
        #expect(services.registry.hasPrefix("127.0.0.1:"))
        let binary = try #require(RealEngines.gatewayBinary, "BUILDGATE_TEST_BINARY is not set: run scripts/test")
        let directory = try TemporaryDirectory(path: "/tmp/bgl-\(UUID().uuidString.prefix(8))")
        defer { directory.remove() }
        let gateway = try GatewayProcess(
            binary: binary, dataDirectory: directory.path,
            arguments: [
                "--podman-args=--root \(directory.path)/storage --runroot \(directory.path)/run --runtime runc --cgroup-manager cgroupfs"
            ])
        defer { gateway.terminate() }
        let client = try GatewayClient(
            baseURL: "http://127.0.0.1:\(try await gateway.port())", dataDirectory: directory.path)
        var tar = TarWriter()
        tar.file(
            "Dockerfile", "FROM \(services.registry)/busybox:latest\nCOPY hello.txt /hello.txt\nRUN cat /hello.txt\n")
        tar.file("hello.txt", "hello \(UUID().uuidString)\n")
        tar.end()
        let image = services.uniqueImage("loopback")
        let built = try await client.waitUntilFinished(try await client.submit(tar.bytes, query: "image=\(image)").id)
        let log = try await client.log(built.id)
        #expect(built.status == "succeeded", "\(built.message ?? ""): \(log)")
        #expect(log.contains("hello "), "the RUN step ran on the pulled base image")
        #expect(try await services.manifest(of: image).digest == built.images.first?.digest)
    }
}
