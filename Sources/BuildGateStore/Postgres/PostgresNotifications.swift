import BuildGateCore
import Foundation
import Logging
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// The gateway's PostgreSQL channels, LISTENed on one pooled connection each and handed to subscribers: how a
/// replica learns, at the other's commit, that a build was queued or changed status (`buildgate_events`) or that
/// a log it does not write grew (`buildgate_logs`).
///
/// A lost connection is reopened (after a second, then up to 30); subscribers are then told `nil`, since what was
/// notified meanwhile is lost and they must look for themselves.
package final class PostgresNotifications: Service, Sendable {
    package static let events = "buildgate_events"
    package static let logs = "buildgate_logs"

    private let database: BuildGatePostgres
    /// This gateway's name in the payloads it sends, so it can ignore its own.
    package let replica = UUID().uuidString.lowercased()
    /// Logs appended here since the last NOTIFY, and the signal that some are waiting.
    private let changedLogs = Mutex<Set<BuildID>>([])
    private let logsChanged: (stream: AsyncStream<Void>, continuation: AsyncStream<Void>.Continuation)
    private let subscribers = Mutex<[String: [@Sendable (String?) -> Void]]>([:])
    /// Channels whose LISTEN is in place (for tests that must not notify before anyone listens).
    private let listening = Mutex<Set<String>>([])

    package init(database: BuildGatePostgres) {
        self.database = database
        logsChanged = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    /// Shares a log store across gateways: its appends and finishes here are announced on `buildgate_logs`, and
    /// those announced by other gateways wake its followers here (`changedElsewhere`).
    package func shareLogs(of store: FileBuildLogStore) {
        store.announceChanges { [self] id in
            changedLogs.withLock { _ = $0.insert(id) }
            logsChanged.continuation.yield()
        }
        subscribe(Self.logs) { [replica] payload in
            guard let payload else { return }
            let parts = payload.split(separator: " ")
            guard parts.count == 2, parts[0] != replica, let id = BuildID(String(parts[1])) else { return }
            store.changedElsewhere(id)
        }
    }

    /// Sends what `shareLogs` collected: one statement per burst, however many appends it holds (while it is on the
    /// wire, the next burst gathers).
    private func announceLogChanges() async {
        for await _ in logsChanged.stream {
            let ids = changedLogs.withLock { changed in
                defer { changed.removeAll() }
                return changed
            }
            guard !ids.isEmpty else { continue }
            let payloads = ids.map { "\(replica) \($0.rawValue)" }
            do {
                try await database.client.query(
                    "SELECT pg_notify(\(Self.logs), payload) FROM unnest(\(payloads)::text[]) AS payload",
                    logger: database.logger)
            } catch {
                // Followers elsewhere still find the bytes at their next poll (their long-poll timeout).
                database.logger.warning(
                    "announcing log changes failed", metadata: ["buildgate.error": "\(error)"])
            }
        }
    }

    /// Calls `handler` with each payload sent on `channel` (and with nil after a reconnection). Subscribe before
    /// `run`; handlers run on the listening task and must return quickly.
    package func subscribe(_ channel: String, _ handler: @escaping @Sendable (String?) -> Void) {
        subscribers.withLock { $0[channel, default: []].append(handler) }
    }

    /// Whether `channel` is being listened on now.
    package func isListening(_ channel: String) -> Bool { listening.withLock { $0.contains(channel) } }

    package func run() async throws {
        let channels = subscribers.withLock { Array($0.keys) }
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                for channel in channels {
                    group.addTask { await self.listen(channel) }
                }
                group.addTask { await self.announceLogChanges() }
            }
        } onGracefulShutdown: {
            self.logsChanged.continuation.finish()
        }
    }

    private func listen(_ channel: String) async {
        var backoff = Duration.seconds(1)
        var first = true
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                try await database.client.withConnection { connection in
                    try await connection.listen(on: channel) { notifications in
                        self.listening.withLock { _ = $0.insert(channel) }
                        backoff = .seconds(1)
                        if !first { self.deliver(nil, on: channel) }
                        first = false
                        try await cancelWhenGracefulShutdown {
                            for try await notification in notifications {
                                self.deliver(notification.payload, on: channel)
                            }
                        }
                    }
                }
            } catch is CancellationError {
                break
            } catch {
                if Task.isCancelled || Task.isShuttingDownGracefully { break }
                database.logger.warning(
                    "listening for notifications failed; retrying",
                    metadata: ["buildgate.channel": "\(channel)", "buildgate.error": "\(error)"])
            }
            listening.withLock { _ = $0.remove(channel) }
            first = false
            try? await Task.sleep(for: backoff)
            backoff = min(backoff * 2, .seconds(30))
        }
        listening.withLock { _ = $0.remove(channel) }
    }

    private func deliver(_ payload: String?, on channel: String) {
        for handler in subscribers.withLock({ $0[channel] ?? [] }) { handler(payload) }
    }
}

/// `BuildEventFeed` over PostgreSQL's `buildEvent` table: readers are woken by the NOTIFY the `build_event` trigger
/// sends with each event's sequence, whichever gateway committed it.
package final class PostgresBuildEventFeed: BuildEventFeed {
    private let database: BuildGatePostgres
    private let waiters: SequenceWaiters

    package init(database: BuildGatePostgres, notifications: PostgresNotifications) async throws {
        self.database = database
        let seen: Int64? = try await database.rows("SELECT max(sequence) AS newest FROM buildEvent").first?.value(
            "newest")
        let waiters = SequenceWaiters(seen: seen ?? 0)
        self.waiters = waiters
        notifications.subscribe(PostgresNotifications.events) { payload in
            if let payload, let sequence = payload.split(separator: " ").first.flatMap({ Int64($0) }) {
                waiters.committed(sequence)
            } else {
                // Reconnected: whatever was committed meanwhile is newer than what was seen.
                Task {
                    if let newest: Int64 = try? await database.rows(
                        "SELECT max(sequence) AS newest FROM buildEvent"
                    ).first?.value("newest") {
                        waiters.committed(newest)
                    }
                }
            }
        }
    }

    package func changes(of tenant: TenantID, after sequence: Int64, limit: Int) async throws -> [BuildStateChange] {
        try await database.rows(
            """
            SELECT sequence, tenantId, buildId, status, reason, at FROM buildEvent
            WHERE tenantId = \(tenant.rawValue) AND sequence > \(sequence) ORDER BY sequence LIMIT \(limit)
            """
        ).compactMap { row in
            guard let tenant = TenantID(try row.value("tenantId")), let id = BuildID(try row.value("buildId")),
                let status = BuildStatus(rawValue: try row.value("status"))
            else { return nil }
            return BuildStateChange(
                sequence: try row.value("sequence"), tenant: tenant, buildID: id, status: status,
                reason: (try row.value("reason", as: String?.self)).flatMap(BuildFailureReason.init(rawValue:)),
                at: try row.date("at") ?? Date(timeIntervalSince1970: 0))
        }
    }

    package func lastSequence() async throws -> Int64 {
        try await database.rows("SELECT max(sequence) AS newest FROM buildEvent").first?.value("newest") ?? 0
    }

    package func waitForChanges(after sequence: Int64, timeout: Duration) async {
        await waiters.wait(after: sequence, timeout: timeout)
    }
}
