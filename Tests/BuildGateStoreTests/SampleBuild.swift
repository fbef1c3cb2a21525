import BuildGateCore
import Foundation

/// A queued build of an uploaded context, created at `date`, with `key` as its idempotency key: what the store
/// tests store, claim and settle.
func sampleBuild(key: String? = nil, at date: Date = Date()) throws -> Build {
    Build(
        id: .generate(at: date),
        request: BuildRequest(images: [try ImageReference(parsing: "r.example.com/app:1")], labels: ["a": "b"]),
        context: BuildContext(
            digest: ContextDigest(hex: String(repeating: "b", count: 64))!, size: 42, compression: .gzip),
        createdAt: date, idempotencyKey: key)
}
