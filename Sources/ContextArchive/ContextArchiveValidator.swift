/// Validates a build context archive as its bytes pass, without storing or extracting anything.
///
/// Feed the upload in any chunking with `consume`, then call `finish`. The validator detects gzip by its magic
/// bytes, inflates it, and walks the tar headers (ustar, GNU long names, PAX), skipping file data. It rejects what
/// a build context must not hold: absolute paths, `..` components, links that leave the context (resolved as the
/// extractor will resolve them, through the archive's earlier symbolic links), names longer than a file system
/// takes, PAX global headers that set a path, device and FIFO entries, unknown entry types, too many entries,
/// oversized PAX headers, an archive that expands past its limit, and an archive without the Dockerfile.
/// Memory use is bounded by `Limits.maxHeaderSize` whatever the archive's size.
public struct ContextArchiveValidator {
    public struct Limits: Sendable {
        /// Most entries (files, directories, links) an archive may hold.
        public var maxEntries = 100_000
        /// Largest PAX extended header or GNU long name/link record.
        public var maxHeaderSize = 1 << 20
        /// Most bytes the archive may expand to, across every gzip member (guards against gzip bombs): by default
        /// twice the gateway's default upload limit.
        public var maxExpandedSize: Int64 = 4 << 30

        public init() {}
    }

    /// What a valid archive turned out to be.
    public struct Summary: Sendable, Equatable {
        public enum Compression: Sendable, Equatable { case none, gzip }
        public var compression: Compression
        public var entryCount: Int
        /// Bytes of the tar stream (after decompression).
        public var expandedSize: Int64
    }

    private enum Format {
        case undetermined
        case tar
        case gzip(GzipInflater)
    }

    private enum Phase {
        case header
        /// Inside an entry's data: bytes left of it, then padding up to the block boundary.
        case data(remaining: Int64, padding: Int)
        case end
    }

    /// Header payloads that must be read in full (not skipped) before the next header.
    private enum Capture {
        case pax(global: Bool)
        case gnuLongName
        case gnuLongLink
    }

    private let dockerfile: String
    private let limits: Limits
    private var format = Format.undetermined
    private var magic: [UInt8] = []
    private var phase = Phase.header
    private var block: [UInt8] = []
    private var capture: Capture?
    private var captured: [UInt8] = []
    private var zeroBlocks = 0
    private var headersSeen = 0
    private var entryCount = 0
    private var expandedSize: Int64 = 0
    private var sawDockerfile = false
    private var nextPath: String?
    private var nextLinkPath: String?
    /// The archive's symbolic links so far, by where they land (resolved), with their targets.
    private var symlinks: [String: String] = [:]

    /// What Linux takes: a path of 4,096 bytes, a name of 255.
    static let maxPathBytes = 4096
    static let maxNameBytes = 255
    /// Links followed while resolving one path, as the kernel's ELOOP limit.
    static let maxLinkHops = 40

    /// - Parameter dockerfile: the Dockerfile's path inside the context, already normalized with `ContextPath`.
    public init(dockerfile: String, limits: Limits = Limits()) {
        self.dockerfile = dockerfile
        self.limits = limits
        block.reserveCapacity(512)
    }

    /// Validates the next bytes of the upload. Throws `ContextArchiveError` only.
    public mutating func consume(_ bytes: UnsafeRawBufferPointer) throws {
        guard !bytes.isEmpty else { return }
        switch format {
        case .tar:
            try consumeTar(bytes)
        case .gzip(let inflater):
            try inflater.inflate(bytes) { output in try consumeTar(output) }
        case .undetermined:
            let needed = 6 - magic.count
            magic.append(contentsOf: bytes.prefix(needed))
            guard magic.count == 6 else { return }  // `finish` decides for bodies shorter than the magic.
            try determineFormat()
            let held = magic
            magic = []
            try held.withUnsafeBytes { buffer in try consume(buffer) }
            try consume(UnsafeRawBufferPointer(rebasing: bytes[min(needed, bytes.count)...]))
        }
    }

    /// Call after the last byte; returns the summary of a valid archive.
    public mutating func finish() throws -> Summary {
        if case .undetermined = format {
            guard !magic.isEmpty else {
                throw ContextArchiveError(
                    .notAnArchive, "the body is empty: expected a tar or gzip-compressed tar archive")
            }
            try determineFormat()
            let held = magic
            magic = []
            try held.withUnsafeBytes { buffer in try consume(buffer) }
        }
        if case .gzip(let inflater) = format, !inflater.isAtEnd {
            throw ContextArchiveError(.corrupt, "the gzip stream is truncated")
        }
        switch phase {
        case .end:
            break
        case .data:
            throw ContextArchiveError(.corrupt, "the archive is truncated inside an entry")
        case .header:
            if headersSeen == 0 && zeroBlocks == 0 {
                throw ContextArchiveError(.notAnArchive, "the body is not a tar or gzip-compressed tar archive")
            }
            throw ContextArchiveError(.corrupt, "the archive is truncated: it ends without the end-of-archive marker")
        }
        guard sawDockerfile else {
            throw ContextArchiveError(.missingDockerfile(path: dockerfile), "the context has no \(dockerfile)")
        }
        let compression: Summary.Compression = if case .gzip = format { .gzip } else { .none }
        return Summary(compression: compression, entryCount: entryCount, expandedSize: expandedSize)
    }

    // MARK: - Format

    private mutating func determineFormat() throws {
        if magic.starts(with: [0x1f, 0x8b]) {
            format = .gzip(try GzipInflater())
        } else if magic.starts(with: Array("BZh".utf8)) {
            throw ContextArchiveError(
                .notAnArchive, "bzip2 contexts are not supported: send tar or gzip-compressed tar")
        } else if magic.starts(with: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]) {
            throw ContextArchiveError(.notAnArchive, "xz contexts are not supported: send tar or gzip-compressed tar")
        } else if magic.starts(with: [0x28, 0xb5, 0x2f, 0xfd]) {
            throw ContextArchiveError(
                .notAnArchive, "zstd contexts are not supported yet: send tar or gzip-compressed tar")
        } else {
            format = .tar
        }
    }

    // MARK: - Tar

    private mutating func consumeTar(_ bytes: UnsafeRawBufferPointer) throws {
        expandedSize += Int64(bytes.count)
        guard expandedSize <= limits.maxExpandedSize else {
            throw ContextArchiveError(.tooLarge, "the context expands to more than \(limits.maxExpandedSize) bytes")
        }
        var offset = 0
        while offset < bytes.count {
            switch phase {
            case .end:
                return  // Anything after the end marker (record padding) is ignored, as tar does.
            case .data(let remaining, let padding):
                let available = bytes.count - offset
                if remaining > 0 {
                    let take = Int(min(Int64(available), remaining))
                    if capture != nil {
                        captured.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + take)]))
                    }
                    offset += take
                    phase = .data(remaining: remaining - Int64(take), padding: padding)
                } else {
                    let take = min(available, padding)
                    offset += take
                    phase = .data(remaining: 0, padding: padding - take)
                }
                if case .data(0, 0) = phase {
                    phase = .header
                    try finishCapture()
                }
            case .header:
                let take = min(512 - block.count, bytes.count - offset)
                block.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + take)]))
                offset += take
                if block.count == 512 {
                    try processHeader()
                    block.removeAll(keepingCapacity: true)
                }
            }
        }
    }

    private mutating func processHeader() throws {
        if block.allSatisfy({ $0 == 0 }) {
            zeroBlocks += 1
            if zeroBlocks == 2 { phase = .end }
            return
        }
        zeroBlocks = 0
        guard TarHeader.checksumMatches(block) else {
            if headersSeen == 0 {
                throw ContextArchiveError(.notAnArchive, "the body is not a tar or gzip-compressed tar archive")
            }
            throw ContextArchiveError(.corrupt, "tar header \(headersSeen + 1) has a bad checksum")
        }
        headersSeen += 1
        let header = TarHeader(block)
        guard let size = header.size, size >= 0 else {
            throw ContextArchiveError(.corrupt, "tar header \(headersSeen) has a bad size field")
        }
        let padding = Int((512 - size % 512) % 512)

        switch header.typeflag {
        case UInt8(ascii: "x"), UInt8(ascii: "g"), UInt8(ascii: "L"), UInt8(ascii: "K"):
            guard size <= limits.maxHeaderSize else {
                let kind =
                    header.typeflag == UInt8(ascii: "x") || header.typeflag == UInt8(ascii: "g")
                    ? "PAX" : "GNU long name"
                throw ContextArchiveError(
                    .forbiddenEntry(path: nextPath ?? header.name),
                    "a \(kind) header of \(size) bytes exceeds the limit of \(limits.maxHeaderSize) bytes (entry '\(nextPath ?? header.name)')"
                )
            }
            capture =
                switch header.typeflag {
                case UInt8(ascii: "x"): .pax(global: false)
                case UInt8(ascii: "g"): .pax(global: true)
                case UInt8(ascii: "L"): .gnuLongName
                default: .gnuLongLink
                }
            captured.removeAll(keepingCapacity: true)
            phase = .data(remaining: size, padding: padding)
            if size == 0 {
                phase = .header
                try finishCapture()
            }
            return
        default:
            break
        }

        let rawPath = nextPath ?? header.name
        let rawLink = nextLinkPath ?? header.linkName
        nextPath = nil
        nextLinkPath = nil
        entryCount += 1
        guard entryCount <= limits.maxEntries else {
            throw ContextArchiveError(
                .forbiddenEntry(path: rawPath),
                "the context has more than \(limits.maxEntries) entries (at '\(rawPath)')")
        }
        guard let path = ContextPath.normalize(rawPath) else {
            throw ContextArchiveError(
                .forbiddenEntry(path: rawPath),
                "entry '\(rawPath)' has an absolute path or a '..' component")
        }
        try checkLength(of: rawPath, entry: rawPath, what: "name")
        // Where the entry lands once its directories are resolved through the archive's symbolic links.
        let components = path == "." ? [] : path.split(separator: "/")
        guard let parent = resolve(components.dropLast()) else {
            throw ContextArchiveError(
                .forbiddenEntry(path: rawPath),
                "entry '\(rawPath)' is written through a symbolic link that leads outside the context")
        }
        let landing = (parent + components.suffix(1)).joined(separator: "/")

        switch header.typeflag {
        case UInt8(ascii: "0"), 0, UInt8(ascii: "7"):
            if path == dockerfile { sawDockerfile = true }
        case UInt8(ascii: "5"):
            break
        case UInt8(ascii: "1"):
            try checkLength(of: rawLink, entry: rawPath, what: "link target")
            guard ContextPath.normalize(rawLink) != nil, resolve(rawLink.split(separator: "/")) != nil else {
                throw ContextArchiveError(
                    .forbiddenEntry(path: rawPath),
                    "hard link '\(rawPath)' points outside the context (to '\(rawLink)')")
            }
            if path == dockerfile { sawDockerfile = true }
        case UInt8(ascii: "2"):
            try checkLength(of: rawLink, entry: rawPath, what: "link target")
            guard !rawLink.hasPrefix("/"), !rawLink.utf8.contains(0),
                resolve(parent + rawLink.split(separator: "/")) != nil
            else {
                throw ContextArchiveError(
                    .forbiddenEntry(path: rawPath),
                    "symbolic link '\(rawPath)' points outside the context (to '\(rawLink)')")
            }
            symlinks[landing] = rawLink
            if path == dockerfile { sawDockerfile = true }
        case UInt8(ascii: "3"), UInt8(ascii: "4"):
            throw ContextArchiveError(.forbiddenEntry(path: rawPath), "entry '\(rawPath)' is a device node")
        case UInt8(ascii: "6"):
            throw ContextArchiveError(.forbiddenEntry(path: rawPath), "entry '\(rawPath)' is a FIFO")
        default:
            let type = String(decoding: [header.typeflag], as: UTF8.self)
            throw ContextArchiveError(
                .forbiddenEntry(path: rawPath), "entry '\(rawPath)' has an unsupported type '\(type)'")
        }
        phase = .data(remaining: size, padding: padding)
        if size == 0 { phase = .header }
    }

    /// `components` (relative to the context root) resolved through the archive's symbolic links, as the extractor
    /// will resolve them; nil when they lead outside the root, or through too many links.
    private func resolve(_ components: some Collection<Substring>) -> [Substring]? {
        var resolved: [Substring] = []
        var remaining = Array(components.reversed())
        var hops = 0
        while let component = remaining.popLast() {
            switch component {
            case "", ".":
                continue
            case "..":
                guard !resolved.isEmpty else { return nil }
                resolved.removeLast()
            default:
                resolved.append(component)
                guard let target = symlinks[resolved.joined(separator: "/")] else { continue }
                hops += 1
                guard hops <= Self.maxLinkHops, !target.hasPrefix("/") else { return nil }
                resolved.removeLast()
                remaining.append(contentsOf: target.split(separator: "/", omittingEmptySubsequences: true).reversed())
            }
        }
        return resolved
    }

    /// Names and link targets no file system here would take are refused before they reach one.
    private func checkLength(of text: String, entry: String, what: String) throws {
        let tooLong =
            text.utf8.count > Self.maxPathBytes
            || text.split(separator: "/").contains { $0.utf8.count > Self.maxNameBytes }
        guard !tooLong else {
            throw ContextArchiveError(
                .forbiddenEntry(path: String(entry.prefix(200))),
                "entry '\(entry.prefix(200))…' has a \(what) longer than a file system allows (\(Self.maxPathBytes) bytes, \(Self.maxNameBytes) per name)"
            )
        }
    }

    private mutating func finishCapture() throws {
        guard let capture else { return }
        self.capture = nil
        switch capture {
        case .pax(let global):
            guard let records = PAXRecords.parse(captured) else {
                throw ContextArchiveError(.corrupt, "a PAX extended header is malformed")
            }
            if global {
                // GNU tar applies a global header's path to the entries after it, which this validator would not
                // have checked: refused rather than interpreted.
                if records["path"] != nil || records["linkpath"] != nil {
                    throw ContextArchiveError(
                        .forbiddenEntry(path: records["path"] ?? records["linkpath"] ?? ""),
                        "a PAX global header sets a path or link path; contexts may not")
                }
            } else {
                if let path = records["path"] { nextPath = path }
                if let link = records["linkpath"] { nextLinkPath = link }
            }
        case .gnuLongName:
            nextPath = String(decoding: captured.prefix { $0 != 0 }, as: UTF8.self)
        case .gnuLongLink:
            nextLinkPath = String(decoding: captured.prefix { $0 != 0 }, as: UTF8.self)
        }
        captured.removeAll(keepingCapacity: true)
    }
}
