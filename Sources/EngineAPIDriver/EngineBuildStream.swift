import BuildGateCore
import BuildKitProgress
import Foundation

/// What a `/build` stream's messages mean for the build: its log output, its steps and its failure.
///
/// The build output of one read from the engine becomes one `.output` piece: a build printing tens of thousands of
/// lines a second arrives in a few hundred reads, so the gateway appends to the log and wakes the log's followers
/// once per read instead of once per line (Podman sends a message per few lines). Order is kept: a steps report or
/// any other output ends the piece before it.
package struct EngineBuildStream {
    private var renderer = BuildKitPlainRenderer()
    private var buildKitSteps = BuildKitSteps()
    private var classicSteps = ClassicSteps()
    /// The engine's error message, once it reported one: the build failed, though the HTTP status was 200.
    package private(set) var failure: String?

    package init() {}

    /// The events one read's `messages` make, in order, with consecutive build output joined into one piece.
    package mutating func events(of messages: [EngineMessage], at date: Date) -> [BuildEvent] {
        var events: [BuildEvent] = []
        var output = ""
        func flush() {
            if !output.isEmpty { events.append(.output(output)) }
            output = ""
        }
        for message in messages {
            switch message {
            case .stream(let text):
                output += text
                if classicSteps.record(text, at: date) {
                    flush()
                    events.append(.steps(classicSteps.steps))
                }
            case .buildKitTrace(let aux):
                // dockerd's BuildKit mode: render the protobuf progress as BuildKit's plain output.
                guard let status = BuildKitStatus(base64: aux) else { continue }
                output += renderer.render(status)
                if buildKitSteps.record(status) {
                    flush()
                    events.append(.steps(buildKitSteps.steps))
                }
            case .error(let text):
                failure = text
                output += text.hasSuffix("\n") ? "ERROR: \(text)" : "ERROR: \(text)\n"
            case .status(let text, let id, let isProgress):
                // Pull progress bars ("Downloading [=>   ] 1MB/9MB") would flood the log; the milestones stay.
                guard !isProgress else { continue }
                output += id.map { "\($0): \(text)\n" } ?? "\(text)\n"
            case .imageID, .other:
                continue
            }
        }
        flush()
        return events
    }

    /// The stream ended: what BuildKit's renderer still held, and the steps with the open one completed.
    package mutating func finish(at date: Date) -> [BuildEvent] {
        var events: [BuildEvent] = []
        let settled = renderer.finish()
        if !settled.isEmpty { events.append(.output(settled)) }
        classicSteps.finish(at: date, error: failure)
        let steps = buildKitSteps.steps.isEmpty ? classicSteps.steps : buildKitSteps.steps
        if !steps.isEmpty { events.append(.steps(steps)) }
        return events
    }
}
