import AsyncHTTPClient
import BuildGateTesting
import Foundation
import Testing

/// The same gateway and driver against a real dockerd (classic builder), as a dind sidecar would serve it.
@Suite(.enabled(if: RealEngines.shouldRun, RealEngines.skipReason), .serialized)
struct DockerEngineEndToEndTests {
    private func dockerBuilder() throws -> String {
        let socket = try #require(RealEngines.dockerSocket, "BUILDGATE_TEST_DOCKER_SOCKET is not set: run scripts/test")
        return "docker=unix://\(socket),name=test-dockerd,network=host"
    }

    @Test func aBuildOnDockerdIsPushedWithItsDigestAndLabelAndTheLogHasNoProgressBars() async throws {
        let services = try RealServices()
        let image = services.uniqueImage("dockerd")
        try await services.withGateway(builder: try dockerBuilder()) { gateway, _ in
            let queued = try await gateway.submit(
                services.context("RUN echo from-dockerd-run\nCOPY hello.txt /hello.txt\n", extraFile: ("hello.txt", "hi\n")),
                query: "image=\(image)&label=org.example.engine=dockerd")
            let build = try await gateway.waitUntilFinished(queued.id)
            let log = try await gateway.log(queued.id)
            #expect(build.status == "succeeded", "\(log)")
            let digest = try #require(build.images.first?.digest)
            let registry = try await services.manifest(of: image)
            #expect(registry.digest == digest)
            #expect(registry.labels["org.example.engine"] == "dockerd")
            #expect(log.contains("[buildgate] engine: Docker Engine 20.10"))
            #expect(log.contains("from-dockerd-run\n"))
            #expect(!log.contains("Downloading") && !log.contains("Extracting"))
        }
    }

    @Test func aFailingRunOnDockerdEndsFailedWithItsError() async throws {
        let services = try RealServices()
        try await services.withGateway(builder: try dockerBuilder()) { gateway, _ in
            let queued = try await gateway.submit(
                services.context("RUN echo about-to-fail && exit 7\n"), query: "image=\(services.uniqueImage("dockerfail"))")
            let build = try await gateway.waitUntilFinished(queued.id)
            #expect(build.status == "failed")
            #expect(build.reason == "buildFailed")
            #expect(build.message?.contains("returned a non-zero code: 7") == true)
        }
    }
}
