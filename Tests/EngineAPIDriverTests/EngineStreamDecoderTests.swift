import Foundation
import Testing

@testable import EngineAPIDriver

struct EngineStreamDecoderTests {
    private func fixture(_ name: String) throws -> [UInt8] {
        let url = try #require(Bundle.module.url(forResource: "Fixtures/\(name)", withExtension: nil))
        return Array(try Data(contentsOf: url))
    }

    /// Decodes a whole stream fed in `chunk`-byte pieces, as it arrives from the socket.
    private func decode(_ bytes: [UInt8], chunk: Int) -> [EngineMessage] {
        var decoder = EngineStreamDecoder()
        var messages: [EngineMessage] = []
        var offset = 0
        while offset < bytes.count {
            let end = min(bytes.count, offset + chunk)
            messages += decoder.decode(bytes[offset..<end])
            offset = end
        }
        return messages + decoder.finish()
    }

    @Test(arguments: [1, 13, 4096])
    func aSuccessfulPodmanBuildIsTextAndAnImageID(chunk: Int) throws {
        let messages = decode(try fixture("podman-4.3-compat-build-success.jsonl"), chunk: chunk)
        let text = messages.compactMap { if case .stream(let text) = $0 { text } else { nil } }.joined()
        #expect(text.hasPrefix("STEP 1/3: FROM localhost/busybox:latest\nSTEP 2/3: RUN echo building-step && sleep 1"))
        #expect(text.contains("building-step\n"))
        #expect(messages.contains(.imageID("sha256:4eee05d2b08462f99913fcf2d73ab0a22471dbaa431fdddc47848cf3be0f1a6e")))
        #expect(!messages.contains { if case .error = $0 { true } else { false } })
    }

    @Test func aFailedRunIsAnErrorWithTheEnginesMessage() throws {
        let messages = decode(try fixture("podman-4.3-libpod-build-failure.jsonl"), chunk: 64)
        #expect(messages.last == .error("building at STEP \"RUN echo about-to-fail && exit 3\": exit status 3\n"))
        #expect(messages.contains(.stream("about-to-fail\n")))
    }

    @Test func aRuntimeErrorKeepsTheOutputBeforeIt() throws {
        let messages = decode(try fixture("podman-4.3-compat-build-runtime-error.jsonl"), chunk: 100)
        guard case .error(let message) = try #require(messages.last) else {
            Issue.record("the stream's last message is not an error")
            return
        }
        #expect(message.contains("while running runtime: exit status 1"))
        #expect(
            messages.contains {
                if case .stream(let text) = $0 { text.contains("cgroups in hybrid mode") } else { false }
            })
    }

    @Test func dockerdClassicFailureIsAnError() throws {
        let messages = decode(try fixture("dockerd-20.10-classic-build-failure.jsonl"), chunk: 50)
        #expect(messages.contains { if case .error = $0 { true } else { false } })
    }

    @Test func aPushStreamYieldsTheManifestDigest() throws {
        let messages = decode(try fixture("classic-push-success.jsonl"), chunk: 17)
        let digests = messages.compactMap { message -> String? in
            guard case .status(let text, _, _) = message else { return nil }
            return EngineStreamDecoder.pushedDigest(in: text)
        }
        #expect(digests.count == 1)
        #expect(digests.first?.hasPrefix("sha256:") == true && digests.first?.count == 71)
        #expect(
            EngineStreamDecoder.pushedDigest(
                in: "1: digest: sha256:04895987b9ddf14a2c63ec8dc6f9be61cf411e4fd08bbba150b30104203489ab size: 749")
                == "sha256:04895987b9ddf14a2c63ec8dc6f9be61cf411e4fd08bbba150b30104203489ab")
        #expect(EngineStreamDecoder.pushedDigest(in: "Pushed") == nil)
    }

    @Test func pullProgressIsMarkedSoItCanBeLeftOutOfTheLog() {
        var decoder = EngineStreamDecoder()
        let messages = decoder.decode(
            Array(
                #"""
                {"status":"Pulling fs layer","progressDetail":{},"id":"02d16010ee66"}
                {"status":"Downloading","progressDetail":{"current":36445,"total":1083810},"progress":"[=>   ]  36.45kB/1.084MB","id":"02d16010ee66"}
                {"status":"Pull complete","progressDetail":{},"id":"02d16010ee66"}

                """#.utf8))
        #expect(
            messages == [
                .status("Pulling fs layer", id: "02d16010ee66", isProgress: false),
                .status("Downloading", id: "02d16010ee66", isProgress: true),
                .status("Pull complete", id: "02d16010ee66", isProgress: false),
            ])
    }

    @Test func nonJSONLinesAreKeptAsText() {
        var decoder = EngineStreamDecoder()
        #expect(
            decoder.decode(Array("plain words\r\n{\"stream\":\"x\"}\n".utf8)) == [
                .stream("plain words\n"), .stream("x"),
            ])
        #expect(decoder.decode(Array("{\"stream\":\"tail\"}".utf8)).isEmpty)
        #expect(decoder.finish() == [.stream("tail")])
    }

    @Test func registryHeadersAreBase64URLJSON() throws {
        let header = EngineAPIDriver.registryAuth(.init(username: "u", password: "p?>"), for: "r.example:5000")
        #expect(!header.contains("+") && !header.contains("/"))
        let standard = header.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        let json =
            try JSONSerialization.jsonObject(with: try #require(Data(base64Encoded: standard))) as? [String: String]
        #expect(json == ["username": "u", "password": "p?>", "serveraddress": "r.example:5000"])
        #expect(EngineAPIDriver.registryAuth(nil, for: "x") == Data("{}".utf8).base64EncodedString())
    }
}
