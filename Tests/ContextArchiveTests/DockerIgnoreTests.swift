import BuildGateTesting
import ContextArchive
import Foundation
import Testing

/// `.dockerignore` against the examples in Docker's documentation ("Dockerfile reference", `.dockerignore` file)
/// and moby/patternmatcher's own cases.
struct DockerIgnoreTests {
    func excluded(_ text: String, _ paths: [String]) throws -> [String] {
        let ignore = try DockerIgnore(text)
        return paths.filter(ignore.excludes)
    }

    @Test func theDocumentedExampleExcludesWhatItSays() throws {
        let text = """
            # comment
            */temp*
            */*/temp*
            temp?
            """
        #expect(
            try excluded(
                text,
                [
                    "somedir/temporary.txt", "somedir/temp", "somedir/temp/inner.txt", "somedir/subdir/temporary.txt",
                    "tempa", "tempb", "temp", "tempab", "temporary.txt", "a/b/c/temp", "comment",
                ])
                == [
                    "somedir/temporary.txt", "somedir/temp", "somedir/temp/inner.txt", "somedir/subdir/temporary.txt",
                    "tempa", "tempb",
                ])
    }

    @Test func doubleStarMatchesAnyNumberOfDirectoriesIncludingNone() throws {
        #expect(
            try excluded("**/*.go", ["a.go", "x/a.go", "x/y/z/a.go", "a.gox", "go/a.txt"]) == [
                "a.go", "x/a.go", "x/y/z/a.go",
            ])
        #expect(try excluded("x/**", ["x", "x/a", "x/y/z", "xa"]) == ["x/a", "x/y/z"])
        #expect(try excluded("x/**/y", ["x/y", "x/a/y", "x/a/b/y", "y"]) == ["x/y", "x/a/y", "x/a/b/y"])
    }

    @Test func exceptionsAndOrderDecide() throws {
        #expect(try excluded("*.md\n!README.md", ["a.md", "README.md", "docs/a.md"]) == ["a.md"])
        // All markdown files but README files other than README-secret.md.
        #expect(
            try excluded("*.md\n!README*.md\nREADME-secret.md", ["a.md", "README.md", "README-secret.md"])
                == ["a.md", "README-secret.md"])
        // Every README file, README-secret.md included: the last matching line decides.
        #expect(
            try excluded("*.md\nREADME-secret.md\n!README*.md", ["a.md", "README.md", "README-secret.md"]) == ["a.md"])
    }

    @Test func aMatchedDirectoryExcludesWhatIsBelowItUnlessAnExceptionBringsItBack() throws {
        let ignore = try DockerIgnore("node_modules\nbuild/\n!build/keep.txt")
        #expect(ignore.excludes("node_modules/x/y.js"))
        #expect(ignore.excludes("build/out.o"))
        #expect(!ignore.excludes("build/keep.txt"))
        #expect(!ignore.mayIncludeBelow("node_modules"))
        #expect(ignore.mayIncludeBelow("build"))
    }

    @Test func patternsAreCleanedAndRootedAtTheContext() throws {
        #expect(
            try excluded("/foo\n./bar//baz/\n  spaced  \n", ["foo", "bar/baz", "spaced", "x/foo"]) == [
                "foo", "bar/baz", "spaced",
            ])
        #expect(
            try excluded("a\\*b\nfile?.txt\n[ab].c", ["a*b", "axb", "file1.txt", "file/.txt", "a.c", "c.c"]) == [
                "a*b", "file1.txt", "a.c",
            ])
        #expect(throws: DockerIgnore.InvalidPattern.self) { try DockerIgnore("[unterminated") }
        #expect(try excluded("", ["a"]).isEmpty)
    }
}

/// The tar the client sends: the gateway's own validator takes it, GNU tar reads it back as written, and the same
/// entries give the same bytes.
struct TarEntryWriterTests {
    func archive(_ entries: [(TarEntryWriter.Entry, [UInt8])]) -> [UInt8] {
        var bytes: [UInt8] = []
        for (entry, contents) in entries {
            bytes += TarEntryWriter.header(for: entry)
            bytes += contents
            bytes += TarEntryWriter.padding(after: Int64(contents.count))
        }
        return bytes + TarEntryWriter.end
    }

    @Test func longNamesLinksAndModesReadBackWithGNUTar() async throws {
        let long = (1...30).map { "directory\($0)" }.joined(separator: "/") + "/file.txt"
        let entries: [(TarEntryWriter.Entry, [UInt8])] = [
            (
                .init(path: "Dockerfile", kind: .file(size: 11), mode: 0o644, modified: 1_700_000_000),
                Array("FROM x\nRUN\n".utf8)
            ),
            (.init(path: "bin", kind: .directory, mode: 0o755, modified: 1_700_000_001), []),
            (
                .init(path: "bin/run.sh", kind: .file(size: 3), mode: 0o100755, modified: 1_700_000_002),
                Array("hi\n".utf8)
            ),
            (.init(path: "link", kind: .symbolicLink(target: "bin/run.sh"), mode: 0o777, modified: 1_700_000_003), []),
            (.init(path: long, kind: .file(size: 0), mode: 0o600, modified: 1_700_000_004), []),
        ]
        let bytes = archive(entries)
        #expect(bytes == archive(entries))
        #expect(bytes.count % 512 == 0)

        var validator = ContextArchiveValidator(dockerfile: "Dockerfile")
        try bytes.withUnsafeBytes { try validator.consume($0) }
        _ = try validator.finish()

        let directory = try TemporaryDirectory("tar")
        defer { directory.remove() }
        try Data(bytes).write(to: URL(fileURLWithPath: "\(directory.path)/context.tar"))
        let listed = try await ChildProcess.run(["tar", "-tvf", "\(directory.path)/context.tar", "--numeric-owner"])
        #expect(listed.status == 0, "\(listed.output)")
        let lines = listed.output.split(separator: "\n").map(String.init)
        #expect(lines.count == 5)
        #expect(lines[0].hasPrefix("-rw-r--r-- 0/0") && lines[0].hasSuffix(" Dockerfile"))
        #expect(lines[1].hasPrefix("drwxr-xr-x 0/0") && lines[1].hasSuffix(" bin/"))
        #expect(lines[2].hasPrefix("-rwxr-xr-x 0/0") && lines[2].hasSuffix(" bin/run.sh"))
        #expect(lines[3].hasPrefix("lrwxrwxrwx 0/0") && lines[3].hasSuffix(" link -> bin/run.sh"))
        #expect(lines[4].hasSuffix(" " + long))
        #expect(lines[0].contains("2023-11-14 22:13"), "\(lines[0])")
    }

    @Test func theDeflaterGivesTheSameBytesEveryTimeAndGunzipReadsThem() async throws {
        let input = Array((0..<300_000).map { UInt8(truncatingIfNeeded: $0 * 7 / 5) })
        func compressed() throws -> [UInt8] {
            let deflater = try GzipDeflater()
            var out: [UInt8] = []
            for piece in stride(from: 0, to: input.count, by: 70_000) {
                try input[piece..<min(piece + 70_000, input.count)].withUnsafeBytes { chunk in
                    try deflater.deflate(chunk) { out += $0 }
                }
            }
            try deflater.deflate(UnsafeRawBufferPointer(start: nil, count: 0), finish: true) { out += $0 }
            return out
        }
        let first = try compressed()
        #expect(first == (try compressed()))
        #expect(first[4..<8] == [0, 0, 0, 0], "no modification time in the gzip header")
        let directory = try TemporaryDirectory("gzip")
        defer { directory.remove() }
        try Data(first).write(to: URL(fileURLWithPath: "\(directory.path)/x.gz"))
        let unzipped = try await ChildProcess.run(["sh", "-c", "gunzip -c \(directory.path)/x.gz | sha256sum"])
        let expected = try await ChildProcess.run(["sha256sum"], input: Data(input))
        #expect(unzipped.status == 0)
        #expect(unzipped.output.prefix(64) == expected.output.prefix(64))
    }
}
