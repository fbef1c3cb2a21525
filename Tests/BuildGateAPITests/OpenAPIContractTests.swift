import BuildGateTesting
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

/// `openapi.yaml` is the contract: valid OpenAPI 3.1, every operation served with a documented status, and the
/// JSON the server sends valid against the documented schemas (checked with openapi-spec-validator and
/// openapi-schema-validator, which `scripts/test` installs).
struct OpenAPIContractTests {
    /// Runs `scripts/openapi-check.py` and returns its exit status and standard output.
    private func check(_ arguments: [String]) throws -> (status: Int32, output: String, errors: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "\(repositoryRoot)/scripts/openapi-check.py"] + arguments
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let out = output.fileHandleForReading.readDataToEndOfFile()
        let err = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self))
    }

    private func validate(_ body: ByteBuffer, as schema: String) throws {
        let file = "\(NSTemporaryDirectory())/openapi-instance-\(UUID().uuidString).json"
        try Data(body.readableBytesView).write(to: URL(fileURLWithPath: file))
        defer { try? FileManager.default.removeItem(atPath: file) }
        let result = try check(["instance", schema, file])
        #expect(result.status == 0, "response is not a valid \(schema): \(result.errors)\n\(String(buffer: body))")
    }

    @Test func theSpecIsValidOpenAPI31() throws {
        let result = try check(["spec"])
        #expect(result.status == 0, "\(result.errors)")
        #expect(result.output.contains("valid OpenAPI 3.1"))
    }

    /// PyYAML keeps the last of two equal keys without a word: a duplicate `'429'` under `POST /v1/builds` went
    /// unnoticed. The spec is loaded with duplicates refused.
    @Test func aKeyGivenTwiceInTheSpecIsRefused() throws {
        let file = "\(NSTemporaryDirectory())/openapi-duplicate-\(UUID().uuidString).yaml"
        try Data("responses:\n  '429': {description: a}\n  '429': {description: b}\n".utf8).write(
            to: URL(fileURLWithPath: file))
        defer { try? FileManager.default.removeItem(atPath: file) }
        let result = try check(["load", file])
        #expect(result.status != 0)
        #expect(result.errors.contains("duplicate key '429'"), "\(result.errors)")
    }

    @Test func everyDocumentedOperationIsServedWithADocumentedStatusAndShape() async throws {
        let listed = try check(["operations"])
        try #require(listed.status == 0, "\(listed.errors)")
        let operations = try JSONDecoder().decode([[Operation]].self, from: Data(listed.output.utf8))
        #expect(operations.count >= 6)

        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        try await harness.application().test(.router) { client in
            let created = try await client.execute(
                uri: "/v1/builds?image=r.example.com/a:1", method: .post, headers: harness.auth,
                body: ByteBuffer(bytes: sampleContext()))
            try validate(created.body, as: "Build")
            let id = try created.decode(BuildJSON.self).id

            for operation in operations {
                guard case .text(let method) = operation[0], case .text(let path) = operation[1],
                    case .list(let statuses) = operation[2]
                else {
                    Issue.record("unexpected operation entry \(operation)")
                    continue
                }
                let uri = path.replacingOccurrences(of: "{id}", with: id).replacingOccurrences(
                    of: "{forge}", with: "github"
                )
                .replacingOccurrences(of: "{triggerId}", with: "tnothing").replacingOccurrences(
                    of: "{host}", with: "r.example.com"
                )
                .replacingOccurrences(of: "{name}", with: "npmrc")
                let response: TestResponse
                if method == "POST" && path == "/v1/builds" {
                    response = try await client.execute(
                        uri: "\(uri)?image=r.example.com/b:1", method: .post, headers: harness.auth,
                        body: ByteBuffer(bytes: sampleContext()))
                } else {
                    response = try await client.execute(
                        uri: uri, method: HTTPRequest.Method(method)!, headers: harness.auth)
                }
                #expect(
                    statuses.contains(String(response.status.code)),
                    "\(method) \(path) answered \(response.status.code)")
            }

            try validate(
                try await client.execute(uri: "/v1/builds", method: .get, headers: harness.auth).body, as: "BuildPage")
            try validate(
                try await client.execute(uri: "/v1/builds?limit=0", method: .get, headers: harness.auth).body,
                as: "Error")
            try validate(
                try await client.execute(uri: "/v1/builds/\(id)", method: .get, headers: harness.auth).body, as: "Build"
            )
            var json = harness.auth
            json[.contentType] = "application/json"
            let trigger = try await client.execute(
                uri: "/v1/triggers", method: .post, headers: json,
                body: ByteBuffer(
                    string:
                        #"{"forge":"github","repository":"o/r","secret":"0123456789abcdef","images":["r.example.com/a:{{sha}}"]}"#
                ))
            try validate(trigger.body, as: "Trigger")
            let git = try await client.execute(
                uri: "/v1/builds", method: .post, headers: json,
                body: ByteBuffer(
                    string:
                        #"{"source":{"git":{"url":"https://g.example.com/o/r.git","ref":"main"}},"images":["r.example.com/a:1"]}"#
                ))
            try validate(git.body, as: "Build")
        }
    }

    /// One element of an `operations` entry: `"GET"`, `"/path"` or `["200", …]`.
    enum Operation: Decodable, CustomStringConvertible {
        case text(String)
        case list([String])

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let text = try? container.decode(String.self) {
                self = .text(text)
            } else {
                self = .list(try container.decode([String].self))
            }
        }

        var description: String {
            switch self {
            case .text(let text): text
            case .list(let list): list.joined(separator: ",")
            }
        }
    }
}
