import BuildGateCore
import BuildGateStore
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

    /// What `openapi-check.py contract` reads out of the spec.
    struct Contract: Decodable {
        struct Operation: Decodable {
            var method: String
            var path: String
            /// Status → header name → whether the header is required.
            var responses: [String: [String: Bool]]
        }
        var operations: [Operation]
        var errorCodes: [String]
        var everyResponse: [String]

        /// The operation whose path template matches `path` (`/v1/builds/b123/logs` → `/v1/builds/{id}/logs`).
        func operation(_ method: String, _ path: String) -> Operation? {
            let parts = path.split(separator: "?")[0].split(separator: "/")
            return operations.first { operation in
                let template = operation.path.split(separator: "/")
                return operation.method == method && template.count == parts.count
                    && zip(template, parts).allSatisfy { $0.hasPrefix("{") || $0 == $1 }
            }
        }
    }

    private func contract() throws -> Contract {
        let listed = try check(["contract"])
        try #require(listed.status == 0, "\(listed.errors)")
        return try JSONDecoder().decode(Contract.self, from: Data(listed.output.utf8))
    }

    /// Headers whose presence the spec states response by response; the server may send none of them undocumented.
    static let documentedHeaders = [
        "Location", "Retry-After", "WWW-Authenticate", "Accept-Ranges", "Content-Range", "X-BuildGate-Redelivery",
        "X-Build-Status", "X-Log-Complete", "X-Next-Offset",
    ]

    /// The response is one the spec documents for `method path`: a listed status, every required header there, no
    /// header of `documentedHeaders` it does not list, and the headers every response carries.
    private func expectDocumented(
        _ response: TestResponse, _ method: String, _ path: String, in contract: Contract,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        for name in contract.everyResponse {
            #expect(
                response.headers[HTTPField.Name(name)!] != nil, "\(method) \(path) came without \(name)",
                sourceLocation: sourceLocation)
        }
        let status = String(response.status.code)
        guard let operation = contract.operation(method, path), let documented = operation.responses[status]
        else {
            Issue.record(
                "\(method) \(path) answered \(status), which the spec does not list", sourceLocation: sourceLocation)
            return
        }
        for (name, required) in documented where required {
            #expect(
                response.headers[HTTPField.Name(name)!] != nil,
                "\(method) \(operation.path) \(status) came without its required \(name)",
                sourceLocation: sourceLocation)
        }
        for name in Self.documentedHeaders where response.headers[HTTPField.Name(name)!] != nil {
            #expect(
                documented[name] != nil,
                "\(method) \(operation.path) \(status) sends \(name), which the spec does not list",
                sourceLocation: sourceLocation)
        }
    }

    @Test func everyRouteIsDocumentedAndEveryDocumentedPathIsRouted() async throws {
        let contract = try contract()
        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        func shape(_ path: String) -> String {
            "/"
                + path.split(separator: "/").map { $0.hasPrefix("{") || $0.hasPrefix(":") ? "{}" : String($0) }
                .joined(separator: "/")
        }
        let routed = Set(harness.router().routes.map { "\($0.method) \(shape($0.path.description))" })
        let documented = Set(contract.operations.map { "\($0.method) \(shape($0.path))" })
        #expect(routed.subtracting(documented).isEmpty, "routed but not in openapi.yaml")
        #expect(documented.subtracting(routed).isEmpty, "in openapi.yaml but not routed")
        #expect(routed.count >= 20)
    }

    /// Every code the server can put in `{"error":{"code"}}` is in the spec's enumeration: the codes are read out
    /// of the sources (`Code("…")` and `code: "…"`), so a new one cannot slip by.
    @Test func theErrorCodeEnumerationListsEveryCodeTheServerEmits() throws {
        let contract = try contract()
        let sources =
            FileManager.default.enumerator(atPath: "\(repositoryRoot)/Sources")?.compactMap { $0 as? String }
            .filter { $0.hasSuffix(".swift") } ?? []
        let pattern = try Regex(#"(?:Code\(|code: |: )"([a-z][A-Za-z]+)"\)?"#)
        var emitted = Set<String>()
        for file in sources where file.hasPrefix("BuildGateCore/BuildGateError") || file.hasPrefix("BuildGateAPI/") {
            let text = try String(contentsOfFile: "\(repositoryRoot)/Sources/\(file)", encoding: .utf8)
            for line in text.split(separator: "\n")
            where line.contains("Code(\"") || line.contains("code: \"") || line.contains("HTTPError")
                || file.hasSuffix("APIError.swift")
            {
                for match in line.matches(of: pattern) { emitted.insert(String(match.output[1].substring ?? "")) }
            }
        }
        // What the text pass picks up besides codes (APIError.swift's own literals).
        emitted.subtract(["close", "Bearer", "bytes"])
        #expect(
            emitted.isSuperset(of: ["invalidParameter", "methodNotAllowed", "httpError", "shuttingDown", "notReady"]))
        #expect(emitted.subtracting(contract.errorCodes).isEmpty, "emitted but not in the Error schema's enum")
        #expect(Set(contract.errorCodes).subtracting(emitted).isEmpty, "in the enum but never emitted")
    }

    @Test func everyDocumentedOperationIsServedWithADocumentedStatusHeadersAndShape() async throws {
        let contract = try contract()
        #expect(contract.operations.count >= 20)
        #expect(contract.everyResponse == ["X-Request-Id"])

        let harness = try await APIHarness()
        defer { harness.directory.remove() }
        try await harness.application().test(.router) { client in
            let created = try await client.execute(
                uri: "/v1/builds?image=r.example.com/a:1", method: .post, headers: harness.auth,
                body: ByteBuffer(bytes: sampleContext()))
            try validate(created.body, as: "Build")
            let id = try created.decode(BuildJSON.self).id

            for operation in contract.operations {
                let uri = operation.path.replacingOccurrences(of: "{id}", with: id)
                    .replacingOccurrences(of: "{forge}", with: "github")
                    .replacingOccurrences(of: "{triggerId}", with: "tnothing")
                    .replacingOccurrences(of: "{host}", with: "r.example.com")
                    .replacingOccurrences(of: "{name}", with: "npmrc")
                    .replacingOccurrences(of: "{digest}", with: "sha256:" + String(repeating: "0", count: 64))
                let response: TestResponse
                if operation.path == "/v1/events" {
                    // An event stream lasts until the client leaves: asked with a bad id, it answers at once.
                    response = try await client.execute(uri: "\(uri)?after=x", method: .get, headers: harness.auth)
                } else if operation.method == "POST" && operation.path == "/v1/builds" {
                    response = try await client.execute(
                        uri: "\(uri)?image=r.example.com/b:1", method: .post, headers: harness.auth,
                        body: ByteBuffer(bytes: sampleContext()))
                } else {
                    response = try await client.execute(
                        uri: uri, method: HTTPRequest.Method(operation.method)!, headers: harness.auth)
                }
                expectDocumented(response, operation.method, uri, in: contract)
            }

            // The headers that only some answers carry, each brought about once.
            let anonymous = try await client.execute(uri: "/v1/builds", method: .get)
            #expect(anonymous.status == .unauthorized)
            expectDocumented(anonymous, "GET", "/v1/builds", in: contract)
            let logs = try await client.execute(uri: "/v1/builds/\(id)/logs", method: .get, headers: harness.auth)
            #expect(logs.headers[.acceptRanges] == "bytes")
            expectDocumented(logs, "GET", "/v1/builds/\(id)/logs", in: contract)
            let range = try await client.execute(
                uri: "/v1/builds/\(id)/logs", method: .get, headers: harness.auth + [.range: "bytes=0-"])
            #expect(range.status == .partialContent)
            expectDocumented(range, "GET", "/v1/builds/\(id)/logs", in: contract)
            let cancelled = try await client.execute(
                uri: "/v1/builds/\(id)/cancel", method: .post, headers: harness.auth)
            #expect(cancelled.headers[.location] == "/v1/builds/\(id)")
            expectDocumented(cancelled, "POST", "/v1/builds/\(id)/cancel", in: contract)

            var json = harness.auth
            json[.contentType] = "application/json"
            let trigger = try await client.execute(
                uri: "/v1/triggers", method: .post, headers: json,
                body: ByteBuffer(
                    string:
                        #"{"forge":"github","repository":"Codertocat/Hello-World","secret":"It's a Secret to Everybody","images":["r.example.com/a:{{sha}}"]}"#
                ))
            try validate(trigger.body, as: "Trigger")
            expectDocumented(trigger, "POST", "/v1/triggers", in: contract)
            let (headers, body) = try WebhooksAPITests.fixture("github/push-branch-created")
            for _ in 1...2 {
                let delivery = try await client.execute(
                    uri: "/v1/webhooks/github", method: .post, headers: headers, body: body)
                expectDocumented(delivery, "POST", "/v1/webhooks/github", in: contract)
            }
            let redelivery = try await client.execute(
                uri: "/v1/webhooks/github", method: .post, headers: headers, body: body)
            #expect(redelivery.headers[HTTPField.Name("X-BuildGate-Redelivery")!] == "true")

            // A tenant allowed one request a minute: its second is refused.
            let limitedTenant = try #require(TenantID("limited"))
            try await SQLiteTenantLimitsStore(database: harness.database).setLimits(
                TenantLimits(maxRunningBuilds: nil, maxQueuedBuilds: nil, requestsPerMinute: 1), for: limitedTenant,
                at: Date())
            let limitedAuth = try await harness.auth(tenant: "limited", scopes: [.admin])
            _ = try await client.execute(uri: "/v1/builders", method: .get, headers: limitedAuth)
            let tooMany = try await client.execute(uri: "/v1/builders", method: .get, headers: limitedAuth)
            #expect(tooMany.status == .tooManyRequests)
            expectDocumented(tooMany, "GET", "/v1/builders", in: contract)

            try validate(
                try await client.execute(uri: "/v1/builds", method: .get, headers: harness.auth).body, as: "BuildPage")
            try validate(
                try await client.execute(uri: "/v1/builds?limit=0", method: .get, headers: harness.auth).body,
                as: "Error")
            try validate(
                try await client.execute(uri: "/v1/builds/\(id)", method: .get, headers: harness.auth).body, as: "Build"
            )
            let git = try await client.execute(
                uri: "/v1/builds", method: .post, headers: json,
                body: ByteBuffer(
                    string:
                        #"{"source":{"git":{"url":"https://g.example.com/o/r.git","ref":"main"}},"images":["r.example.com/a:1"]}"#
                ))
            try validate(git.body, as: "Build")
        }
    }
}
