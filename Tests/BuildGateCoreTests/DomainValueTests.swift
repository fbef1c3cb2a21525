import BuildGateCore
import Foundation
import Testing

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

    @Test(arguments: [
        "app:1", "team/app", "Reg.example.com/App:1", "r.example.com/app@sha256:abc", "r.example.com/",
        "r.example.com/app:", "r.example.com/-app", "r.example.com:99999/app", "",
    ])
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

    @Test func loopbackRegistriesAreRecognisedWhateverTheirPort() throws {
        for loopback in ["localhost", "localhost:5000", "LOCALHOST:1", "127.0.0.1:5000", "127.1.2.3", "[::1]:5000"] {
            #expect(ImageReference.isLoopback(registry: loopback), "\(loopback)")
        }
        for remote in [
            "registry.example.com", "128.0.0.1:5000", "10.0.0.1:5000", "localhost.example.com:5000",
            "[::2]:5000", "127.0.0.1.example.com", "127.0.0.256",
        ] {
            #expect(!ImageReference.isLoopback(registry: remote), "\(remote)")
        }
        #expect(try ImageReference(parsing: "127.0.0.1:5000/app:1").isLoopbackRegistry)
    }
}

struct APITimestampTests {
    @Test func theAPIsTimesReadBackToTheMillisecondAndOtherTextIsNoTime() {
        let date = Date(timeIntervalSince1970: 1_796_412_629.815)
        let text = date.formatted(APITimestamp.style)
        #expect(text == "2026-12-04T19:30:29.815Z")
        #expect(abs((APITimestamp.date(text)?.timeIntervalSince1970 ?? 0) - date.timeIntervalSince1970) < 0.001)
        #expect(APITimestamp.date("yesterday") == nil && APITimestamp.date(nil) == nil)
    }
}
