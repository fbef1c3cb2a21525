import Foundation
import Testing

@testable import EngineAPIDriver

struct ClassicStepsTests {
    let t0 = Date(timeIntervalSince1970: 1_000)

    @Test func podmanAndDockerStepLinesBecomeStepsTimedByTheNextOne() {
        var steps = ClassicSteps()
        let changes = [
            steps.record("STEP 1/3: FROM 127.0.0.1:5000/busybox:latest\n", at: t0),
            steps.record("Step 2/3 : RUN make\n", at: t0 + 2),
            steps.record("compiling…\n", at: t0 + 3),
            steps.record("STEP 3/3: COPY out /out\n--> Using cache 0771c09ade22\n", at: t0 + 5),
        ]
        #expect(changes == [true, true, false, true])
        steps.finish(at: t0 + 6, error: nil)
        #expect(
            steps.steps == [
                .init(name: "[1/3] FROM 127.0.0.1:5000/busybox:latest", startedAt: t0, completedAt: t0 + 2),
                .init(name: "[2/3] RUN make", startedAt: t0 + 2, completedAt: t0 + 5),
                .init(name: "[3/3] COPY out /out", startedAt: t0 + 5, completedAt: t0 + 6, cached: true),
            ])
    }

    @Test func aFailureMarksTheStepThatWasRunning() {
        var steps = ClassicSteps()
        _ = steps.record("STEP 1/2: FROM busybox\n", at: t0)
        _ = steps.record("STEP 2/2: RUN exit 3\n", at: t0 + 1)
        steps.finish(at: t0 + 2, error: "building at STEP \"RUN exit 3\": exit status 3")
        #expect(steps.steps.last?.error == "building at STEP \"RUN exit 3\": exit status 3")
        #expect(steps.steps.first?.error == nil)
    }

    /// With `target=` on a two-stage Dockerfile Podman prefixes every step with its stage; no step was recorded.
    @Test func podmansMultiStageStepsAreRecordedForEveryStage() throws {
        let url = try #require(
            Bundle.module.url(
                forResource: "Fixtures/podman-4.3-compat-build-multistage-target", withExtension: "jsonl"))
        var decoder = EngineStreamDecoder()
        var steps = ClassicSteps()
        for case .stream(let text) in decoder.decode(Array(try Data(contentsOf: url))) + decoder.finish() {
            _ = steps.record(text, at: t0)
        }
        #expect(
            steps.steps.map(\.name) == [
                "[stage 1/2 1/2] FROM 127.0.0.1:43159/busybox:latest AS base",
                "[stage 1/2 2/2] RUN echo base-stage",
                "[stage 2/2 1/2] FROM 401998b3f8fcdfb15aa950df0c3a00540d52ea03113d8276354379c98deb693a AS final",
                "[stage 2/2 2/2] RUN echo final-stage",
            ])
    }

    @Test func theRealCapturedStreamsHaveTheirSteps() throws {
        let url = try #require(
            Bundle.module.url(forResource: "Fixtures/podman-4.3-compat-build-success", withExtension: "jsonl"))
        var decoder = EngineStreamDecoder()
        var steps = ClassicSteps()
        for case .stream(let text) in decoder.decode(Array(try Data(contentsOf: url))) + decoder.finish() {
            _ = steps.record(text, at: t0)
        }
        #expect(steps.steps.count >= 2)
        #expect(steps.steps.first?.name.hasPrefix("[1/") == true)
    }
}
