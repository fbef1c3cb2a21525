import Foundation

/// One message of a Docker-compatible JSON stream (`/build`, `/images/{name}/push`).
package enum EngineMessage: Sendable, Equatable {
    /// Build output text (`{"stream":…}`), not necessarily a whole line.
    case stream(String)
    /// A progress or status line (`{"status":…,"id":…}`), as pulls and pushes send them; `isProgress` when it
    /// carries a progress bar (`"progress"` or a non-empty `"progressDetail"`).
    case status(String, id: String?, isProgress: Bool)
    /// The engine reports failure (`{"error":…,"errorDetail":{"message":…}}`); the HTTP status stays 200.
    case error(String)
    /// The built image's id (`{"aux":{"ID":"sha256:…"}}`).
    case imageID(String)
    /// BuildKit progress from dockerd (`{"id":"moby.buildkit.trace","aux":"<base64 StatusResponse>"}`).
    case buildKitTrace(String)
    /// Anything else (other `aux` payloads, BuildKit traces): ignored by the classic decoder.
    case other
}

/// Splits a Docker-compatible JSON message stream into messages, across arbitrary chunk boundaries.
///
/// Pure and incremental: feed chunks with `decode`, then call `finish` for a last line without a newline.
/// A line that is not JSON is reported as `.stream` text rather than dropped, so nothing the engine said is lost.
package struct EngineStreamDecoder {
    private var pending: [UInt8] = []
    /// Lines longer than this are cut, so a hostile or broken engine cannot grow memory without bound.
    private let maxLineLength: Int

    package init(maxLineLength: Int = 8 << 20) {
        self.maxLineLength = maxLineLength
    }

    package mutating func decode(_ chunk: some Sequence<UInt8>) -> [EngineMessage] {
        if let messages = chunk.withContiguousStorageIfAvailable({ decode(bytes: $0) }) { return messages }
        return Array(chunk).withUnsafeBufferPointer { decode(bytes: $0) }
    }

    private mutating func decode(bytes: UnsafeBufferPointer<UInt8>) -> [EngineMessage] {
        var messages: [EngineMessage] = []
        var rest = bytes[...]
        while !rest.isEmpty {
            let newline = rest.firstIndex(of: UInt8(ascii: "\n"))
            let piece = rest[..<(newline ?? rest.endIndex)]
            pending.append(contentsOf: piece.prefix(max(0, maxLineLength - pending.count)))
            guard let newline else { break }
            if let message = Self.message(from: pending) { messages.append(message) }
            pending.removeAll(keepingCapacity: true)
            rest = rest[(newline + 1)...]
        }
        return messages
    }

    package mutating func finish() -> [EngineMessage] {
        defer { pending.removeAll() }
        return Self.message(from: pending).map { [$0] } ?? []
    }

    private struct Wire: Decodable {
        struct ErrorDetail: Decodable { var message: String? }
        /// `aux`: the built image (`{"ID":…}`), or, with the id `moby.buildkit.trace`, BuildKit progress (base64).
        enum Aux: Decodable {
            struct Image: Decodable {
                enum CodingKeys: String, CodingKey { case id = "ID" }
                var id: String?
            }
            case image(Image)
            case text(String)

            init(from decoder: any Decoder) throws {
                let container = try decoder.singleValueContainer()
                if let text = try? container.decode(String.self) {
                    self = .text(text)
                } else {
                    self = .image(try container.decode(Image.self))
                }
            }
        }
        struct ProgressDetail: Decodable { var current: Int64? }
        var stream: String?
        var progress: String?
        var progressDetail: ProgressDetail?
        var status: String?
        var id: String?
        var error: String?
        var errorDetail: ErrorDetail?
        var aux: Aux?
    }

    static func message(from line: [UInt8]) -> EngineMessage? {
        let trimmed = line.last == UInt8(ascii: "\r") ? line.dropLast() : line[...]
        guard !trimmed.allSatisfy({ $0 == UInt8(ascii: " ") }) else { return nil }
        // One decode per line: build output is most of the stream, and arrives at tens of thousands of lines a second.
        guard let wire = try? JSONDecoder().decode(Wire.self, from: Data(trimmed)) else {
            return .stream(String(decoding: trimmed, as: UTF8.self) + "\n")
        }
        if wire.id == "moby.buildkit.trace", case .text(let trace) = wire.aux { return .buildKitTrace(trace) }
        if let message = wire.errorDetail?.message ?? wire.error { return .error(message) }
        if let stream = wire.stream { return .stream(stream) }
        if let status = wire.status {
            return .status(status, id: wire.id, isProgress: wire.progress != nil || wire.progressDetail?.current != nil)
        }
        if case .image(let image) = wire.aux, let id = image.id { return .imageID(id) }
        return .other
    }

    /// The manifest digest in a push's final status line, `"<tag>: digest: sha256:<hex> size: <n>"`.
    package static func pushedDigest(in status: String) -> String? {
        guard let range = status.range(of: "digest: sha256:") else { return nil }
        let hex = status[range.upperBound...].prefix { $0.isHexDigit }
        guard hex.count == 64 else { return nil }
        return "sha256:\(hex)"
    }
}
