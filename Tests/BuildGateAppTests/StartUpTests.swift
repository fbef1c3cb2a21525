import BuildGateApp
import BuildGateTesting
import Foundation
import Logging
import Testing

/// What `buildApplication` does to the data directory before it serves anything.
struct StartUpTests {
    /// An upload cut off by a crash leaves `tmp/upload-…`; the next start removes such files and nothing else.
    @Test func uploadsLeftByACrashAreSweptAtStartUp() async throws {
        let directory = try TemporaryDirectory("startup")
        defer { directory.remove() }
        let tmp = "\(directory.path)/tmp"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        for name in ["upload-4f1c", "upload-9ab0", "notes.txt"] {
            #expect(FileManager.default.createFile(atPath: "\(tmp)/\(name)", contents: Data(repeating: 7, count: 4096)))
        }

        var configuration = try BuildGateConfiguration.resolve([], environment: [:])
        configuration.dataDirectory = directory.path
        configuration.migrationsDirectory = migrationsDirectory
        configuration.port = 0
        // A builder is named, so no embedded Podman service is started.
        configuration.builders = [
            try BuildGateConfiguration.parseBuilder("podman=unix://\(directory.path)/none.sock", index: 0)
        ]
        _ = try await buildApplication(configuration, logger: Logger(label: "test"))

        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp).sorted() == ["notes.txt"])
    }
}
