import BuildGateCore
import BuildGateStore
import BuildGateTesting
import Crypto
import Foundation
import Testing

/// Webhook deliveries as the trigger store keeps them: an id seen within 8 days is a redelivery; older ids go.
struct SQLiteTriggerStoreTests {
    let directory: TemporaryDirectory
    let triggers: SQLiteTriggerStore
    let trigger: Trigger

    init() async throws {
        directory = try TemporaryDirectory("triggers")
        let database = try BuildGateDatabase(
            path: "\(directory.path)/db.sqlite", migrationsDirectory: migrationsDirectory)
        triggers = SQLiteTriggerStore(database: database, box: SecretBox(key: .init(size: .bits256)))
        trigger = Trigger(
            id: Trigger.generateID(), tenant: .default, forge: "github", repository: "o/r",
            settings: TriggerSettings(images: ["r.example.com/a:{{sha}}"]), createdAt: Date(timeIntervalSince1970: 0))
        try await triggers.createTrigger(trigger, secret: "0123456789abcdef", cloneCredential: nil, statusToken: nil)
    }

    func deliver(_ id: String, at date: Date) async throws -> RecordedDelivery {
        try await triggers.recordDelivery(triggerID: trigger.id, deliveryID: id, build: nil, at: date) { _ in
            (200, "{\"first\":\"\(id)\"}")
        }
    }

    @Test func aDeliveryIdIsRememberedForEightDaysAndForgottenAfter() async throws {
        defer { directory.remove() }
        let day: TimeInterval = 86_400
        let start = Date(timeIntervalSince1970: 1_000_000)
        #expect(try await deliver("d-1", at: start).isRedelivery == false)

        // A forge redelivering a week and a day later still gets the first answer, and nothing is built again.
        let late = try await deliver("d-1", at: start.addingTimeInterval(8 * day - 1))
        #expect(late.isRedelivery && late.response == #"{"first":"d-1"}"#)

        // Any delivery past the 8 days clears the old ids; then the same id is new again.
        #expect(try await deliver("d-2", at: start.addingTimeInterval(8 * day + 1)).isRedelivery == false)
        #expect(try await deliver("d-1", at: start.addingTimeInterval(8 * day + 2)).isRedelivery == false)
        #expect(try await deliver("d-2", at: start.addingTimeInterval(8 * day + 3)).isRedelivery)
    }
}
