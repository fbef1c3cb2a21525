import BuildGateCore
import Foundation
import Testing

@testable import EngineAPIDriver

struct EngineBuildStreamTests {
    private func messages(_ name: String) throws -> [EngineMessage] {
        let url = try #require(Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: nil))
        var decoder = EngineStreamDecoder()
        return decoder.decode(Array(try Data(contentsOf: url))) + decoder.finish()
    }

    private func outputs(_ events: [BuildEvent]) -> [String] {
        events.compactMap { if case .output(let text) = $0 { text } else { nil } }
    }

    @Test func theOutputOfOneReadIsOnePieceBetweenStepReports() throws {
        let messages = try messages("podman-4.3-compat-build-success.jsonl")
        var stream = EngineBuildStream()
        let events = stream.events(of: messages, at: Date(timeIntervalSince1970: 0))

        // Nothing lost or reordered: the pieces are the messages' text.
        let text = messages.compactMap { if case .stream(let text) = $0 { text } else { nil } }.joined()
        #expect(outputs(events).joined() == text)
        // 11 stream messages, 3 steps: one piece before each steps report and one after the last.
        let kinds = events.map { if case .steps(let steps) = $0 { "steps \(steps.count)" } else { "output" } }
        #expect(kinds == ["output", "steps 1", "output", "steps 2", "output", "steps 3", "output"])
        // Each steps report follows the piece that holds its step's line.
        let pieces = outputs(events)
        #expect(pieces[0].hasSuffix("STEP 1/3: FROM localhost/busybox:latest\n"))
        #expect(pieces[2].hasSuffix("STEP 3/3: COPY . /src\n"))
        #expect(stream.failure == nil)
    }

    @Test func manyLinesInOneReadAreOnePiece() {
        var stream = EngineBuildStream()
        let lines = (0..<5000).map { EngineMessage.stream("line-\($0)\n") }
        let events = stream.events(of: lines, at: Date())
        #expect(outputs(events) == [(0..<5000).map { "line-\($0)\n" }.joined()])
        #expect(stream.events(of: [], at: Date()).isEmpty)
    }

    @Test func errorsAndStatusLinesStayInTheirPlaceInTheOutput() throws {
        var stream = EngineBuildStream()
        let events = stream.events(
            of: [
                .stream("before\n"), .status("Pulling fs layer", id: "abc", isProgress: false),
                .status("Downloading", id: "abc", isProgress: true), .error("exit status 1"), .stream("after\n"),
            ], at: Date())
        #expect(outputs(events) == ["before\nabc: Pulling fs layer\nERROR: exit status 1\nafter\n"])
        #expect(stream.failure == "exit status 1")
    }

    @Test func dockerdsBuildKitTraceRendersAsBeforeWithStepsAfterTheirOutput() throws {
        let messages = try messages("dockerd-20.10-buildkit-build-success.jsonl")
        var stream = EngineBuildStream()
        // Fed message by message (one read each) and all at once: the same text.
        var oneByOne = EngineBuildStream()
        let separate = messages.flatMap { oneByOne.events(of: [$0], at: Date()) } + oneByOne.finish(at: Date())
        let together = stream.events(of: messages, at: Date()) + stream.finish(at: Date())
        #expect(outputs(together).joined() == outputs(separate).joined())
        #expect(!outputs(together).joined().isEmpty)
        #expect(outputs(together).count < outputs(separate).count)
        guard case .steps(let steps) = together.last else {
            Issue.record("the stream's end reports the steps")
            return
        }
        #expect(!steps.isEmpty && steps.allSatisfy { $0.completedAt != nil })
    }
}
