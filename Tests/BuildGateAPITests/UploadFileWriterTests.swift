import BuildGateAPI
import BuildGateCore
import BuildGateTesting
import Foundation
import NIOCore
import Testing

struct UploadFileWriterTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var total: Int
        var direct: Bool
        var testDescription: String { "\(total) bytes, \(direct ? "direct" : "through the page cache")" }
    }

    /// Totals around the block (4,096) and buffer (64 KiB here) boundaries, arriving in pieces of uneven sizes.
    static let cases: [Case] = [0, 1, 4095, 4096, 4097, 65_536, 65_536 + 4096, 3 << 20, (3 << 20) + 1234].flatMap {
        [Case(total: $0, direct: true), Case(total: $0, direct: false)]
    }

    @Test(arguments: cases)
    func theFileHoldsExactlyTheBytesGivenInOrder(_ test: Case) throws {
        let directory = try TemporaryDirectory("upload-writer")
        defer { directory.remove() }
        let path = "\(directory.path)/upload"
        let descriptor = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600)
        try #require(descriptor >= 0)
        defer { close(descriptor) }

        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<test.total).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let writer = UploadFileWriter(capacity: 64 << 10)
        // ext4 and xfs (what the temp directory is on here and in CI) take direct writes.
        let expectDirect = test.direct && Self.fileSystemTakesDirectWrites(directory.path)
        if test.direct {
            let accepted = writer.writeDirectly(to: descriptor)
            if expectDirect { #expect(accepted) }
        }
        var start = 0
        var sizes = [1, 4095, 7, 70_000, 4096, 100_003, 333].makeIterator()
        while start < bytes.count {
            // A batch of one to three buffers of uneven sizes, as the socket hands them on.
            var batch: [ByteBuffer] = []
            for _ in 0..<(1 + start % 3) where start < bytes.count {
                let size = sizes.next() ?? 1 << 20
                batch.append(ByteBuffer(bytes: bytes[start..<min(bytes.count, start + size)]))
                start += min(size, bytes.count - start)
            }
            try writer.write(batch, to: descriptor)
            if expectDirect { #expect(writer.isDirect, "whole blocks keep going to the disk directly") }
        }
        try writer.finish(to: descriptor)
        #expect(writer.offset == Int64(bytes.count))
        #expect(Array(try Data(contentsOf: URL(fileURLWithPath: path))) == bytes)
    }

    /// A disk that fills up while the context is written is the client's 507 (`insufficientStorage`), not a 500.
    @Test func aFullDiskIsInsufficientStorage() throws {
        let descriptor = open("/dev/full", O_WRONLY | O_CLOEXEC)  // every write fails with ENOSPC
        try #require(descriptor >= 0)
        defer { close(descriptor) }
        let writer = UploadFileWriter(capacity: 4096)
        let error = #expect(throws: BuildGateError.self) {
            try writer.write([ByteBuffer(repeating: 0x61, count: 10_000)], to: descriptor)
        }
        #expect(error?.code == .insufficientStorage)
    }

    /// Whether `path` is on ext4 or xfs (`stat -f`), which take direct writes.
    static func fileSystemTakesDirectWrites(_ path: String) -> Bool {
        let stat = Process()
        stat.executableURL = URL(fileURLWithPath: "/usr/bin/stat")
        stat.arguments = ["-f", "-c", "%T", path]
        let output = Pipe()
        stat.standardOutput = output
        guard (try? stat.run()) != nil else { return false }
        let type = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        stat.waitUntilExit()
        return ["ext2/ext3", "xfs"].contains(type.trimmingCharacters(in: .whitespacesAndNewlines))
    }
}
