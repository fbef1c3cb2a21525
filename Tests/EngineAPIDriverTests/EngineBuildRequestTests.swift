import BuildGateCore
import Foundation
import Testing

@testable import EngineAPIDriver

/// What `POST /build` is asked for each build parameter, on Podman and dockerd; the real engines' answers to the
/// same parameters are checked end to end (`EngineParametersEndToEndTests`).
struct EngineBuildRequestTests {
    private func job(
        _ request: BuildRequest, secrets: [String: SecretValue] = [:], credentials: [String: RegistryCredential] = [:]
    ) -> BuildJob {
        BuildJob(
            id: BuildID("b0123456789abcdefghjkmnpqrs")!, request: request,
            context: BuildContext(
                digest: ContextDigest(hex: String(repeating: "a", count: 64))!, size: 10, compression: .none),
            contextPath: "/nowhere", registryCredentials: credentials, secrets: secrets)
    }

    private func values(_ name: String, in request: EngineBuildRequest) -> [String] {
        request.query.filter { $0.0 == name }.map(\.1)
    }

    private let podman = BuilderEndpoint(name: "p", engine: .podman, address: .unix(path: "/run/podman.sock"))

    @Test func everyBuildParameterHasItsQueryItem() throws {
        let request = BuildRequest(
            images: [
                try ImageReference(parsing: "reg.example/app:1"), try ImageReference(parsing: "reg.example/app:latest"),
            ],
            dockerfile: "docker/Dockerfile.prod", target: "runtime", buildArgs: ["B": "2", "A": "1 and more"],
            labels: ["org.example.team": "builders"], platform: try Platform(parsing: "linux/arm64/v8"), noCache: true)

        let built = EngineBuildRequest(job(request), endpoint: podman)

        #expect(values("t", in: built) == ["reg.example/app:1", "reg.example/app:latest"])
        #expect(values("dockerfile", in: built) == ["docker/Dockerfile.prod"])
        #expect(values("target", in: built) == ["runtime"])
        #expect(values("platform", in: built) == ["linux/arm64/v8"])
        #expect(values("buildargs", in: built) == [#"{"A":"1 and more","B":"2"}"#])
        #expect(values("labels", in: built) == [#"{"org.example.team":"builders"}"#])
        #expect(values("nocache", in: built) == ["true"])
        #expect(values("rm", in: built) == ["true"] && values("forcerm", in: built) == ["true"])
        #expect(built.headers["Content-Type"] == ["application/x-tar"])
        #expect(built.headers["X-Registry-Config"].isEmpty)
        #expect(built.secretFiles.isEmpty)
    }

    @Test func parametersLeftOutAreNotSent() throws {
        let built = EngineBuildRequest(
            job(BuildRequest(images: [try ImageReference(parsing: "reg.example/app:1")])), endpoint: podman)

        let names = Set(built.query.map(\.0))
        #expect(names == ["t", "dockerfile", "rm", "forcerm"])
        #expect(values("dockerfile", in: built) == ["Dockerfile"])
    }

    @Test func dockerdsBuildKitModeAndTheEndpointsNetworkAreAsked() throws {
        var endpoint = BuilderEndpoint(
            name: "d", engine: .docker, address: .unix(path: "/run/docker.sock"), networkMode: "host")
        endpoint.useBuildKit = true
        let image = try ImageReference(parsing: "reg.example/app:1")

        let buildKit = EngineBuildRequest(job(BuildRequest(images: [image])), endpoint: endpoint)
        endpoint.useBuildKit = false
        let classic = EngineBuildRequest(job(BuildRequest(images: [image])), endpoint: endpoint)

        #expect(values("version", in: buildKit) == ["2"])
        #expect(values("version", in: classic).isEmpty)
        #expect(values("networkmode", in: buildKit) == ["host"])
        // Podman never gets BuildKit's switch, whatever the endpoint says.
        var podmanWithFlag = podman
        podmanWithFlag.useBuildKit = true
        #expect(
            values("version", in: EngineBuildRequest(job(BuildRequest(images: [image])), endpoint: podmanWithFlag))
                .isEmpty)
    }

    @Test func cachesNameARepositoryAndTurnOnLayers() throws {
        let request = BuildRequest(
            images: [try ImageReference(parsing: "reg.example/app:1")],
            cacheFrom: [try ImageReference(parsing: "reg.example/cache:main")],
            cacheTo: try ImageReference(parsing: "reg.example/cache:main"))

        let built = EngineBuildRequest(job(request), endpoint: podman)

        #expect(values("cachefrom", in: built) == ["reg.example/cache"])
        #expect(values("cacheto", in: built) == ["reg.example/cache"])
        #expect(values("layers", in: built) == ["true"])
    }

    @Test func secretsTravelAsFilesNoContextEntryCanBeNamedAndCredentialsAsRegistryConfig() throws {
        let request = BuildRequest(
            images: [try ImageReference(parsing: "reg.example/app:1")], secrets: ["npmrc", "aws"])
        let built = EngineBuildRequest(
            job(
                request, secrets: ["npmrc": SecretValue(Array("token".utf8)), "aws": SecretValue(Array("key".utf8))],
                credentials: ["reg.example": RegistryCredential(username: "robot", password: "pw")]),
            endpoint: podman)

        #expect(
            built.secretFiles.map(\.name) == [
                ".buildgate-secret-b0123456789abcdefghjkmnpqrs-aws",
                ".buildgate-secret-b0123456789abcdefghjkmnpqrs-npmrc",
            ])
        #expect(built.secretFiles.map { String(decoding: $0.contents, as: UTF8.self) } == ["key", "token"])
        #expect(
            values("secrets", in: built) == [
                #"["id=aws,src=.buildgate-secret-b0123456789abcdefghjkmnpqrs-aws","id=npmrc,src=.buildgate-secret-b0123456789abcdefghjkmnpqrs-npmrc"]"#
            ])
        let config = try #require(built.headers["X-Registry-Config"].first)
        let decoded = try #require(
            Data(
                base64Encoded: config.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/"))
        )
        let map = try JSONDecoder().decode([String: [String: String]].self, from: decoded)
        #expect(map["reg.example"] == ["username": "robot", "password": "pw"])
    }
}
