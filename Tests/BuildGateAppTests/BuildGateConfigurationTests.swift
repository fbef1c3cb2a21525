import BuildGateApp
import BuildGateCore
import BuildGateTesting
import Foundation
import Logging
import Synchronization
import Testing

struct BuildGateConfigurationTests {
    @Test func flagsWinOverEnvironmentWhichWinsOverTheFileWhichWinsOverDefaults() throws {
        let directory = try TemporaryDirectory("config")
        defer { directory.remove() }
        let file = "\(directory.path)/buildgate.json"
        try Data(
            #"{"listen":"0.0.0.0:9000","dataDirectory":"/from/file","buildTimeout":120,"insecureRegistries":["r.local:5000"]}"#
                .utf8
        )
        .write(to: URL(fileURLWithPath: file))
        let flags = try BuildGateConfiguration.Layer(arguments: ["--listen", "127.0.0.1:7000"])
        let environment = [
            "BUILDGATE_DATA_DIR": "/from/env", "BUILDGATE_MAX_CONTEXT_SIZE": "1000", "BUILDGATE_UPLOAD_GRACE": "5",
            "HOME": "/home/u",
        ]

        let configuration = try BuildGateConfiguration.resolve(
            [flags, try .init(environment: environment), try .init(file: file)], environment: environment)

        #expect(configuration.host == "127.0.0.1" && configuration.port == 7000)
        #expect(configuration.dataDirectory == "/from/env")
        #expect(configuration.limits.maxContextSize == 1000)
        #expect(configuration.limits.defaultBuildTimeout == 120)
        #expect(configuration.insecureRegistries == ["r.local:5000"])
        #expect(configuration.builders.isEmpty)
        #expect(configuration.limits.maxContextEntries == 100_000)
        #expect(configuration.limits.uploadShutdownGrace == .seconds(5))

        let defaults = try BuildGateConfiguration.resolve([], environment: ["HOME": "/home/u"])
        #expect(defaults.dataDirectory == "/home/u/.local/share/buildgate")
        #expect(defaults.host == "127.0.0.1" && defaults.port == 8080)
        #expect(defaults.limits.uploadShutdownGrace == .seconds(30))
    }

    @Test func buildersParseWithCapacityAndName() throws {
        let unix = try BuildGateConfiguration.parseBuilder("podman=unix:///run/podman/podman.sock", index: 0)
        #expect(
            unix == BuilderEndpoint(name: "podman-1", engine: .podman, address: .unix(path: "/run/podman/podman.sock")))
        let tcp = try BuildGateConfiguration.parseBuilder("docker=tcp://10.0.0.5:2375,capacity=3,name=dind-a", index: 1)
        #expect(
            tcp
                == BuilderEndpoint(
                    name: "dind-a", engine: .docker, address: .tcp(host: "10.0.0.5", port: 2375), capacity: 3))
        for bad in [
            "podman", "kaniko=tcp://h:1", "podman=http://h:1", "podman=tcp://h", "podman=unix://relative",
            "podman=tcp://h:1,capacity=0", "podman=tcp://h:1,colour=blue",
        ] {
            #expect(throws: BuildGateError.self, "\(bad)") { try BuildGateConfiguration.parseBuilder(bad, index: 0) }
        }
    }

    @Test func buildersTakeMutualTLSAndBuildKitOptions() throws {
        let directory = try TemporaryDirectory("tls")
        defer { directory.remove() }
        for file in ["ca.pem", "cert.pem", "key.pem"] {
            FileManager.default.createFile(atPath: "\(directory.path)/\(file)", contents: Data("x".utf8))
        }
        let tls =
            "tlscacert=\(directory.path)/ca.pem,tlscert=\(directory.path)/cert.pem,tlskey=\(directory.path)/key.pem"
        let buildkit = try BuildGateConfiguration.parseBuilder(
            "buildkit=tcp://bk:1234,\(tls),tlsservername=buildkitd,network=host", index: 0)
        #expect(
            buildkit.tls
                == .init(
                    caCertificate: "\(directory.path)/ca.pem", clientCertificate: "\(directory.path)/cert.pem",
                    clientKey: "\(directory.path)/key.pem", serverName: "buildkitd"))
        #expect(buildkit.networkMode == "host")
        let docker = try BuildGateConfiguration.parseBuilder("docker=tcp://d:2376,buildkit=true,\(tls)", index: 0)
        #expect(docker.useBuildKit && docker.tls != nil)
        for bad in [
            "docker=unix:///d.sock,\(tls)", "docker=tcp://d:2376,tlscert=\(directory.path)/cert.pem",
            "docker=tcp://d:2376,tlscacert=/missing.pem",
            "docker=tcp://d:2376,tlscacert=\(directory.path)/ca.pem,tlscert=\(directory.path)/cert.pem",
            "podman=tcp://p:1,buildkit=true",
        ] {
            #expect(throws: BuildGateError.self, "\(bad)") { try BuildGateConfiguration.parseBuilder(bad, index: 0) }
        }
    }

    @Test func poolsParseForDNSAndKubernetes() throws {
        var dns = BuilderTemplate(engine: .podman, port: .number(8888))
        dns.capacity = 2
        #expect(
            try BuildGateConfiguration.parsePool("dns:podman.builders.svc:8888,engine=podman,capacity=2")
                == .dns(name: "podman.builders.svc", template: dns))
        var kubernetes = BuilderTemplate(engine: .buildkit, port: .named("buildkitd"))
        kubernetes.networkMode = "host"
        #expect(
            try BuildGateConfiguration.parsePool(
                "kubernetes:builders/app=buildkitd+tier=ci,engine=buildkit,port=buildkitd,network=host")
                == .kubernetes(namespace: "builders", labelSelector: "app=buildkitd,tier=ci", template: kubernetes))
        // A pool of mixed pods: each names its own engine (buildgate.dev/engine), the pool gives none.
        #expect(
            try BuildGateConfiguration.parsePool("kubernetes:builders/buildgate.dev/builder=true,port=builder")
                == .kubernetes(
                    namespace: "builders", labelSelector: "buildgate.dev/builder=true",
                    template: BuilderTemplate(engine: nil, port: .named("builder"))))
        for bad in [
            "dns:x:1", "dns:x:1,engine=crun", "kubernetes:b/app=x,engine=crun,port=1", "dns:x,engine=podman",
            "kubernetes:builders,engine=podman,port=1",
            "kubernetes:builders/app=x,engine=podman",
            "static:x,engine=podman", "dns:x:1,engine=podman,colour=blue",
        ] {
            #expect(throws: BuildGateError.self, "\(bad)") { try BuildGateConfiguration.parsePool(bad) }
        }
    }

    @Test func badValuesAreRefusedWithTheirName() {
        #expect(throws: BuildGateError.self) {
            try BuildGateConfiguration.Layer(environment: ["BUILDGATE_MAX_CONTEXT_SIZE": "lots"])
        }
        for layer in [
            BuildGateConfiguration.Layer(["listen": .text("nowhere")]),
            BuildGateConfiguration.Layer(["uploadGrace": .number(-1)]),
            BuildGateConfiguration.Layer(["builders": .list(["podman=tcp://a:1,name=x", "podman=tcp://b:1,name=x"])]),
            BuildGateConfiguration.Layer(["logRetentionDays": .number(100)]),
        ] {
            #expect(throws: BuildGateError.self, "\(layer)") {
                try BuildGateConfiguration.resolve([layer], environment: [:])
            }
        }
        #expect(throws: BuildGateError.self) { try BuildGateConfiguration.Layer(arguments: ["--colour", "blue"]) }
        #expect(throws: BuildGateError.self) { try BuildGateConfiguration.Layer(arguments: ["--listen"]) }
    }

    @Test func requestTimeoutsAndTheExpandedContextLimitHaveSafeDefaultsAndCanBeSet() throws {
        let defaults = try BuildGateConfiguration.resolve([], environment: [:])
        #expect(defaults.requestTimeouts.head == .seconds(30))
        #expect(defaults.requestTimeouts.bodyIdle == .seconds(60))
        #expect(defaults.requestTimeouts.bodyMinRate == 1024)
        #expect(defaults.limits.maxExpandedContextSize == 2 * defaults.limits.maxContextSize)

        let smaller = try BuildGateConfiguration.Layer(environment: ["BUILDGATE_MAX_CONTEXT_SIZE": "1000"])
        #expect(try BuildGateConfiguration.resolve([smaller], environment: [:]).limits.maxExpandedContextSize == 2000)

        let layer = try BuildGateConfiguration.Layer(environment: [
            "BUILDGATE_REQUEST_HEAD_TIMEOUT": "5", "BUILDGATE_REQUEST_BODY_TIMEOUT": "7",
            "BUILDGATE_REQUEST_BODY_MIN_RATE": "0", "BUILDGATE_MAX_EXPANDED_CONTEXT_SIZE": "123456",
        ])
        let configured = try BuildGateConfiguration.resolve([layer], environment: [:])
        #expect(configured.requestTimeouts.head == .seconds(5))
        #expect(configured.requestTimeouts.bodyIdle == .seconds(7))
        #expect(configured.requestTimeouts.bodyMinRate == 0)
        #expect(configured.limits.maxExpandedContextSize == 123_456)

        for (key, value) in [("requestHeadTimeout", 0), ("requestBodyTimeout", -1), ("requestBodyMinRate", -1)] {
            let bad = BuildGateConfiguration.Layer([key: .number(Int64(value))])
            #expect(throws: BuildGateError.self, "\(key)") {
                try BuildGateConfiguration.resolve([bad], environment: [:])
            }
        }
    }

    /// Every setting is declared once: its flag, variable and file key all reach the same field, and the README's
    /// table is the one made from the declarations.
    @Test func everySettingIsDeclaredOnceAndTheREADMETableIsMadeFromTheList() throws {
        let settings = BuildGateConfiguration.settings
        #expect(Set(settings.map(\.key)).count == settings.count)
        #expect(Set(settings.map(\.flag)).count == settings.count)
        #expect(Set(settings.map(\.environment)).count == settings.count)
        let readme = try String(contentsOfFile: "\(repositoryRoot)/README.md", encoding: .utf8)
        #expect(
            readme.contains(BuildGateConfiguration.settingsTable),
            "README's settings table differs from the declarations:\n\(BuildGateConfiguration.settingsTable)")

        let directory = try TemporaryDirectory("settings")
        defer { directory.remove() }
        let file = "\(directory.path)/config.json"
        try Data(#"{"uploadGrace":7,"allowedGitHosts":["git.example.com"],"podmanArguments":["--root /x"]}"#.utf8)
            .write(to: URL(fileURLWithPath: file))
        let fromFile = try BuildGateConfiguration.resolve([try .init(file: file)], environment: [:])
        let fromEnvironment = try BuildGateConfiguration.resolve(
            [
                try .init(environment: [
                    "BUILDGATE_UPLOAD_GRACE": "7", "BUILDGATE_ALLOWED_GIT_HOSTS": "git.example.com",
                    "BUILDGATE_PODMAN_ARGS": "--root /x",
                ])
            ],
            environment: [:])
        let fromFlags = try BuildGateConfiguration.resolve(
            [
                try .init(arguments: [
                    "--upload-grace=7", "--allowed-git-host", "git.example.com", "--podman-args=--root /x",
                ])
            ],
            environment: [:])
        for configuration in [fromFile, fromEnvironment, fromFlags] {
            #expect(configuration.limits.uploadShutdownGrace == .seconds(7))
            #expect(configuration.limits.allowedGitHosts == ["git.example.com"])
            #expect(configuration.podmanArguments == ["--root", "/x"])
        }
        let repeated = try BuildGateConfiguration.Layer(arguments: [
            "--builder", "podman=tcp://a:1", "--builder", "podman=tcp://b:1",
        ])
        #expect(try BuildGateConfiguration.resolve([repeated], environment: [:]).builders.count == 2)
        try Data(#"{"uploadGrace":"soon"}"#.utf8).write(to: URL(fileURLWithPath: file))
        #expect(throws: BuildGateError.self) { try BuildGateConfiguration.Layer(file: file) }
        try Data(#"{"colour":"blue"}"#.utf8).write(to: URL(fileURLWithPath: file))
        #expect(throws: BuildGateError.self) { try BuildGateConfiguration.Layer(file: file) }
    }

    @Test func registryCredentialsReadDockerConfigJSON() throws {
        let directory = try TemporaryDirectory("config")
        defer { directory.remove() }
        let file = "\(directory.path)/config.json"
        let auth = Data("robot:s3cret:with:colons".utf8).base64EncodedString()
        try Data(
            #"{"auths":{"https://registry.example.com/v1/":{"auth":"\#(auth)"},"r.local:5000":{"username":"u","password":"p"}}}"#
                .utf8
        )
        .write(to: URL(fileURLWithPath: file))
        let credentials = try RegistryCredentials(file: file)
        #expect(
            credentials.byHost["registry.example.com"]
                == RegistryCredential(username: "robot", password: "s3cret:with:colons"))
        #expect(credentials.byHost["r.local:5000"] == RegistryCredential(username: "u", password: "p"))
        let shown = "\(try #require(credentials.byHost["registry.example.com"]))"
        #expect(!shown.contains("s3cret") && shown.contains("<redacted>"))
    }
}

struct JSONLogHandlerTests {
    @Test func eachEntryIsOneJSONObjectWithMetadata() throws {
        let lines = Mutex<[String]>([])
        var logger = Logger(label: "buildgate") { label in
            JSONLogHandler(label: label) { line in lines.withLock { $0.append(line) } }
        }
        logger[metadataKey: "buildgate.build.id"] = "b01"
        logger.warning("builder is \"unhealthy\"\nsecond line", metadata: ["buildgate.builder.endpoint": "pm-a"])
        logger.debug("not at this level")
        let written = lines.withLock { $0 }
        #expect(written.count == 1)
        let line = try #require(written.first)
        #expect(line.hasSuffix("\n") && line.dropLast().contains("\n") == false)
        let object = try JSONDecoder().decode([String: String].self, from: Data(line.utf8))
        #expect(object["level"] == "warning")
        #expect(object["message"] == "builder is \"unhealthy\"\nsecond line")
        #expect(object["buildgate.build.id"] == "b01")
        #expect(object["buildgate.builder.endpoint"] == "pm-a")
        #expect(object["label"] == "buildgate")
        #expect(object["time"] != nil)
    }
}
