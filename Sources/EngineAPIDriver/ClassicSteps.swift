import BuildGateCore
import Foundation

/// Per-step timings for the classic builders, which report no times: each `STEP n/m: …` (Podman) or
/// `Step n/m : …` (dockerd's classic builder) line starts a step when the gateway reads it, and the next step, or
/// the end of the build, completes it. "Using cache" marks the current step cached; a failure marks the last one.
struct ClassicSteps {
    private(set) var steps: [BuildStep] = []

    /// Takes in one piece of stream text; returns true when the steps changed.
    mutating func record(_ text: String, at date: Date) -> Bool {
        var changed = false
        // Split as bytes: every line of build output passes here, and only lines starting with `S`, `[`, `-` or a
        // space can matter (splitting the `String` itself breaks it into grapheme clusters first).
        for bytes in text.utf8.split(separator: UInt8(ascii: "\n")) {
            guard let first = bytes.first, Self.mayStartStepLine.contains(first) else { continue }
            let line = Substring(bytes.last == UInt8(ascii: "\r") ? bytes.dropLast() : bytes)
            if let name = Self.stepName(line) {
                completeCurrent(at: date)
                steps.append(BuildStep(name: name, startedAt: date))
                changed = true
            } else if line.hasPrefix("--> Using cache") || line.hasPrefix(" ---> Using cache"),
                let last = steps.indices.last, !steps[last].cached
            {
                steps[last].cached = true
                changed = true
            }
        }
        return changed
    }

    /// The build ended: the open step completes, with the build's error if it failed.
    mutating func finish(at date: Date, error: String?) {
        if let error, let last = steps.indices.last, steps[last].completedAt == nil { steps[last].error = error }
        completeCurrent(at: date)
    }

    private mutating func completeCurrent(at date: Date) {
        if let last = steps.indices.last, steps[last].completedAt == nil { steps[last].completedAt = date }
    }

    private static let mayStartStepLine: Set<UInt8> = [
        UInt8(ascii: "S"), UInt8(ascii: "["), UInt8(ascii: "-"), UInt8(ascii: " "),
    ]

    /// `STEP 2/3: RUN make` (Podman) or `Step 2/3 : RUN make` (dockerd) → `[2/3] RUN make`, BuildKit's naming.
    /// Podman prefixes the steps of a multi-stage build with the stage, `[1/2] STEP 2/3: RUN make` →
    /// `[stage 1/2 2/3] RUN make`. Every line of build output passes here: the prefix check keeps the regex (built
    /// per call) off the hot path.
    static func stepName(_ line: Substring) -> String? {
        guard line.hasPrefix("STEP ") || line.hasPrefix("Step ") || line.hasPrefix("["),
            let match = line.firstMatch(of: /^(?:\[(\d+\/\d+)\] )?(?:STEP|Step) (\d+\/\d+) ?: (.*)$/)
        else { return nil }
        let stage = match.1.map { "stage \($0) " } ?? ""
        return "[\(stage)\(match.2)] \(match.3)"
    }
}
