import Foundation
import Testing

@testable import BuildKitProgress

/// `buildctl --progress=rawjson`, as captured from a real buildctl v0.24 against a real buildkitd, rendered by the
/// same renderer as dockerd's BuildKit progress and compared with buildctl's own plain output of the same build.
struct BuildKitRawJSONTests {
    private func fixture(_ name: String) throws -> String {
        let url = try #require(Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: nil))
        return try String(contentsOf: url, encoding: .utf8)
    }

    /// Renders a rawjson capture; non-JSON lines (buildctl's error text after a failure) are passed through.
    private func render(_ capture: String) -> String {
        var renderer = BuildKitPlainRenderer()
        var text = ""
        for line in capture.split(separator: "\n") {
            if let status = BuildKitStatus(rawJSON: Array(line.utf8)) {
                text += renderer.render(status)
            } else {
                text += line + "\n"
            }
        }
        return text + renderer.finish()
    }

    @Test func aSuccessfulBuildRendersLikeBuildctlsPlainOutput() throws {
        // The two captures are separate runs of the same build: step order and timings differ, names do not.
        let rendered = render(try fixture("build-rawjson.jsonl")).split(separator: "\n").map(String.init)
        let plain = try fixture("build-plain.txt").split(separator: "\n").map(String.init)
        func stepNames(_ lines: [String]) -> Set<String> {
            Set(
                lines.compactMap { line in
                    guard line.range(of: #"^#\d+ \["#, options: .regularExpression) != nil else { return nil }
                    return String(line.drop { $0 != " " }.dropFirst())
                })
        }
        #expect(
            stepNames(plain).isSubset(of: stepNames(rendered)),
            "missing: \(stepNames(plain).subtracting(stepNames(rendered)))")
        // The RUN step's output, under the RUN step's number, with its elapsed time.
        let run = try #require(rendered.first { $0.hasSuffix("[2/3] RUN echo hello") })
        let number = try #require(run.split(separator: " ").first)
        #expect(
            rendered.contains { $0.range(of: "^\(number) \\d+\\.\\d{3} hello$", options: .regularExpression) != nil })
        // Every step announced is also finished, once.
        let announcedNumbers = rendered.filter { $0.range(of: #"^#\d+ \S"#, options: .regularExpression) != nil }
            .map { String($0.split(separator: " ")[0]) }
        let finishedNumbers = rendered.filter {
            $0.range(of: #"^#\d+ (DONE \d+\.\ds|CACHED)$"#, options: .regularExpression) != nil
        }
        .map { String($0.split(separator: " ")[0]) }
        #expect(Set(announcedNumbers) == Set(finishedNumbers))
        #expect(finishedNumbers.count == Set(finishedNumbers).count)
    }

    @Test func aFailedBuildShowsTheOutputTheStepErrorAndBuildctlsTrailingText() throws {
        let rendered = render(try fixture("build-fail-rawjson.jsonl"))
        #expect(rendered.contains("about-to-fail"))
        #expect(
            rendered.range(
                of:
                    #"#\d+ ERROR: process "/bin/sh -c echo about-to-fail && exit 3" did not complete successfully: exit code: 3"#,
                options: .regularExpression) != nil)
        #expect(rendered.contains("error: failed to solve:"))
    }

    @Test func anHTTPContextBuildRendersLikeItsPlainCapture() throws {
        // A context buildkitd downloaded itself: the remote-context step, RUN, COPY and the push. (The plain capture
        // is another run, in which RUN was cached.)
        let rendered = render(try fixture("build-httpctx-rawjson.jsonl")).split(separator: "\n").map(String.init)
        let plain = try fixture("build-httpctx-plain.txt").split(separator: "\n").map(String.init)
        func names(_ lines: [String]) -> Set<String> {
            Set(
                lines.compactMap { line in
                    guard line.range(of: #"^#\d+ (\[|copy|exporting to image)"#, options: .regularExpression) != nil
                    else { return nil }
                    return String(line.drop { $0 != " " }.dropFirst())
                })
        }
        #expect(names(plain).isSubset(of: names(rendered)), "missing: \(names(plain).subtracting(names(rendered)))")
        let run = try #require(rendered.first { $0.hasSuffix("[2/3] RUN echo hello") })
        let number = try #require(run.split(separator: " ").first)
        #expect(
            rendered.contains { $0.range(of: "^\(number) \\d+\\.\\d{3} hello$", options: .regularExpression) != nil })
        #expect(rendered.last?.hasPrefix("#7 DONE ") == true)
    }

    @Test func nanosecondTimesParse() throws {
        let date = try #require(BuildKitStatus.date("2026-11-27T11:28:07.178571956Z"))
        #expect(abs(date.timeIntervalSince1970 - 1_795_778_887.178571956) < 0.000_01)
        #expect(BuildKitStatus.date("not a time") == nil)
    }
}
