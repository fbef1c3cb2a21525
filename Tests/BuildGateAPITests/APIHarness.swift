import AsyncHTTPClient
import BuildGateAPI
import BuildGateCore
import BuildGateStore
import BuildGateTesting
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Testing

/// The HTTP API over the real SQLite store, file context store and file log store in a temp directory, with no
/// dispatcher (builds stay queued unless a test moves them).
struct APIHarness {
    let directory: TemporaryDirectory
    let store: SQLiteBuildStore
    let logs: FileBuildLogStore
    let contexts: FileContextStore
    let tokens: SQLiteAccessTokenStore
    let triggers: SQLiteTriggerStore
    let registryCredentials: SQLiteRegistryCredentialStore
    let secrets: SQLiteBuildSecretStore
    let events: SQLiteBuildEventFeed
    /// The (imagined) builder pool: features for the checks at intake, state for `GET /v1/builders`.
    let pool: BuilderPool
    let queueReasons = QueueReasons()
    /// What the data directory's free space reads as (nil: unknown, uploads never refused for space).
    let freeDiskBytes: Int64?
    let database: BuildGateDatabase
    let limits: BuildGateAPILimits
    /// `Authorization` for an admin token of the `default` tenant.
    let auth: HTTPFields

    init(
        limits: BuildGateAPILimits = .init(),
        builders: [BuilderEndpoint] = [
            BuilderEndpoint(name: "podman-1", engine: .podman, address: .unix(path: "/run/podman.sock"))
        ],
        freeDiskBytes: Int64? = nil
    ) async throws {
        self.freeDiskBytes = freeDiskBytes
        directory = try TemporaryDirectory("api")
        database = try BuildGateDatabase(path: "\(directory.path)/db.sqlite", migrationsDirectory: migrationsDirectory)
        store = SQLiteBuildStore(database: database)
        tokens = SQLiteAccessTokenStore(database: database)
        let box = SecretBox(key: .init(size: .bits256))
        triggers = SQLiteTriggerStore(database: database, box: box)
        registryCredentials = SQLiteRegistryCredentialStore(database: database, box: box)
        secrets = SQLiteBuildSecretStore(database: database, box: box)
        events = try SQLiteBuildEventFeed(database: database)
        pool = .healthy(builders)
        logs = try FileBuildLogStore(dataDirectory: directory.path)
        contexts = try FileContextStore(dataDirectory: directory.path)
        self.limits = limits
        auth = [
            .authorization:
                "Bearer \(try await tokens.createToken(tenant: .default, name: "test admin", scopes: [.admin], buildID: nil, expiresAt: nil, at: Date()).token)"
        ]
    }

    /// `Authorization` for a new token of `tenant` with `scopes`.
    func auth(tenant: String, scopes: Set<Scope>) async throws -> HTTPFields {
        let token = try await tokens.createToken(
            tenant: TenantID(tenant)!, name: "test", scopes: scopes, buildID: nil, expiresAt: nil, at: Date()
        ).token
        return [.authorization: "Bearer \(token)"]
    }

    /// `auth` plus more fields.
    func auth(adding fields: HTTPFields) -> HTTPFields {
        var all = auth
        all.append(contentsOf: fields)
        return all
    }

    func application(timeouts: RequestTimeouts = .init()) -> some ApplicationProtocol {
        Application(
            router: router(), server: buildGateHTTPServer(timeouts: timeouts),
            configuration: .init(address: .hostname("127.0.0.1", port: 0)))
    }

    /// The gateway's router over this harness's stores.
    func router() -> Router<BuildGateRequestContext> {
        buildRouter(
            context: BuildGateRequestContext.self,
            dependencies: BuildGateAPIDependencies(
                repository: store, logs: logs, contexts: contexts, tokens: tokens, triggers: triggers,
                registryCredentials: registryCredentials, tenantLimits: SQLiteTenantLimitsStore(database: database),
                secrets: secrets, pool: pool, queueReasons: queueReasons, events: events,
                freeDiskBytes: { [freeDiskBytes] in freeDiskBytes },
                metrics: { "# TYPE buildgate_up gauge\nbuildgate_up 1\n" },
                onQueued: {}),
            limits: limits, logger: Logger(label: "test"))
    }

    /// Rows in the build table.
    func buildCount() async throws -> Int {
        try await store.list(tenant: .default, status: nil, limit: 200, after: nil).count
    }

    /// Files under tmp/ and contexts/ (uploads in flight and stored contexts).
    var contextFiles: [String] { directory.files(under: "tmp") + directory.files(under: "contexts") }
}

extension TestResponse {
    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(body.readableBytesView))
    }

    var text: String { String(buffer: body) }
}
