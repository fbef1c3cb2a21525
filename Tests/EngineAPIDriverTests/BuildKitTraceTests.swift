import Foundation
import Testing

@testable import BuildKitProgress
@testable import EngineAPIDriver

/// dockerd's BuildKit progress: the protobuf decoder against the DERIVED decodings, the renderer against batect's
/// expected output, and real dockerd 20.10 captures.
struct BuildKitTraceTests {
    private func lines(_ name: String) throws -> [String] {
        let url = try #require(Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: nil))
        return try String(contentsOf: url, encoding: .utf8).split(separator: "\n").map(String.init)
    }

    private func traces(_ name: String) throws -> [BuildKitStatus] {
        var decoder = EngineStreamDecoder()
        let messages = decoder.decode(Array(try lines(name).joined(separator: "\n").utf8) + [10])
        return try messages.compactMap { message in
            guard case .buildKitTrace(let aux) = message else { return nil }
            return try #require(BuildKitStatus(base64: aux), "aux does not decode")
        }
    }

    @Test(arguments: ["buildkit-success", "buildkit-failure"])
    func everyTraceDecodesToItsDerivedSolveStatus(name: String) throws {
        let decoded = try traces("\(name).jsonl")
        let derived = try lines("\(name).DERIVED-solvestatus.jsonl")
        #expect(decoded.count == derived.count)
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        for (status, line) in zip(decoded, derived) {
            struct Expected: Decodable {
                struct Vertex: Decodable {
                    var digest: String; var name: String?; var cached: Bool?; var started: String?;
                    var completed: String?; var error: String?
                }
                struct Status: Decodable { var id: String; var vertex: String; var current: Int64?; var total: Int64? }
                struct Log: Decodable { var vertex: String; var data: String }
                var vertexes: [Vertex]?
                var statuses: [Status]?
                var logs: [Log]?
            }
            let expected = try JSONDecoder().decode(Expected.self, from: Data(line.utf8))
            #expect(status.vertexes.map(\.digest) == (expected.vertexes ?? []).map(\.digest))
            #expect(status.vertexes.map(\.name) == (expected.vertexes ?? []).map { $0.name ?? "" })
            #expect(status.vertexes.map(\.cached) == (expected.vertexes ?? []).map { $0.cached ?? false })
            #expect(status.vertexes.map(\.error) == (expected.vertexes ?? []).map(\.error))
            for (vertex, want) in zip(status.vertexes, expected.vertexes ?? []) {
                if let started = want.started.flatMap({ formatter.date(from: String($0.prefix(23)) + "Z") }) {
                    #expect(abs((vertex.started ?? .distantPast).timeIntervalSince(started)) < 0.001)
                } else {
                    #expect(vertex.started == nil)
                }
            }
            #expect(status.statuses.map(\.id) == (expected.statuses ?? []).map(\.id))
            #expect(status.statuses.map(\.current) == (expected.statuses ?? []).map { $0.current ?? 0 })
            #expect(status.logs.map { Data($0.message).base64EncodedString() } == (expected.logs ?? []).map(\.data))
        }
    }

    @Test func theRenderedProgressMatchesBuildKitsPlainOutput() throws {
        var renderer = BuildKitPlainRenderer()
        let text = try traces("buildkit-success.jsonl").map { renderer.render($0) }.joined() + renderer.finish()
        // batect's expected text, without blank lines and without the durations it does not print.
        let expected = try lines("buildkit-success.expected.md")
            .drop { $0 != "## Rendered progress output (verbatim, margin '|' stripped)" }
            .dropFirst(2).prefix { $0 != "```" }.filter { !$0.isEmpty }
        let rendered = text.split(separator: "\n").map {
            $0.replacingOccurrences(of: #" DONE \d+\.\ds$"#, with: " DONE", options: .regularExpression)
        }
        #expect(rendered == Array(expected))
    }

    @Test func aRealDockerdBuildKitFailureRendersTheRunOutputAndTheError() throws {
        var decoder = EngineStreamDecoder()
        let messages = decoder.decode(
            Array(try lines("dockerd-20.10-buildkit-build-failure.jsonl").joined(separator: "\n").utf8) + [10])
        var renderer = BuildKitPlainRenderer()
        var text = ""
        var failure: String?
        for message in messages {
            switch message {
            case .buildKitTrace(let aux): text += renderer.render(try #require(BuildKitStatus(base64: aux)))
            case .error(let message): failure = message
            default: break
            }
        }
        text += renderer.finish()
        #expect(text.contains("] RUN "))
        #expect(text.contains("ERROR: "))
        #expect(failure != nil)
        let success = decoder.decode(
            Array(try lines("dockerd-20.10-buildkit-build-success.jsonl").joined(separator: "\n").utf8) + [10])
        #expect(success.contains { if case .buildKitTrace = $0 { true } else { false } })
    }
}
