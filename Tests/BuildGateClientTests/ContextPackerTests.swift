import BuildGateClient
import BuildGateTesting
import ContextArchive
import Foundation
import NIOCore
import Testing

/// The directory packer of `buildgate submit`, on real directories: what it sends, what it leaves out, and that the
/// same tree gives the same bytes.
struct ContextPackerTests {
    func tree() throws -> TemporaryDirectory {
        let directory = try TemporaryDirectory("packer")
        let files = [
            "Dockerfile": "FROM scratch\nCOPY . /\n", ".dockerignore": "Dockerfile\n.dockerignore\n*.log\ncache/\n",
            "app/main.txt": "main\n", "debug.log": "noise\n", "cache/blob": "x\n",
        ]
        for (path, text) in files {
            let full = "\(directory.path)/\(path)"
            try FileManager.default.createDirectory(
                atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try text.write(toFile: full, atomically: true, encoding: .utf8)
        }
        try FileManager.default.createSymbolicLink(atPath: "\(directory.path)/current", withDestinationPath: "app")
        #expect(mkfifo("\(directory.path)/pipe", 0o600) == 0)
        return directory
    }

    func bytes(_ archive: ContextPacker.Archive) async throws -> [UInt8] {
        var all: [UInt8] = []
        for try await piece in archive { all += piece.readableBytesView }
        return all
    }

    @Test func whatIsSentIsWhatDockerSendsAndTheSameTreeGivesTheSameBytes() async throws {
        let directory = try tree()
        defer { directory.remove() }
        let packer = try ContextPacker(directory: directory.path)
        // The Dockerfile and .dockerignore go although the .dockerignore names them; the link is a link; the FIFO
        // is left out and said so.
        #expect(
            packer.entries.map(\.tar.path) == [".dockerignore", "Dockerfile", "app", "app/main.txt", "current"])
        #expect(packer.entries.last?.tar.kind == .symbolicLink(target: "app"))
        #expect(packer.skipped == ["pipe"])

        let first = try await bytes(packer.archive())
        let again = try await bytes(try ContextPacker(directory: directory.path).archive())
        #expect(first == again)
        #expect(
            try await packer.digest(compressed: false)
                == (try await ContextPacker(directory: directory.path).digest(compressed: false)))
        // What the gateway will take: its own validator reads the archive, compressed or not.
        for archive in [first, try await bytes(packer.archive(compressed: true))] {
            var validator = ContextArchiveValidator(dockerfile: "Dockerfile")
            try archive.withUnsafeBytes { try validator.consume($0) }
            _ = try validator.finish()
        }
    }

    @Test func aFileThatShrinksWhileItIsSentFailsTheUpload() async throws {
        let directory = try tree()
        defer { directory.remove() }
        try String(repeating: "y", count: 1 << 20).write(
            toFile: "\(directory.path)/big.bin", atomically: true, encoding: .utf8)
        let packer = try ContextPacker(directory: directory.path)
        try "".write(toFile: "\(directory.path)/big.bin", atomically: false, encoding: .utf8)
        await #expect(throws: PackError.self) { _ = try await bytes(packer.archive()) }
    }
}
