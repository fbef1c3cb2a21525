import BuildGateTesting
import Foundation
import Testing

/// `scripts/check-image` on copies of the repository's Dockerfile, each broken one way: the static check refuses
/// each, and passes the Dockerfile as it is.
struct GatewayImageTests {
    static let breakages: [(String, String, String)] = [
        ("as it is", "", ""),
        ("runs as root", "USER 10001:10001", "USER root"),
        ("copies what is not there", "COPY Sources ./Sources", "COPY Sourcez ./Sources"),
        (
            "loses the migrations", "BUILDGATE_MIGRATIONS=/usr/share/buildgate/migrations",
            "BUILDGATE_MIGRATIONS=/usr/share/buildgate/migration"
        ),
        ("fails hadolint", "WORKDIR /src", "WORKDIR src"),
    ]

    @Test(arguments: breakages)
    func theStaticCheckRefusesABrokenDockerfile(name: String, original: String, broken: String) async throws {
        let directory = try TemporaryDirectory("image")
        defer { directory.remove() }
        let manager = FileManager.default
        try manager.createDirectory(atPath: "\(directory.path)/scripts", withIntermediateDirectories: true)
        for item in ["scripts/check-image", ".hadolint.yaml", "migrations", "Sources", "Tests", "Package.swift"] {
            try manager.copyItem(atPath: "\(repositoryRoot)/\(item)", toPath: "\(directory.path)/\(item)")
        }
        let dockerfile = try String(contentsOfFile: "\(repositoryRoot)/Dockerfile", encoding: .utf8)
        #expect(original.isEmpty || dockerfile.contains(original), "the Dockerfile no longer has '\(original)'")
        try (original.isEmpty ? dockerfile : dockerfile.replacingOccurrences(of: original, with: broken))
            .write(toFile: "\(directory.path)/Dockerfile", atomically: true, encoding: .utf8)

        let result = try await ChildProcess.run(
            ["\(directory.path)/scripts/check-image"], environment: ["BUILDGATE_CHECK_IMAGE_STATIC": "1"])
        if original.isEmpty {
            #expect(result.status == 0, "\(result.output)")
            #expect(result.output.contains("checked statically"))
        } else {
            #expect(result.status != 0, "a Dockerfile that \(name) passed:\n\(result.output)")
        }
    }
}
