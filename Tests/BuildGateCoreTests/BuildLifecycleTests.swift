import BuildGateCore
import Testing

struct BuildLifecycleTests {
    @Test func aBuildMovesFromQueuedThroughRunningToItsResult() {
        #expect(BuildLifecycle.transition(from: .queued, on: .claimed) == .moveTo(.starting))
        #expect(BuildLifecycle.transition(from: .starting, on: .engineAccepted) == .moveTo(.running))
        #expect(
            BuildLifecycle.transition(from: .running, on: .driverFinished(.succeeded([]), timedOut: false))
                == .finish(.succeeded, reason: nil, message: nil))
        #expect(
            BuildLifecycle.transition(from: .running, on: .driverFinished(.failed(.buildFailed, message: "exit 3"), timedOut: false))
                == .finish(.failed, reason: .buildFailed, message: "exit 3"))
    }

    @Test func aDriverStoppedByTheDeadlineEndsTimedOutWhateverItSays() {
        #expect(
            BuildLifecycle.transition(from: .running, on: .driverFinished(.failed(.cancelled, message: "stopped"), timedOut: true))
                == .finish(.timedOut, reason: .timedOut, message: "stopped"))
        #expect(
            BuildLifecycle.transition(from: .running, on: .driverFinished(.failed(.cancelled, message: "stopped"), timedOut: false))
                == .finish(.cancelled, reason: .cancelled, message: "stopped"))
    }

    @Test func cancellingAQueuedBuildEndsItButARunningOneIsOnlyMarked() {
        guard case .finish(.cancelled, .cancelled, _) = BuildLifecycle.transition(from: .queued, on: .cancelRequested) else {
            Issue.record("a queued build was not cancelled at once")
            return
        }
        #expect(BuildLifecycle.transition(from: .running, on: .cancelRequested) == .markCancelRequested)
        #expect(BuildLifecycle.transition(from: .starting, on: .cancelRequested) == .markCancelRequested)
        for status in BuildStatus.allCases where status.isTerminal {
            #expect(BuildLifecycle.transition(from: status, on: .cancelRequested) == .ignore)
        }
    }

    @Test func anExpiredLeaseRequeuesWhatNeverStartedAndInterruptsWhatRan() {
        #expect(BuildLifecycle.transition(from: .starting, on: .leaseExpired(interruptedDispatches: 0)) == .moveTo(.queued))
        guard case .finish(.failed, .interrupted, _) = BuildLifecycle.transition(from: .running, on: .leaseExpired(interruptedDispatches: 0)) else {
            Issue.record("a running build with an expired lease was not interrupted")
            return
        }
        #expect(BuildLifecycle.transition(from: .succeeded, on: .leaseExpired(interruptedDispatches: 0)) == .ignore)
        #expect(BuildLifecycle.transition(from: .queued, on: .leaseExpired(interruptedDispatches: 0)) == .ignore)
    }

    @Test func aBuildWhoseDispatchTheGatewayDiedInTwiceIsGivenUp() {
        let limit = BuildLifecycle.maxInterruptedDispatches
        #expect(BuildLifecycle.transition(from: .starting, on: .leaseExpired(interruptedDispatches: limit - 2)) == .moveTo(.queued))
        guard case .finish(.failed, .dispatchAbandoned, let message?) = BuildLifecycle.transition(
            from: .starting, on: .leaseExpired(interruptedDispatches: limit - 1))
        else {
            Issue.record("a build the gateway died dispatching \(limit) times went back to the queue")
            return
        }
        #expect(message.contains("\(limit) times"))
        guard case .finish(.failed, .interrupted, _) = BuildLifecycle.transition(
            from: .running, on: .leaseExpired(interruptedDispatches: limit))
        else {
            Issue.record("a running build is interrupted whatever its dispatch count")
            return
        }
    }

    @Test func terminalStatesAcceptNoFurtherResult() {
        for status in BuildStatus.allCases where status.isTerminal {
            #expect(BuildLifecycle.transition(from: status, on: .driverFinished(.succeeded([]), timedOut: false)) == .ignore)
            #expect(BuildLifecycle.transition(from: status, on: .claimed) == .ignore)
        }
    }
}

struct DomainValueTests {
    @Test(arguments: [
        ("127.0.0.1:5000/app:1", "127.0.0.1:5000", "app", "1"),
        ("registry.example.com/team/app", "registry.example.com", "team/app", "latest"),
        ("localhost/a_b.c-d:v1.2-rc_3", "localhost", "a_b.c-d", "v1.2-rc_3"),
    ])
    func imageReferencesParse(text: String, registry: String, repository: String, tag: String) throws {
        let reference = try ImageReference(parsing: text)
        #expect(reference.registry == registry)
        #expect(reference.repository == repository)
        #expect(reference.tag == tag)
    }

    @Test(arguments: ["app:1", "team/app", "Reg.example.com/App:1", "r.example.com/app@sha256:abc", "r.example.com/", "r.example.com/app:", "r.example.com/-app", "r.example.com:99999/app", ""])
    func badImageReferencesAreRefused(text: String) {
        #expect(throws: BuildGateError.self) { try ImageReference(parsing: text) }
    }

    @Test func buildIDsAreTimeOrderedAndOnlyTheirOwnShapeParses() {
        let early = BuildID.generate(at: .init(timeIntervalSince1970: 1_700_000_000))
        let late = BuildID.generate(at: .init(timeIntervalSince1970: 1_700_000_001))
        #expect(early < late)
        #expect(BuildID(early.rawValue) == early)
        #expect(BuildID("../../etc/passwd") == nil)
        #expect(BuildID("b" + String(repeating: "0", count: 25)) == nil)
    }

    @Test func platformsParse() throws {
        #expect(try Platform(parsing: "linux/arm/v7").description == "linux/arm/v7")
        #expect(throws: BuildGateError.self) { try Platform(parsing: "linux") }
        #expect(throws: BuildGateError.self) { try Platform(parsing: "linux/amd64/v1/x") }
    }
}

struct SecretRedactorTests {
    @Test func secretValuesAndTheirLinesAreMaskedShortOnesAreNot() {
        let redactor = SecretRedactor([
            SecretValue(Array("token-123456".utf8)),
            SecretValue(Array("-----BEGIN KEY-----\nAAAABBBBCCCC\n-----END KEY-----\n".utf8)),
            SecretValue(Array("ab".utf8)),
        ])
        #expect(redactor.redact("npm token token-123456 used\n") == "npm token **** used\n")
        #expect(redactor.redact("#5 0.120 AAAABBBBCCCC\n") == "#5 0.120 ****\n")
        #expect(redactor.redact("a cab and a tab\n") == "a cab and a tab\n")
        #expect(SecretRedactor([]).redact("unchanged") == "unchanged")
    }
}
