import Foundation

/// BuildKit's `StatusResponse` (api/services/control/control.proto), the fields the gateway shows, decoded by hand
/// from the protobuf wire format (a handful of fields do not justify generated code and a protobuf dependency).
///
/// ```
/// message StatusResponse { repeated Vertex vertexes = 1; repeated VertexStatus statuses = 2;
///                          repeated VertexLog logs = 3; repeated VertexWarning warnings = 4; }
/// message Vertex { string digest = 1; repeated string inputs = 2; string name = 3; bool cached = 4;
///                  Timestamp started = 5; Timestamp completed = 6; string error = 7; }
/// message VertexStatus { string ID = 1; string vertex = 2; string name = 3; int64 current = 4; int64 total = 5;
///                        Timestamp timestamp = 6; Timestamp started = 7; Timestamp completed = 8; }
/// message VertexLog { string vertex = 1; Timestamp timestamp = 2; int64 stream = 3; bytes msg = 4; }
/// message VertexWarning { string vertex = 1; int64 level = 2; bytes short = 3; }
/// ```
package struct BuildKitStatus: Equatable {
    package struct Vertex: Equatable {
        package var digest = ""
        package var name = ""
        package var cached = false
        package var started: Date?
        package var completed: Date?
        package var error: String?
    }

    package struct Status: Equatable {
        package var id = ""
        package var vertex = ""
        package var name = ""
        package var current: Int64 = 0
        package var total: Int64 = 0
        package var completed: Date?
    }

    package struct Log: Equatable {
        package var vertex = ""
        package var timestamp: Date?
        package var message: [UInt8] = []
    }

    package struct Warning: Equatable {
        package var vertex = ""
        package var short = ""
    }

    package var vertexes: [Vertex] = []
    package var statuses: [Status] = []
    package var logs: [Log] = []
    package var warnings: [Warning] = []

    /// Decodes the base64 `aux` of a `moby.buildkit.trace` message.
    package init?(base64 text: String) {
        guard let data = Data(base64Encoded: text) else { return nil }
        var reader = ProtobufReader(Array(data))
        do {
            while let (field, value) = try reader.next() {
                switch (field, value) {
                case (1, .bytes(let bytes)): vertexes.append(try Self.vertex(bytes))
                case (2, .bytes(let bytes)): statuses.append(try Self.status(bytes))
                case (3, .bytes(let bytes)): logs.append(try Self.log(bytes))
                case (4, .bytes(let bytes)): warnings.append(try Self.warning(bytes))
                default: continue
                }
            }
        } catch {
            return nil
        }
    }

    private static func vertex(_ bytes: ArraySlice<UInt8>) throws -> Vertex {
        var vertex = Vertex()
        var reader = ProtobufReader(bytes)
        while let (field, value) = try reader.next() {
            switch (field, value) {
            case (1, .bytes(let b)): vertex.digest = String(decoding: b, as: UTF8.self)
            case (3, .bytes(let b)): vertex.name = String(decoding: b, as: UTF8.self)
            case (4, .varint(let v)): vertex.cached = v != 0
            case (5, .bytes(let b)): vertex.started = try timestamp(b)
            case (6, .bytes(let b)): vertex.completed = try timestamp(b)
            case (7, .bytes(let b)): vertex.error = String(decoding: b, as: UTF8.self)
            default: continue
            }
        }
        return vertex
    }

    private static func status(_ bytes: ArraySlice<UInt8>) throws -> Status {
        var status = Status()
        var reader = ProtobufReader(bytes)
        while let (field, value) = try reader.next() {
            switch (field, value) {
            case (1, .bytes(let b)): status.id = String(decoding: b, as: UTF8.self)
            case (2, .bytes(let b)): status.vertex = String(decoding: b, as: UTF8.self)
            case (3, .bytes(let b)): status.name = String(decoding: b, as: UTF8.self)
            case (4, .varint(let v)): status.current = Int64(bitPattern: v)
            case (5, .varint(let v)): status.total = Int64(bitPattern: v)
            case (8, .bytes(let b)): status.completed = try timestamp(b)
            default: continue
            }
        }
        return status
    }

    private static func log(_ bytes: ArraySlice<UInt8>) throws -> Log {
        var log = Log()
        var reader = ProtobufReader(bytes)
        while let (field, value) = try reader.next() {
            switch (field, value) {
            case (1, .bytes(let b)): log.vertex = String(decoding: b, as: UTF8.self)
            case (2, .bytes(let b)): log.timestamp = try timestamp(b)
            case (4, .bytes(let b)): log.message = Array(b)
            default: continue
            }
        }
        return log
    }

    private static func warning(_ bytes: ArraySlice<UInt8>) throws -> Warning {
        var warning = Warning()
        var reader = ProtobufReader(bytes)
        while let (field, value) = try reader.next() {
            switch (field, value) {
            case (1, .bytes(let b)): warning.vertex = String(decoding: b, as: UTF8.self)
            case (3, .bytes(let b)): warning.short = String(decoding: b, as: UTF8.self)
            default: continue
            }
        }
        return warning
    }

    /// `google.protobuf.Timestamp { int64 seconds = 1; int32 nanos = 2; }`
    private static func timestamp(_ bytes: ArraySlice<UInt8>) throws -> Date {
        var seconds: Int64 = 0
        var nanos: Int64 = 0
        var reader = ProtobufReader(bytes)
        while let (field, value) = try reader.next() {
            switch (field, value) {
            case (1, .varint(let v)): seconds = Int64(bitPattern: v)
            case (2, .varint(let v)): nanos = Int64(bitPattern: v)
            default: continue
            }
        }
        return Date(timeIntervalSince1970: Double(seconds) + Double(nanos) / 1e9)
    }
}

/// Reads protobuf wire-format fields: varints and length-delimited values (fixed-size ones are skipped).
struct ProtobufReader {
    enum Value { case varint(UInt64), bytes(ArraySlice<UInt8>), skipped }
    struct Malformed: Error {}

    private let bytes: ArraySlice<UInt8>
    private var index: Int

    init(_ bytes: some Collection<UInt8>) {
        self.bytes = ArraySlice(bytes)
        index = self.bytes.startIndex
    }

    mutating func next() throws -> (field: Int, value: Value)? {
        guard index < bytes.endIndex else { return nil }
        let key = try varint()
        let field = Int(key >> 3)
        switch key & 7 {
        case 0: return (field, .varint(try varint()))
        case 1: try skip(8); return (field, .skipped)
        case 2:
            let length = Int(try varint())
            guard length >= 0, index + length <= bytes.endIndex else { throw Malformed() }
            defer { index += length }
            return (field, .bytes(bytes[index..<(index + length)]))
        case 5: try skip(4); return (field, .skipped)
        default: throw Malformed()
        }
    }

    private mutating func varint() throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while index < bytes.endIndex, shift < 64 {
            let byte = bytes[index]
            index += 1
            result |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
        throw Malformed()
    }

    private mutating func skip(_ count: Int) throws {
        guard index + count <= bytes.endIndex else { throw Malformed() }
        index += count
    }
}

/// Renders BuildKit status updates as BuildKit's plain progress output: `#N name`, `#N <status>: done`, output
/// lines, `#N DONE 0.2s`, `#N CACHED`, `#N ERROR: …`. Vertexes are numbered in the order they first appear.
///
/// Like BuildKit's own printer, a vertex's end is settled only when the stream moves on to another vertex (or
/// ends, `finish`): BuildKit re-sends a completed vertex marked `cached`, and sends its last statuses together with
/// its completion.
package struct BuildKitPlainRenderer {
    private struct Ending {
        var digest: String
        var cached: Bool
        var error: String?
        var seconds: Double
    }

    private var numbers: [String: Int] = [:]
    private var announced: Set<String> = []
    private var settled: Set<String> = []
    private var pending: [Ending] = []
    private var finishedStatuses: Set<String> = []
    private var started: [String: Date] = [:]
    private var names: [String: String] = [:]

    package init() {}

    mutating package func render(_ status: BuildKitStatus) -> String {
        var out = ""
        let mentioned = Set(status.vertexes.map(\.digest) + status.statuses.map(\.vertex) + status.logs.map(\.vertex))
        // A pending end that this update re-sends may turn out cached or failed.
        for vertex in status.vertexes {
            guard let index = pending.firstIndex(where: { $0.digest == vertex.digest }) else { continue }
            pending[index].cached = pending[index].cached || vertex.cached
            if let error = vertex.error, !error.isEmpty { pending[index].error = error }
        }
        if !mentioned.isSubset(of: Set(pending.map(\.digest))) { out += flush() }

        for vertex in status.vertexes {
            names[vertex.digest] = vertex.name
            if let start = vertex.started, started[vertex.digest] == nil { started[vertex.digest] = start }
            if vertex.started != nil || vertex.cached || vertex.completed != nil { out += announce(vertex.digest) }
            guard !settled.contains(vertex.digest), !pending.contains(where: { $0.digest == vertex.digest }) else {
                continue
            }
            let error = vertex.error.flatMap { $0.isEmpty ? nil : $0 }
            if vertex.completed != nil || vertex.cached || error != nil {
                let seconds = zip(vertex.completed, started[vertex.digest]).map { $0.timeIntervalSince($1) } ?? 0
                pending.append(
                    Ending(digest: vertex.digest, cached: vertex.cached, error: error, seconds: max(0, seconds)))
            }
        }
        for item in status.statuses where item.completed != nil && !finishedStatuses.contains(item.vertex + item.id) {
            finishedStatuses.insert(item.vertex + item.id)
            out += announce(item.vertex)
            out += "#\(number(item.vertex)) \(item.name.isEmpty ? item.id : item.name): done\n"
        }
        for log in status.logs {
            out += announce(log.vertex)
            let prefix = "#\(number(log.vertex))"
            let elapsed =
                zip(log.timestamp, started[log.vertex]).map {
                    String(format: " %.3f", max(0, $0.timeIntervalSince($1)))
                } ?? ""
            for line in String(decoding: log.message, as: UTF8.self).split(separator: "\n") where !line.isEmpty {
                out += "\(prefix)\(elapsed) \(line)\n"
            }
        }
        for warning in status.warnings {
            out += "#\(number(warning.vertex)) WARNING: \(warning.short)\n"
        }
        return out
    }

    /// The ends still pending, at the end of the stream.
    mutating package func finish() -> String { flush() }

    private mutating func flush() -> String {
        var out = ""
        for ending in pending {
            let number = self.number(ending.digest)
            if let error = ending.error {
                out += "#\(number) ERROR: \(error)\n"
            } else if ending.cached {
                out += "#\(number) CACHED\n"
            } else {
                out += "#\(number) DONE \(String(format: "%.1f", ending.seconds))s\n"
            }
            settled.insert(ending.digest)
        }
        pending.removeAll()
        return out
    }

    private mutating func number(_ digest: String) -> Int {
        if let number = numbers[digest] { return number }
        let number = numbers.count + 1
        numbers[digest] = number
        return number
    }

    private mutating func announce(_ digest: String) -> String {
        guard !announced.contains(digest) else { return "" }
        announced.insert(digest)
        return "#\(number(digest)) \(names[digest] ?? digest)\n"
    }
}

private func zip<A, B>(_ a: A?, _ b: B?) -> (A, B)? {
    guard let a, let b else { return nil }
    return (a, b)
}

extension BuildKitStatus {
    /// One line of `buildctl --progress=rawjson` (a JSON `SolveStatus`: RFC 3339 times, base64 log data), or nil
    /// for a line that is not one (after a failure buildctl prints plain error text after the JSON).
    package init?(rawJSON line: [UInt8]) {
        struct Wire: Decodable {
            struct Vertex: Decodable {
                var digest: String; var name: String?; var cached: Bool?
                var started: String?; var completed: String?; var error: String?
            }
            struct Status: Decodable {
                var id: String; var vertex: String; var name: String?
                var current: Int64?; var total: Int64?; var completed: String?
            }
            struct Log: Decodable { var vertex: String; var data: String?; var timestamp: String? }
            struct Warning: Decodable { var vertex: String; var short: String? }
            var vertexes: [Vertex]?
            var statuses: [Status]?
            var logs: [Log]?
            var warnings: [Warning]?
        }
        guard let wire = try? JSONDecoder().decode(Wire.self, from: Data(line)),
            wire.vertexes != nil || wire.statuses != nil || wire.logs != nil || wire.warnings != nil
        else { return nil }
        vertexes = (wire.vertexes ?? []).map {
            Vertex(
                digest: $0.digest, name: $0.name ?? "", cached: $0.cached ?? false,
                started: $0.started.flatMap(Self.date), completed: $0.completed.flatMap(Self.date), error: $0.error)
        }
        statuses = (wire.statuses ?? []).map {
            Status(
                id: $0.id, vertex: $0.vertex, name: $0.name ?? "", current: $0.current ?? 0, total: $0.total ?? 0,
                completed: $0.completed.flatMap(Self.date))
        }
        logs = (wire.logs ?? []).map {
            Log(
                vertex: $0.vertex, timestamp: $0.timestamp.flatMap(Self.date),
                message: Array(Data(base64Encoded: $0.data ?? "") ?? Data()))
        }
        warnings = (wire.warnings ?? []).map {
            Warning(
                vertex: $0.vertex, short: String(decoding: Data(base64Encoded: $0.short ?? "") ?? Data(), as: UTF8.self)
            )
        }
    }

    /// RFC 3339 with up to nanosecond fractions (`2026-11-27T11:28:07.178571956Z`).
    package static func date(_ text: String) -> Date? {
        let parts = text.split(separator: ".", maxSplits: 1)
        let formatter = ISO8601DateFormatter()
        guard parts.count == 2 else { return formatter.date(from: text) }
        let fraction = parts[1].prefix { $0.isNumber }
        let zone = parts[1].dropFirst(fraction.count)
        guard let whole = formatter.date(from: "\(parts[0])\(zone)"), let value = Double("0.\(fraction)") else {
            return nil
        }
        return whole.addingTimeInterval(value)
    }
}
