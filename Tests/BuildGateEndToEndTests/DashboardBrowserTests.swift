import AsyncHTTPClient
import BuildGateTesting
import Foundation
import NIOCore
import Testing

/// Whether Debian's chromium and chromium-driver and Python's Selenium are here (scripts/test installs them).
let browserPresent =
    FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium")
    && FileManager.default.isExecutableFile(atPath: "/usr/bin/chromedriver")

/// The dashboard in a real browser: `Tests/Browser/dashboard.py` drives chromium through Selenium against a live
/// gateway with real Podman builds: sign in, a running build's log lines arriving before it ends, its status turning
/// `succeeded` without a reload, a cancel from the page, another tenant's build answering 404. Screenshots of every
/// failed step (and of the pages, always) go to `.build/dashboard-screenshots/`.
@Suite(
    .enabled(
        if: RealEngines.shouldRun && (browserPresent || RealEngines.isCI),
        "needs the real engines and chromium with chromium-driver (scripts/test installs and starts them)"),
    .timeLimit(.minutes(5)))
struct DashboardBrowserTests {
    @Test func aPersonSignsInWatchesABuildLiveCancelsAnotherAndCannotSeeAnotherTenants() async throws {
        let services = try RealServices()
        let binary = try #require(RealEngines.gatewayBinary, "BUILDGATE_TEST_BINARY is not set: run scripts/test")
        // The builds run until the browser script releases them (each polls a gate the script serves on loopback,
        // at most five minutes): what the page must show happens while they run, however loaded the machine is.
        let port = try freeLoopbackPort()
        @Sendable func gated(_ name: String, printing: Bool) -> String {
            "RUN i=0; until wget -q -O /dev/null http://127.0.0.1:\(port)/go/\(name) || [ $i -gt 600 ]; do i=$((i+1)); "
                + (printing ? "echo tick-$i; " : "") + "sleep 0.5; done"
        }
        try await services.withGateway(capacity: 2) { gateway, data in
            let running = try await gateway.submit(
                services.context(gated("watched", printing: true)), query: "image=\(services.uniqueImage("ui-watched"))"
            )
            try await gateway.waitForLog(running.id, containing: "tick-2")
            let toCancel = try await gateway.submit(
                services.context("RUN echo hold-on\n" + gated("cancel", printing: false)),
                query: "image=\(services.uniqueImage("ui-cancel"))")
            try await gateway.waitForLog(toCancel.id, containing: "hold-on")

            let created = try await ChildProcess.run(
                [
                    binary, "token", "create", "--data-dir", data.path, "--migrations", migrationsDirectory,
                    "--tenant", "other", "--name", "browser", "--scope", "admin",
                ])
            let otherToken = try #require(created.output.split(separator: "\n").last.map(String.init))
            let foreign = try await GatewayClient(baseURL: gateway.baseURL, token: otherToken).submit(
                services.context(""), query: "image=\(services.uniqueImage("ui-foreign"))")

            let artifacts = "\(repositoryRoot)/.build/dashboard-screenshots"
            let result = try await ChildProcess.run(
                ["python3", "\(repositoryRoot)/Tests/Browser/dashboard.py"],
                environment: [
                    "BUILDGATE_URL": gateway.baseURL, "BUILDGATE_TOKEN": gateway.token,
                    "BUILDGATE_RUNNING": running.id, "BUILDGATE_TO_CANCEL": toCancel.id,
                    "BUILDGATE_FOREIGN": foreign.id, "BUILDGATE_ARTIFACTS": artifacts,
                    "BUILDGATE_GATE_PORT": String(port),
                ])
            #expect(result.status == 0, "\(result.output)\n(screenshots in \(artifacts))")
            #expect(result.output.contains("6 passed, 0 failed"), "\(result.output)")
        }
    }
}

/// A build page carries at most the log's first MiB, however much the build printed.
@Suite(.enabled(if: RealEngines.shouldRun, RealEngines.skipReason), .timeLimit(.minutes(5)))
struct DashboardLongLogTests {
    @Test func aBuildThatPrintsMegabytesGetsAPageOfAtMostItsFirstMiB() async throws {
        let services = try RealServices()
        try await services.withGateway { gateway, _ in
            let build = try await gateway.waitUntilFinished(
                try await gateway.submit(
                    services.context("RUN head -c 3000000 /dev/zero | tr '\\\\0' x | fold -w 99"),
                    query: "image=\(services.uniqueImage("long-log"))"
                ).id)
            #expect(build.status == "succeeded")
            #expect(try await gateway.log(build.id).utf8.count > 3_000_000)

            var signIn = HTTPClientRequest(url: "\(gateway.baseURL)/ui/sign-in")
            signIn.method = .POST
            signIn.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
            signIn.body = .bytes(ByteBuffer(string: "token=\(gateway.token)"))
            // A sign-in answers with a redirect that carries the cookie: read it, not where it leads.
            var configuration = HTTPClient.Configuration()
            configuration.redirectConfiguration = .disallow
            let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
            defer { _ = client.shutdown() }
            let signedIn = try await client.execute(signIn, timeout: .seconds(30))
            let cookie = try #require(signedIn.headers.first(name: "Set-Cookie")?.split(separator: ";").first)
            var page = HTTPClientRequest(url: "\(gateway.baseURL)/ui/builds/\(build.id)")
            page.headers.add(name: "Cookie", value: String(cookie))
            let response = try await client.execute(page, timeout: .seconds(30))
            let html = String(buffer: try await response.body.collect(upTo: 64 << 20))
            #expect(response.status == .ok)
            #expect(html.contains("more follows in"))
            let lines = html.components(separatedBy: #"<div class="line""#).count - 1
            #expect(lines > 10_000 && lines <= 11_000, "\(lines) lines of 100 bytes on the page")
        }
    }
}
