import AsyncHTTPClient
import BuildGateTesting
import Foundation
import NIOCore
import Testing

/// The same gateway and driver against a real dockerd (classic builder), as a dind sidecar would serve it.
@Suite(.enabled(if: RealEngines.shouldRun, RealEngines.skipReason), .serialized, .timeLimit(.minutes(5)))
struct DockerEngineEndToEndTests {
    private func dockerBuilder(buildKit: Bool = false) throws -> String {
        let socket = try #require(RealEngines.dockerSocket, "BUILDGATE_TEST_DOCKER_SOCKET is not set: run scripts/test")
        return "docker=unix://\(socket),name=test-dockerd,network=host,buildkit=\(buildKit)"
    }

    @Test func dockerdsBuildKitProgressIsRenderedInPlainStyleAndFailuresCarryTheError() async throws {
        let services = try RealServices()
        let image = services.uniqueImage("dockerd-buildkit")
        try await services.withGateway(builder: try dockerBuilder(buildKit: true)) { gateway, _ in
            let queued = try await gateway.submit(
                services.context("RUN echo from-buildkit-run\n"),
                query: "image=\(image)&label=org.example.engine=buildkit")
            let build = try await gateway.waitUntilFinished(queued.id)
            let log = try await gateway.log(queued.id)
            #expect(build.status == "succeeded", "\(log)")
            #expect(try await services.manifest(of: image).digest == build.images.first?.digest)
            // BuildKit's plain style: a numbered step, its output, and its end.
            let run = try #require(log.split(separator: "\n").first { $0.contains("RUN echo from-buildkit-run") })
            let number = try #require(run.split(separator: " ").first)
            #expect(log.contains("\(number) ") && log.contains("from-buildkit-run\n"))
            #expect(log.split(separator: "\n").contains { $0.hasPrefix("\(number) DONE ") })
            #expect(!log.contains("moby.buildkit.trace"))
            // BuildKit's own step times, in the build's JSON.
            let step = try #require(build.steps.first { $0.name.hasSuffix("RUN echo from-buildkit-run") })
            #expect(step.startedAt != nil && step.completedAt != nil && !step.cached && step.error == nil)

            let failing = try await gateway.submit(
                services.context("RUN echo about-to-fail && exit 5\n"), query: "image=\(services.uniqueImage("bkfail"))"
            )
            let failed = try await gateway.waitUntilFinished(failing.id)
            #expect(failed.status == "failed")
            #expect(failed.reason == "buildFailed")
            let failedLog = try await gateway.log(failing.id)
            #expect(failedLog.contains("about-to-fail"))
            #expect(failedLog.contains("ERROR: "))
        }
    }

    @Test func aBuildOnDockerdIsPushedWithItsDigestAndLabelAndTheLogHasNoProgressBars() async throws {
        let services = try RealServices()
        let image = services.uniqueImage("dockerd")
        try await services.withGateway(builder: try dockerBuilder()) { gateway, _ in
            let queued = try await gateway.submit(
                services.context(
                    "RUN echo from-dockerd-run\nCOPY hello.txt /hello.txt\n", extraFile: ("hello.txt", "hi\n")),
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
            // dockerd adds the labels as a LABEL step
            #expect(build.steps.map(\.name).contains("[3/5] RUN echo from-dockerd-run"))
            #expect(build.steps.allSatisfy { $0.completedAt != nil })
            #expect(!log.contains("Downloading") && !log.contains("Extracting"))
        }
    }

    @Test func cancellingARunningBuildOnDockerdStopsItsContainer() async throws {
        let services = try RealServices()
        let socket = try #require(RealEngines.dockerSocket, "BUILDGATE_TEST_DOCKER_SOCKET is not set: run scripts/test")
        try await services.withGateway(builder: try dockerBuilder()) { gateway, _ in
            let queued = try await gateway.submit(
                services.context("RUN echo long-step-started && sleep 30\n"),
                query: "image=\(services.uniqueImage("dkcancel"))")
            // Wait until the RUN step's container runs (its own output is in the log), then cancel.
            try await gateway.waitForLog(queued.id, containing: "long-step-started\n")
            let (cancel, _) = try await gateway.post("/v1/builds/\(queued.id)/cancel")
            #expect(cancel.status.code == 202)
            let build = try await gateway.waitUntilFinished(queued.id)
            #expect(build.status == "cancelled")
            // dockerd stops a build when its client goes away: no build container is left running.
            var request = HTTPClientRequest(
                url:
                    "http+unix://\(socket.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)/v1.41/containers/json"
            )
            request.headers.add(name: "Host", value: "localhost")
            var running = "?"
            for _ in 0..<20 {
                let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
                running = String(buffer: try await response.body.collect(upTo: 1 << 20))
                if running.trimmingCharacters(in: .whitespacesAndNewlines) == "[]" { break }
                try await Task.sleep(for: .milliseconds(250))
            }
            #expect(running.trimmingCharacters(in: .whitespacesAndNewlines) == "[]", "still running: \(running)")
        }
    }

    @Test func aFailingRunOnDockerdEndsFailedWithItsError() async throws {
        let services = try RealServices()
        try await services.withGateway(builder: try dockerBuilder()) { gateway, _ in
            let queued = try await gateway.submit(
                services.context("RUN echo about-to-fail && exit 7\n"),
                query: "image=\(services.uniqueImage("dockerfail"))")
            let build = try await gateway.waitUntilFinished(queued.id)
            #expect(build.status == "failed")
            #expect(build.reason == "buildFailed")
            #expect(build.message?.contains("returned a non-zero code: 7") == true)
        }
    }

    @Test func aTimeoutOnDockerdEndsTimedOutAndWrongCredentialsAreAPushFailure() async throws {
        let services = try RealServices()
        let registry = try await AuthenticatedRegistry(
            username: "robot", password: "s3cret-\(UUID().uuidString.prefix(8))")
        defer { registry.stop() }
        try await services.withGateway(insecureRegistries: [registry.address], builder: try dockerBuilder()) {
            gateway, _ in
            let timed = try await gateway.submit(
                services.context("RUN sleep 20\n"), query: "image=\(services.uniqueImage("dktimeout"))&timeout=2")
            let timedOut = try await gateway.waitUntilFinished(timed.id)
            #expect(timedOut.status == "timedOut")
            #expect(try await gateway.log(timed.id).contains("timeout of 2s reached"))

            let (put, _) = try await gateway.put(
                "/v1/registries/\(registry.address)", json: #"{"username":"\#(registry.username)","password":"wrong"}"#)
            #expect(put.status.code == 204)
            let denied = try await gateway.waitUntilFinished(
                try await gateway.submit(services.context(""), query: "image=\(registry.address)/private/app:1").id)
            #expect(denied.status == "failed")
            #expect(denied.reason == "pushFailed", "\(denied.message ?? "")")
            #expect(try await !gateway.log(denied.id).contains("wrong"))
        }
    }

    @Test func dockerdOverMutualTLSBuildsAndAGatewayWithoutAClientCertificateIsRefused() async throws {
        let services = try RealServices()
        let tls = try #require(RealEngines.dockerTLS, "BUILDGATE_TEST_DOCKER_TLS is not set: run scripts/test")
        let image = services.uniqueImage("dockertls")
        try await services.withGateway(builder: "docker=\(tls),name=dockerd-tls,network=host") { gateway, _ in
            let build = try await gateway.waitUntilFinished(
                try await gateway.submit(services.context("RUN echo over-tls\n"), query: "image=\(image)").id)
            #expect(build.status == "succeeded", "\(build.message ?? "")")
            #expect(try await services.manifest(of: image).digest == build.images.first?.digest)
            #expect(try await gateway.log(build.id).contains("at tcp://127.0.0.1:"))
            let (ready, _) = try await gateway.get("/readyz")
            #expect(ready.status.code == 200)
        }
        // The same engine, trusted, but the gateway shows no client certificate: dockerd's --tlsverify refuses it,
        // so the builder is unhealthy and the build waits in the queue, saying why.
        let withoutClientCertificate = tls.split(separator: ",").filter {
            !$0.hasPrefix("tlscert=") && !$0.hasPrefix("tlskey=")
        }
        .joined(separator: ",")
        try await services.withGateway(builder: "docker=\(withoutClientCertificate),name=dockerd-tls,network=host") {
            gateway, _ in
            let queued = try await gateway.submit(
                services.context(""), query: "image=\(services.uniqueImage("dockertls"))")
            let waiting = try await gateway.waitFor(queued.id, timeout: .seconds(10)) { $0.queue?.reason != nil }
            #expect(waiting.status == "queued")
            #expect(waiting.queue?.reason == "no healthy builder")
            let (_, body) = try await gateway.get("/v1/builders")
            let builders = String(decoding: body, as: UTF8.self)
            #expect(builders.contains(#""health":"unhealthy""#), "\(builders)")
            #expect(builders.contains("CERTIFICATE"), "\(builders)")
            let (ready, readyBody) = try await gateway.get("/readyz")
            #expect(ready.status.code == 503)
            #expect(String(decoding: readyBody, as: UTF8.self).contains("no builder is healthy"))
        }
    }
}
