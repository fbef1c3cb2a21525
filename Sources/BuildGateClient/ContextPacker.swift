import ContextArchive
import Crypto
import Foundation
import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

/// A directory packed as the build context `docker build` would send: its `.dockerignore` applied with Docker's
/// rules (the Dockerfile and `.dockerignore` are always sent), entries sorted, owners and names left out, so the same
/// tree gives the same bytes and the same digest. Symbolic links are sent as links; sockets, devices and FIFOs are
/// left out (named in `skipped`).
///
/// The archive is produced while it is sent (`archive()`): file contents are read and compressed piece by piece, so
/// memory stays flat however large the directory.
package struct ContextPacker: Sendable {
    package struct Entry: Sendable, Equatable {
        package var tar: TarEntryWriter.Entry
        /// Where the file is on disk.
        package var source: String
    }

    package let directory: String
    package let entries: [Entry]
    /// Paths left out because a context cannot carry them (sockets, devices, FIFOs).
    package let skipped: [String]
    /// The bytes of all files sent, before compression.
    package var contentBytes: Int64 {
        entries.reduce(0) { if case .file(let size) = $1.tar.kind { $0 + size } else { $0 } }
    }

    /// Reads `directory` (and its `.dockerignore`). `dockerfile` is the Dockerfile's path inside it.
    package init(directory: String, dockerfile: String = "Dockerfile") throws {
        self.directory = directory
        var ignore = DockerIgnore()
        if let text = try? String(contentsOfFile: "\(directory)/.dockerignore", encoding: .utf8) {
            ignore = try DockerIgnore(text)
        }
        // As the docker CLI does: the Dockerfile and .dockerignore are sent even when a pattern excludes them.
        try ignore.add(dockerfile, exception: true)
        try ignore.add(".dockerignore", exception: true)
        var entries: [Entry] = []
        var skipped: [String] = []
        try Self.walk(directory, relative: "", ignore: ignore, into: &entries, skipped: &skipped)
        self.entries = entries
        self.skipped = skipped
    }

    private static func walk(
        _ root: String, relative: String, ignore: DockerIgnore, into entries: inout [Entry], skipped: inout [String]
    ) throws {
        let here = relative.isEmpty ? root : "\(root)/\(relative)"
        for name in try FileManager.default.contentsOfDirectory(atPath: here).sorted(by: {
            Array($0.utf8).lexicographicallyPrecedes($1.utf8)
        }) {
            let path = relative.isEmpty ? name : "\(relative)/\(name)"
            let source = "\(root)/\(path)"
            var info = stat()
            guard lstat(source, &info) == 0 else {
                throw PackError("cannot read \(source): \(String(cString: strerror(errno)))")
            }
            let excluded = ignore.excludes(path)
            let mode = Int(info.st_mode & 0o7777)
            let modified = Int64(info.st_mtim.tv_sec)
            switch info.st_mode & S_IFMT {
            case S_IFDIR:
                if !excluded {
                    entries.append(
                        Entry(tar: .init(path: path, kind: .directory, mode: mode, modified: modified), source: source))
                }
                if !excluded || ignore.mayIncludeBelow(path) {
                    try walk(root, relative: path, ignore: ignore, into: &entries, skipped: &skipped)
                }
            case _ where excluded:
                continue
            case S_IFREG:
                entries.append(
                    Entry(
                        tar: .init(path: path, kind: .file(size: Int64(info.st_size)), mode: mode, modified: modified),
                        source: source))
            case S_IFLNK:
                var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
                let count = readlink(source, &buffer, buffer.count - 1)
                guard count >= 0 else { throw PackError("cannot read the link \(source)") }
                let target = String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
                entries.append(
                    Entry(
                        tar: .init(path: path, kind: .symbolicLink(target: target), mode: 0o777, modified: modified),
                        source: source))
            default:
                skipped.append(path)
            }
        }
    }

    /// The archive's digest (`sha256:<hex>`), as the gateway will name it: the archive is produced once, hashed and
    /// dropped, so a context the gateway already keeps need not be sent.
    package func digest(compressed: Bool, progress: @escaping @Sendable (Int64) -> Void = { _ in }) async throws
        -> String
    {
        var hash = SHA256()
        for try await piece in archive(compressed: compressed, progress: progress) {
            piece.withUnsafeReadableBytes { hash.update(bufferPointer: $0) }
        }
        return "sha256:" + hash.finalize().map { String(format: "%02x", $0) }.joined()
    }

    /// The tar (gzip-compressed when `compressed`), produced as it is read; `progress` hears the file bytes read so
    /// far. Uncompressed by default, as `docker build` sends it: on a fast link gzip costs more time than it saves.
    package func archive(compressed: Bool = false, progress: @escaping @Sendable (Int64) -> Void = { _ in }) -> Archive
    {
        Archive(entries: entries, compressed: compressed, progress: progress)
    }

    /// The archive as an asynchronous sequence of pieces (about 64 KiB each), for a streamed request body.
    package struct Archive: AsyncSequence, Sendable {
        package typealias Element = ByteBuffer
        let entries: [Entry]
        let compressed: Bool
        let progress: @Sendable (Int64) -> Void

        package func makeAsyncIterator() -> Iterator {
            Iterator(entries: entries, deflater: compressed ? try? GzipDeflater() : nil, progress: progress)
        }

        package final class Iterator: AsyncIteratorProtocol {
            private let entries: [Entry]
            private let progress: @Sendable (Int64) -> Void
            private var next = 0
            private var file: (descriptor: Int32, remaining: Int64, path: String)?
            /// Nil: the tar goes out as it is.
            private let deflater: GzipDeflater?
            private var finished = false
            private var bytesRead: Int64 = 0
            private var input = [UInt8](repeating: 0, count: 256 * 1024)

            init(entries: [Entry], deflater: GzipDeflater?, progress: @escaping @Sendable (Int64) -> Void) {
                self.entries = entries
                self.deflater = deflater
                self.progress = progress
            }

            deinit {
                if let file { close(file.descriptor) }
            }

            package func next() async throws -> ByteBuffer? {
                guard !finished else { return nil }
                var output = ByteBuffer()
                output.reserveCapacity(96 * 1024)
                while output.readableBytes < 64 * 1024 {
                    try Task.checkCancellation()
                    if var current = file {
                        let want = Int(Swift.min(Int64(input.count), current.remaining))
                        let count = input.withUnsafeMutableBytes {
                            Glibc.read(current.descriptor, $0.baseAddress, want)
                        }
                        guard count > 0 else {
                            close(current.descriptor)
                            file = nil
                            throw PackError("\(current.path) changed while it was being sent (it is shorter now)")
                        }
                        current.remaining -= Int64(count)
                        bytesRead += Int64(count)
                        progress(bytesRead)
                        try input.withUnsafeBytes {
                            try emit(UnsafeRawBufferPointer(rebasing: $0[..<count]), into: &output)
                        }
                        if current.remaining == 0 {
                            close(current.descriptor)
                            file = nil
                            if case .file(let size) = entries[next - 1].tar.kind {
                                try TarEntryWriter.padding(after: size).withUnsafeBytes { try emit($0, into: &output) }
                            }
                        } else {
                            file = current
                        }
                        continue
                    }
                    guard next < entries.count else {
                        try TarEntryWriter.end.withUnsafeBytes { try emit($0, into: &output, finish: true) }
                        finished = true
                        break
                    }
                    let entry = entries[next]
                    next += 1
                    try TarEntryWriter.header(for: entry.tar).withUnsafeBytes { try emit($0, into: &output) }
                    if case .file(let size) = entry.tar.kind, size > 0 {
                        let descriptor = open(entry.source, O_RDONLY | O_CLOEXEC)
                        guard descriptor >= 0 else {
                            throw PackError("cannot open \(entry.source): \(String(cString: strerror(errno)))")
                        }
                        file = (descriptor, size, entry.source)
                    }
                }
                return output
            }

            /// Archive bytes to the output, through the deflater when there is one.
            private func emit(_ bytes: UnsafeRawBufferPointer, into output: inout ByteBuffer, finish: Bool = false)
                throws
            {
                guard let deflater else {
                    output.writeBytes(bytes)
                    return
                }
                try deflater.deflate(bytes, finish: finish) { output.writeBytes($0) }
            }
        }
    }
}

/// A directory that cannot be packed as it is.
package struct PackError: Error, CustomStringConvertible {
    package var description: String
    init(_ description: String) { self.description = description }
}
