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

    /// Gateways sharing a data directory: an upload being written is another gateway's, so a start removes only
    /// uploads nobody has written to for 15 minutes, and keeps its work directories apart from the others'.
    @Test func aGatewayOnASharedDataDirectoryLeavesTheOthersUploadsInFlight() async throws {
        guard let database = try await TestStores.freshPostgresDatabase() else { return }
        let directory = try TemporaryDirectory("startup-shared")
        defer { directory.remove() }
        let tmp = "\(directory.path)/tmp"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        for name in ["upload-stale", "upload-live"] {
            #expect(FileManager.default.createFile(atPath: "\(tmp)/\(name)", contents: Data(repeating: 7, count: 4096)))
        }
        var stale = [timeval(tv_sec: time(nil) - 3600, tv_usec: 0), timeval(tv_sec: time(nil) - 3600, tv_usec: 0)]
        #expect(utimes("\(tmp)/upload-stale", &stale) == 0)

        var configuration = try BuildGateConfiguration.resolve([], environment: [:])
        configuration.dataDirectory = directory.path
        configuration.migrationsDirectory = migrationsDirectory
        configuration.databaseURL = database.url
        configuration.port = 0
        configuration.builders = [
            try BuildGateConfiguration.parseBuilder("podman=unix://\(directory.path)/none.sock", index: 0)
        ]
        _ = try await buildApplication(configuration, logger: Logger(label: "test"))
        await database.drop()

        let left = try FileManager.default.contentsOfDirectory(atPath: tmp).sorted()
        #expect(left.contains("upload-live") && !left.contains("upload-stale"), "\(left)")
        #expect(left.contains(ProcessInfo.processInfo.hostName), "no per-host work directory in \(left)")
    }
}
