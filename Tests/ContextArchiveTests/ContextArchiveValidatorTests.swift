import BuildGateTesting
import ContextArchive
import Foundation
import Testing

struct ContextArchiveValidatorTests {
    /// Validates `bytes` fed in chunks of `chunk` bytes, as an upload arrives.
    private func validate(
        _ bytes: [UInt8], dockerfile: String = "Dockerfile", chunk: Int = 4096,
        limits: ContextArchiveValidator.Limits = .init()
    ) throws -> ContextArchiveValidator.Summary {
        var validator = ContextArchiveValidator(dockerfile: dockerfile, limits: limits)
        var offset = 0
        while offset < bytes.count {
            let end = min(bytes.count, offset + chunk)
            try bytes[offset..<end].withUnsafeBytes { try validator.consume($0) }
            offset = end
        }
        return try validator.finish()
    }

    private func kind(of body: () throws -> Any) -> ContextArchiveError.Kind? {
        do {
            _ = try body()
            return nil
        } catch let error as ContextArchiveError {
            return error.kind
        } catch {
            return nil
        }
    }

    private func context(_ build: (inout TarWriter) -> Void) -> [UInt8] {
        var tar = TarWriter()
        tar.file("Dockerfile", "FROM scratch\n")
        build(&tar)
        tar.end()
        return tar.bytes
    }

    @Test(arguments: [1, 7, 511, 512, 513, 65536])
    func acceptsAPlainContextInAnyChunking(chunk: Int) throws {
        let bytes = context { tar in
            tar.directory("src/")
            tar.file("src/main.c", String(repeating: "x", count: 1500))
            tar.link("src/link", to: "main.c", type: .symbolicLink)
            tar.link("hard", to: "src/main.c", type: .hardLink)
        }
        let summary = try validate(bytes, chunk: chunk)
        #expect(summary.compression == .none)
        #expect(summary.entryCount == 5)
    }

    @Test func acceptsGzipAndFindsANestedDockerfile() throws {
        var tar = TarWriter()
        tar.file("./build/Dockerfile.dev", "FROM scratch\n")
        tar.end()
        let summary = try validate(try tar.gzipped(), dockerfile: "build/Dockerfile.dev", chunk: 100)
        #expect(summary.compression == .gzip)
        #expect(summary.expandedSize == Int64(tar.bytes.count))
    }

    @Test func longNamesFromPAXAndGNUHeadersAreChecked() throws {
        let deep = String(repeating: "d/", count: 80) + "file"
        let fine = context { tar in
            tar.pax([("path", deep)])
            tar.file("short", "x")
            tar.entry("././@LongLink", type: .gnuLongName, contents: Array((deep + "2").utf8) + [0])
            tar.file("short2", "y")
        }
        #expect(try validate(fine).entryCount == 3)

        let hostile = context { tar in
            tar.pax([("path", "innocent/../../etc/passwd")])
            tar.file("innocent", "x")
        }
        #expect(kind { try validate(hostile) } == .forbiddenEntry(path: "innocent/../../etc/passwd"))
    }

    @Test(arguments: [
        ("/etc/passwd", TarWriter.EntryType.file, ""),
        ("a/../../escape", .file, ""),
        ("..", .directory, ""),
        ("dev/null", .characterDevice, ""),
        ("dev/sda", .blockDevice, ""),
        ("pipe", .fifo, ""),
        ("up", .symbolicLink, "../../outside"),
        ("abs", .symbolicLink, "/etc/shadow"),
        ("sub/up", .symbolicLink, "../.."),
        ("hard", .hardLink, "../outside"),
        ("hardabs", .hardLink, "/etc/passwd"),
    ])
    func refusesEntriesThatLeaveTheContextOrAreNotFiles(name: String, type: TarWriter.EntryType, link: String) {
        let bytes = context { tar in tar.entry(name, type: type, linkName: link) }
        #expect(kind { try validate(bytes) } == .forbiddenEntry(path: name))
    }

    @Test func refusesTooManyEntriesNamingTheFirstOneOverTheLimit() {
        var limits = ContextArchiveValidator.Limits()
        limits.maxEntries = 3
        let bytes = context { tar in
            for index in 1...5 { tar.file("f\(index)", "") }
        }
        #expect(kind { try validate(bytes, limits: limits) } == .forbiddenEntry(path: "f3"))
    }

    @Test func refusesPAXHeadersOverOneMebibyteButTakesOneAtTheLimit() throws {
        let atLimit = context { tar in
            tar.paxOfSize(1 << 20)
            tar.file("a", "")
        }
        #expect(try validate(atLimit).entryCount == 2)
        let over = context { tar in
            tar.paxOfSize((1 << 20) + 1)
            tar.file("a", "")
        }
        guard case .forbiddenEntry = kind(of: { try validate(over) }) else {
            Issue.record("an oversized PAX header was accepted")
            return
        }
    }

    @Test func aMissingDockerfileIsNamed() {
        var tar = TarWriter()
        tar.file("README", "hi")
        tar.end()
        #expect(kind { try validate(tar.bytes) } == .missingDockerfile(path: "Dockerfile"))
        #expect(
            kind { try validate(tar.bytes, dockerfile: "docker/Dockerfile") }
                == .missingDockerfile(path: "docker/Dockerfile"))
    }

    @Test func truncationAnywhereIsCorruptNotValid() throws {
        let bytes = context { tar in tar.file("big", String(repeating: "z", count: 5000)) }
        for cut in [600, 1024, 1100, 5000, bytes.count - 1024, bytes.count - 1] {
            #expect(kind { try validate(Array(bytes.prefix(cut))) } == .corrupt, "cut at \(cut)")
        }
        let gzip = try TarWriter.gzipped(of: bytes)
        #expect(kind { try validate(Array(gzip.dropLast(4))) } == .corrupt)
    }

    @Test func aBadHeaderChecksumIsCorrupt() {
        var bytes = context { tar in tar.file("second", "x") }
        bytes[1024 + 10] ^= 0x55  // inside the second header's name
        #expect(kind { try validate(bytes) } == .corrupt)
    }

    @Test func corruptGzipIsCorrupt() throws {
        var gzip = try TarWriter.gzipped(of: context { _ in })
        gzip[gzip.count / 2] ^= 0xff
        #expect(kind { try validate(gzip) } == .corrupt)
    }

    @Test(
        arguments: [
            Array("hello, this is not an archive at all".utf8),
            Array("BZh91AY&SY".utf8),
            [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0x00],
            [0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0],
            [0x50, 0x4b, 0x03, 0x04] + [UInt8](repeating: 0, count: 600),
            [],
        ] as [[UInt8]])
    func anythingButTarOrGzipIsNotAnArchive(bytes: [UInt8]) {
        #expect(kind { try validate(bytes) } == .notAnArchive)
    }

    @Test func aGzipBombStopsAtTheExpansionLimit() throws {
        var tar = TarWriter()
        tar.file("Dockerfile", "FROM scratch\n")
        tar.entry("zeros", type: .file, contents: [UInt8](repeating: 0, count: 4 << 20))
        tar.end()
        var limits = ContextArchiveValidator.Limits()
        limits.maxExpandedSize = 1 << 20
        #expect(kind { try validate(try tar.gzipped(), limits: limits) } == .tooLarge)
    }

    @Test func pathsNormalize() {
        #expect(ContextPath.normalize("./a//b/") == "a/b")
        #expect(ContextPath.normalize("a/./b") == "a/b")
        #expect(ContextPath.normalize("a/../b") == nil)
        #expect(ContextPath.normalize("/a") == nil)
        #expect(ContextPath.normalize("") == nil)
    }

    @Test func linksThatStayInsideAreAcceptedWhereverTheyPoint() throws {
        let bytes = context { tar in
            tar.directory("a/b/")
            tar.link("a/b/link", to: "../c", type: .symbolicLink)
            tar.link("a/up", to: "../Dockerfile", type: .symbolicLink)
            tar.link("lib", to: "a/b", type: .symbolicLink)
            tar.file("lib/through-a-link", "x")
            tar.link("lib/sibling", to: "../b", type: .symbolicLink)
        }
        #expect(try validate(bytes).entryCount == 7)
    }

    @Test(arguments: [
        ("link", "../c"),
        ("a/link", "x/../../../c"),
        ("abs", "/etc"),
    ])
    func aLinkThatLeavesTheContextLexicallyIsRefused(name: String, target: String) {
        let bytes = context { tar in tar.link(name, to: target, type: .symbolicLink) }
        #expect(kind { try validate(bytes) } == .forbiddenEntry(path: name))
    }

    /// `a → .`, then `a/b → ..` (lexically `a/..`, the root, but written through `a` it lands at the root and points
    /// above it), then `a/b/x`: each entry alone looked harmless; the extractor would write outside the context.
    @Test(arguments: [1, 512, 4096])
    func linksThroughLinksAreResolvedAsTheExtractorWillResolveThem(chunk: Int) {
        let bytes = context { tar in
            tar.link("a", to: ".", type: .symbolicLink)
            tar.link("a/b", to: "..", type: .symbolicLink)
            tar.file("a/b/x", "escaped")
        }
        #expect(kind { try validate(bytes, chunk: chunk) } == .forbiddenEntry(path: "a/b"))
        // The same with a file written through a link to a directory that leads out.
        let through = context { tar in
            tar.directory("d/")
            tar.link("d/up", to: "..", type: .symbolicLink)
            tar.link("out", to: "d/up/d/up/..", type: .symbolicLink)
        }
        #expect(kind { try validate(through, chunk: chunk) } == .forbiddenEntry(path: "out"))
        let loop = context { tar in
            tar.link("p", to: "q", type: .symbolicLink)
            tar.link("q", to: "p", type: .symbolicLink)
            tar.file("p/x", "x")
        }
        #expect(kind { try validate(loop, chunk: chunk) } == .forbiddenEntry(path: "p/x"))
    }

    /// GNU tar applies a global header's `path` to what follows; the validator would not have checked it.
    @Test func aPAXGlobalHeaderThatSetsAPathIsRefused() throws {
        let bytes = context { tar in
            tar.pax([("path", "../../etc/passwd")], global: true)
            tar.file("innocent", "x")
        }
        #expect(kind { try validate(bytes) } == .forbiddenEntry(path: "../../etc/passwd"))
        let harmless = context { tar in
            tar.pax([("comment", "made by a tool")], global: true)
            tar.file("innocent", "x")
        }
        #expect(try validate(harmless).entryCount == 2)
    }

    @Test func namesAndLinkTargetsLongerThanAFileSystemTakesAreRefused() {
        let longPath = context { tar in
            tar.pax([("path", String(repeating: "d/", count: 32 * 1024) + "f")])
            tar.file("placeholder", "x")
        }
        #expect(kind { try validate(longPath) }.map { if case .forbiddenEntry = $0 { true } else { false } } == true)
        let longName = context { tar in
            tar.pax([("path", String(repeating: "n", count: 300))])
            tar.file("placeholder", "x")
        }
        #expect(kind { try validate(longName) }.map { if case .forbiddenEntry = $0 { true } else { false } } == true)
        let longTarget = context { tar in
            tar.pax([("linkpath", String(repeating: "t", count: 256))])
            tar.link("l", to: "placeholder", type: .symbolicLink)
        }
        #expect(kind { try validate(longTarget) } == .forbiddenEntry(path: "l"))
        let longest = context { tar in
            tar.pax([("path", String(repeating: "n", count: 255))])
            tar.file("placeholder", "x")
        }
        #expect((try? validate(longest)) != nil, "a 255-byte name is allowed")
    }

    /// A 3 MB upload of concatenated gzip members expanded to 3 GiB and reached the builder: the expanded size is
    /// counted across members and refused as soon as it passes, by default at twice the upload limit.
    @Test func theExpandedSizeIsCountedAcrossGzipMembers() throws {
        var tar = TarWriter()
        tar.file("Dockerfile", "FROM scratch\n")
        tar.end()
        let first = try tar.gzipped()
        let zeros = try TarWriter.gzipped(of: [UInt8](repeating: 0, count: 3 << 20))
        var limits = ContextArchiveValidator.Limits()
        limits.maxExpandedSize = 2 << 20
        #expect(kind { try validate(first + zeros, limits: limits) } == .tooLarge)
        #expect(try validate(first, limits: limits).compression == .gzip)
        #expect(ContextArchiveValidator.Limits().maxExpandedSize == 4 << 30)
    }
}

extension TarWriter {
    static func gzipped(of bytes: [UInt8]) throws -> [UInt8] {
        var writer = TarWriter()
        writer.entryBytes(bytes)
        return try writer.gzipped()
    }
}

/// Entries put in front of a stored archive read, with GNU tar, as one archive with the prefix's files first.
struct ArchivePrefixTests {
    private func list(_ bytes: [UInt8], gzip: Bool) throws -> String {
        let directory = try TemporaryDirectory("prefix")
        defer { directory.remove() }
        let path = "\(directory.path)/archive"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/tar")
        process.arguments = [gzip ? "-tzvf" : "-tvf", path]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        return text
    }

    @Test(arguments: [false, true]) func prefixEntriesAndTheStoredArchiveReadAsOne(gzip: Bool) throws {
        var context = TarWriter()
        context.file("Dockerfile", "FROM scratch\n")
        context.end()
        let stored = gzip ? try context.gzipped() : context.bytes
        let secret = Array(String(repeating: "s", count: 700).utf8)
        let prefix = ArchivePrefix.entries([(name: ".buildgate-secret-b1-npmrc", contents: secret)], gzip: gzip)
        let listing = try list(prefix + stored, gzip: gzip).split(separator: "\n")
        #expect(listing.count == 2)
        #expect(listing.first?.hasPrefix("-rw------- 0/0") == true)
        #expect(listing.first?.contains(" 700 ") == true)
        #expect(listing.first?.hasSuffix(".buildgate-secret-b1-npmrc") == true)
        #expect(listing.last?.hasSuffix("Dockerfile") == true)
    }

    @Test func noFilesNoPrefix() {
        #expect(ArchivePrefix.entries([], gzip: false).isEmpty)
        #expect(ArchivePrefix.entries([], gzip: true).isEmpty)
    }
}
