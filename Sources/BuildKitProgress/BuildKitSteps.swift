import BuildGateCore
import Foundation

/// Per-step timings from BuildKit's progress: one `BuildStep` per vertex, with the start, end, cached flag and error
/// BuildKit reports for it, in execution order (by start time; steps not started yet last, as they appeared).
/// buildkitd announces vertexes in graph order, not execution order: `[3/3] COPY` came before `[1/3] FROM`.
package struct BuildKitSteps {
    private var order: [String] = []
    private var byDigest: [String: BuildStep] = [:]

    package init() {}

    package var steps: [BuildStep] {
        let appeared = order.compactMap { byDigest[$0] }.enumerated()
        return appeared.sorted { first, second in
            switch (first.element.startedAt, second.element.startedAt) {
            case (let a?, let b?) where a != b: a < b
            case (.some, nil): true
            case (nil, .some): false
            default: first.offset < second.offset
            }
        }.map(\.element)
    }

    /// Takes in one status update; returns true when a step appeared, started, ended or changed its outcome
    /// (not for log lines or byte counters), so a caller can store steps only when they change.
    package mutating func record(_ status: BuildKitStatus) -> Bool {
        var changed = false
        for vertex in status.vertexes {
            var step =
                byDigest[vertex.digest]
                ?? {
                    order.append(vertex.digest)
                    changed = true
                    return BuildStep(name: vertex.name)
                }()
            let before = step
            if !vertex.name.isEmpty { step.name = vertex.name }
            step.startedAt = step.startedAt ?? vertex.started
            step.completedAt = vertex.completed ?? step.completedAt
            step.cached = step.cached || vertex.cached
            if let error = vertex.error, !error.isEmpty { step.error = error }
            byDigest[vertex.digest] = step
            changed = changed || step != before
        }
        return changed
    }
}
