import BuildGateCore
import BuildGateStore
import BuildGateTesting
import Foundation
import GRDB
import Synchronization
import Testing

/// Writes that arrive together share one transaction (one fsync), each in its own savepoint.
struct GroupCommitTests {
    private final class CommitCounter: TransactionObserver, Sendable {
        let commits = Mutex(0)
        func observes(eventsOfKind eventKind: DatabaseEventKind) -> Bool { true }
        func databaseDidChange(with event: DatabaseEvent) {}
        func databaseDidCommit(_ db: Database) { commits.withLock { $0 += 1 } }
        func databaseDidRollback(_ db: Database) {}
    }

    struct Refused: Error, Equatable { let index: Int }

    @Test func concurrentWritesCommitTogetherAndOneThatThrowsIsRolledBackAlone() async throws {
        let directory = try TemporaryDirectory("group-commit")
        defer { directory.remove() }
        let database = try BuildGateDatabase(
            path: "\(directory.path)/db.sqlite", migrationsDirectory: migrationsDirectory)
        let counter = CommitCounter()
        database.writer.add(transactionObserver: counter, extent: .databaseLifetime)

        let results = await withTaskGroup(of: (Int, Result<Int, Refused>).self) { group in
            for index in 0..<64 {
                group.addTask {
                    do {
                        let value = try await database.batchedWrite { db in
                            try db.execute(
                                sql: "INSERT INTO tenant (id, createdAt) VALUES (?, 0)", arguments: ["t\(index)"])
                            if index % 4 == 3 { throw Refused(index: index) }
                            return index * 10
                        }
                        return (index, .success(value))
                    } catch let error as Refused {
                        return (index, .failure(error))
                    } catch {
                        Issue.record("write \(index) failed: \(error)")
                        return (index, .failure(Refused(index: -1)))
                    }
                }
            }
            return await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
        }
        for index in 0..<64 {
            #expect(results[index] == (index % 4 == 3 ? .failure(Refused(index: index)) : .success(index * 10)))
        }
        let stored = try await database.writer.read { db in
            try String.fetchAll(db, sql: "SELECT id FROM tenant WHERE id != 'default' ORDER BY id")
        }
        #expect(Set(stored) == Set((0..<64).filter { $0 % 4 != 3 }.map { "t\($0)" }))
        let commits = counter.commits.withLock { $0 }
        #expect(commits < 64, "\(commits) commits for 64 concurrent writes: none shared a transaction")
    }
}
