import BuildGateCore
import Foundation
import Testing

struct TriggerPlannerTests {
    let sha = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"

    func trigger(_ configure: (inout TriggerSettings) -> Void = { _ in }) -> Trigger {
        var settings = TriggerSettings(images: ["registry.example.com/app:{{branch}}-{{shortSha}}"])
        configure(&settings)
        return Trigger(
            id: "t1", tenant: .default, forge: "github", repository: "Owner/Repo", settings: settings, createdAt: Date()
        )
    }

    func event(_ kind: SourceEvent.Kind, ref: String, message: String? = "change") -> SourceEvent {
        SourceEvent(
            kind: kind, repository: "owner/repo", cloneURL: "https://git.example.com/owner/repo.git", ref: ref,
            commit: sha, headCommitMessage: message)
    }

    @Test func aMatchingPushBuildsThatCommitWithTheRenderedImage() throws {
        let decision = TriggerPlanner.plan(
            event(.branch("feature/login"), ref: "refs/heads/feature/login"), for: trigger(), buildID: .generate(),
            defaultTimeout: 600)
        guard case .build(let request, let source) = decision else { Issue.record("\(decision)"); return }
        #expect(request.images.map(\.description) == ["registry.example.com/app:feature-login-6113728"])
        #expect(
            source
                == (try GitSource(
                    url: "https://git.example.com/owner/repo.git", ref: "refs/heads/feature/login", commit: sha)))
        #expect(request.timeoutSeconds == 600)
    }

    @Test func filtersEventsAndSkipCIAreReasons() {
        let onlyMain = trigger { $0.branches = ["main", "release/*"] }
        #expect(
            TriggerPlanner.plan(
                event(.branch("dev"), ref: "refs/heads/dev"), for: onlyMain, buildID: .generate(), defaultTimeout: 1)
                == .skip(reason: "branch dev does not match main, release/*"))
        guard
            case .build = TriggerPlanner.plan(
                event(.branch("release/2"), ref: "refs/heads/release/2"), for: onlyMain, buildID: .generate(),
                defaultTimeout: 1)
        else {
            Issue.record("release/2 should build")
            return
        }
        #expect(
            TriggerPlanner.plan(
                event(.branch("release/2/x"), ref: "refs/heads/release/2/x"), for: onlyMain, buildID: .generate(),
                defaultTimeout: 1)
                == .skip(reason: "branch release/2/x does not match main, release/*"))
        let skip = TriggerPlanner.plan(
            event(.branch("main"), ref: "refs/heads/main", message: "docs [skip ci]"), for: trigger(),
            buildID: .generate(), defaultTimeout: 1)
        #expect(skip == .skip(reason: "the head commit asks to skip CI"))
        let pr = TriggerPlanner.plan(
            event(.pullRequest(number: 3, sourceBranch: "x"), ref: "refs/pull/3/head"), for: trigger(),
            buildID: .generate(), defaultTimeout: 1)
        #expect(pr == .skip(reason: "pull request events are not enabled"))
        let tagsOff = trigger { $0.events = [.push] }
        #expect(
            TriggerPlanner.plan(
                event(.tag("v1"), ref: "refs/tags/v1"), for: tagsOff, buildID: .generate(), defaultTimeout: 1)
                == .skip(reason: "tag events are not enabled"))
        let otherRepo = SourceEvent(
            kind: .branch("main"), repository: "someone/else", cloneURL: "https://x.example/a.git",
            ref: "refs/heads/main", commit: sha, headCommitMessage: nil)
        guard case .skip = TriggerPlanner.plan(otherRepo, for: trigger(), buildID: .generate(), defaultTimeout: 1)
        else {
            Issue.record("another repository's push was built")
            return
        }
    }

    @Test func templatesRenderEveryPlaceholderTagSafe() {
        let values = ["branch": "feat/ü x", "sha": sha, "shortSha": "6113728", "tag": "v1.2", "buildId": "b1"]
        #expect(
            TriggerPlanner.render("r.io/a:{{branch}}-{{tag}}-{{sha}}-{{buildId}}-{{nope}}", values)
                == "r.io/a:feat---x-v1.2-\(sha)-b1-")
        // Braces around and inside placeholders: known names are filled first, then every `{{…}}` left is dropped.
        let cases = [
            "{{{shortSha}}}": "{6113728}", "{{a{b}}": "", "x{{open": "x{{open", "{{shortSha}x}}": "{{shortSha}x}}",
            "{{}}": "", "{{shortSha}}{{shortSha}}": "61137286113728", "{{{{tag}}}}": "", "": "",
            "a}}b{{": "a}}b{{", "{{ü}}ü": "ü",
        ]
        for (template, rendered) in cases {
            #expect(TriggerPlanner.render(template, values) == rendered, "\(template)")
        }
    }

    @Test func globsMatchWithinAndAcrossSegments() {
        #expect(Glob.matches("release/*", "release/1.2"))
        #expect(!Glob.matches("release/*", "release/1/2"))
        #expect(Glob.matches("**", "any/thing/at/all"))
        #expect(Glob.matches("v?.*", "v1.0"))
        #expect(!Glob.matches("main", "mainline"))
        #expect(Glob.matches("*.example.com", "git.example.com"))
    }

    @Test func gitSourcesAcceptOnlyAllowedSchemesAndNoCredentialsInTheURL() throws {
        _ = try GitSource(url: "https://github.com/o/r.git", ref: "main", commit: nil)
        _ = try GitSource(url: "git@github.com:o/r.git", ref: nil, commit: sha)
        _ = try GitSource(url: "git://127.0.0.1:9418/r.git", ref: "main", commit: nil)
        for bad in [
            "http://github.com/o/r.git", "file:///etc", "https://user:pw@github.com/o/r.git", "ext::sh -c id", "-u/x",
        ] {
            #expect(throws: BuildGateError.self, "\(bad)") { try GitSource(url: bad, ref: "main", commit: nil) }
        }
        #expect(throws: BuildGateError.self) {
            try GitSource(url: "https://h/r.git", ref: "--upload-pack=x", commit: nil)
        }
        #expect(throws: BuildGateError.self) { try GitSource(url: "https://h/r.git", ref: nil, commit: "abc") }
        #expect(GitSource.isHostAllowed("https://git.internal/r.git", hosts: ["*.example.com"]) == false)
        #expect(GitSource.isHostAllowed("git@git.example.com:r.git", hosts: ["*.example.com"]))
    }
}
