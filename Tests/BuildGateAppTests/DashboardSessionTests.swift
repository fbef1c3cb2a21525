import BuildGateAPI
import BuildGateApp
import BuildGateTesting
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Testing

@testable import BuildGateDashboard

/// The dashboard's session as the composition root wires it: the sealed cookie and its attributes, CSRF on every
/// form that changes something, and the cookie honoured by the API for reading only.
struct DashboardSessionTests {
    func application(publicURL: String? = nil) async throws -> (some ApplicationProtocol, String, TemporaryDirectory) {
        let directory = try TemporaryDirectory("dashboard")
        var configuration = try BuildGateConfiguration.resolve([], environment: [:])
        configuration.dataDirectory = directory.path
        configuration.migrationsDirectory = migrationsDirectory
        configuration.publicURL = publicURL
        configuration.builders = [
            try BuildGateConfiguration.parseBuilder("podman=unix://\(directory.path)/none.sock", index: 0)
        ]
        let app = try await buildApplication(configuration, logger: Logger(label: "test"))
        let token = try String(contentsOfFile: "\(directory.path)/admin-token", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        return (app, token, directory)
    }

    func form(_ fields: [String: String]) -> ByteBuffer {
        ByteBuffer(
            string: fields.map {
                "\($0.key)=\($0.value.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")"
            }
            .joined(separator: "&"))
    }

    @Test func signInSetsASealedStrictCookieAndFormsNeedTheSessionsCSRFToken() async throws {
        let (app, token, directory) = try await application()
        defer { directory.remove() }
        try await app.test(.router) { client in
            let formType: HTTPFields = [.contentType: "application/x-www-form-urlencoded"]
            let refused = try await client.execute(
                uri: "/ui/sign-in", method: .post, headers: formType, body: form(["token": "bgt_nope"]))
            #expect(refused.status == .found && refused.headers[.location]?.contains("/ui/sign-in?error=") == true)
            #expect(refused.headers[.setCookie] == nil)
            let said = try await client.execute(uri: try #require(refused.headers[.location]), method: .get)
            #expect(String(buffer: said.body).contains(#"role="alert">that token is unknown, revoked or expired<"#))
            let fresh = try await client.execute(uri: "/ui/sign-in", method: .get)
            #expect(!String(buffer: fresh.body).contains(#"role="alert""#), "no error, no alert")

            let signedIn = try await client.execute(
                uri: "/ui/sign-in", method: .post, headers: formType, body: form(["token": token]))
            #expect(signedIn.status == .found && signedIn.headers[.location] == "/ui/builds")
            let setCookie = try #require(signedIn.headers[.setCookie])
            #expect(
                setCookie.contains("HttpOnly") && setCookie.contains("SameSite=Strict") && !setCookie.contains("Secure")
            )
            #expect(!setCookie.contains(token), "the token is sealed, not in the cookie in clear")
            let cookie: HTTPFields = [.cookie: String(setCookie.prefix { $0 != ";" })]

            let page = try await client.execute(uri: "/ui/builds", method: .get, headers: cookie)
            #expect(page.status == .ok && String(buffer: page.body).contains("<h1>Builds</h1>"))
            let csrf = try #require(
                String(buffer: page.body).firstMatch(of: /name="csrf" value="([^"]+)"/).map { String($0.1) })

            // The API reads with the cookie, but nothing that changes state takes it.
            #expect(try await client.execute(uri: "/v1/builds", method: .get, headers: cookie).status == .ok)
            #expect(
                try await client.execute(
                    uri: "/v1/builds/b00000000000000000000000000/cancel", method: .post, headers: cookie
                )
                .status == .unauthorized)

            // A form without the session's CSRF token is refused, whatever its cookie.
            for fields in [[:], ["csrf": "forged"]] {
                let forged = try await client.execute(
                    uri: "/ui/sign-out", method: .post, headers: cookie + formType, body: form(fields))
                #expect(forged.status == .forbidden)
            }
            let signedOut = try await client.execute(
                uri: "/ui/sign-out", method: .post, headers: cookie + formType, body: form(["csrf": csrf]))
            #expect(signedOut.status == .found && signedOut.headers[.setCookie]?.contains("Max-Age=0") == true)

            #expect(try await client.execute(uri: "/ui/builds", method: .get).headers[.location] == "/ui/sign-in")
        }
    }

    @Test func theCookieIsSecureBehindAnHTTPSPublicURL() async throws {
        let (app, token, directory) = try await application(publicURL: "https://builds.example.com")
        defer { directory.remove() }
        try await app.test(.router) { client in
            let signedIn = try await client.execute(
                uri: "/ui/sign-in", method: .post, headers: [.contentType: "application/x-www-form-urlencoded"],
                body: form(["token": token]))
            #expect(signedIn.headers[.setCookie]?.hasSuffix("; Secure") == true)
        }
    }
}

/// Build output as the dashboard shows it.
struct AnsiHTMLTests {
    @Test func coloursAndBoldBecomeClassesTextIsEscapedAndEveryLineHasAnAnchor() {
        let html = AnsiHTML.lines(
            "plain <b>&\n\u{1B}[1;31mred bold\u{1B}[0m after\n\u{1B}[92mbright\u{1B}[39m\u{1B}[K x\n")
        #expect(html.contains(##"<div class="line" id="L1"><a class="number" href="#L1">1</a>"##))
        #expect(html.contains("plain &lt;b&gt;&amp;"))
        #expect(html.contains(#"<span class="ansi-bold ansi-fg1">red bold</span> after"#))
        #expect(html.contains(#"<span class="ansi-fg10">bright</span> x"#), "\(html)")
        #expect(html.contains(#"id="L3""#) && !html.contains(#"id="L4""#))
    }
}

/// What the templates get of an API answer.
struct DashboardJSONTests {
    @Test func nullsAreDroppedSoThatTemplateSectionsStayClosed() throws {
        let json = Dashboard<BuildGateRequestContext>.json(
            ByteBuffer(string: #"{"reason":null,"images":[null,{"digest":null,"reference":"r/a:1"}],"n":1}"#))
        let object = try #require(json as? [String: Any])
        #expect(object["reason"] == nil)
        #expect((object["images"] as? [[String: Any]])?.map { $0.keys.sorted() } == [["reference"]])
        #expect(object["n"] as? Int == 1)
    }
}
