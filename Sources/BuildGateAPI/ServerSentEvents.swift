import HTTPTypes
import NIOCore

/// Server-Sent Events framing (`text/event-stream`, as the WHATWG HTML standard defines it and browsers' `EventSource`
/// reads it).
enum ServerSentEvents {
    /// The headers of an event stream: no caching, no proxy buffering, the connection ends with the stream.
    static var headers: HTTPFields {
        [
            .contentType: "text/event-stream; charset=utf-8", .cacheControl: "no-store", .connection: "close",
            HTTPField.Name("X-Accel-Buffering")!: "no",
        ]
    }

    /// How long a reader waits before reconnecting, in milliseconds.
    static func retry(milliseconds: Int) -> ByteBuffer {
        ByteBuffer(string: "retry: \(milliseconds)\n\n")
    }

    /// A comment line: keeps proxies and readers from timing out a quiet stream.
    static let heartbeat = ByteBuffer(string: ": keep-alive\n\n")

    /// One event. `data` goes out as `data:` lines split at its line ends; a reader joins them with `\n`, so text
    /// that ends with a line end gets an empty last `data:` line and comes back byte for byte. `\r\n` and a lone
    /// `\r` (which a reader also takes as a line end) come back as `\n`.
    static func event(_ name: String, id: String? = nil, data: some Collection<UInt8>) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(data.count + data.count / 16 + 64)
        buffer.writeString("event: \(name)\n")
        if let id { buffer.writeString("id: \(id)\n") }
        buffer.writeStaticString("data: ")
        let framed = data.withContiguousStorageIfAvailable { bytes in writeLines(bytes, to: &buffer) }
        if framed == nil { Array(data).withUnsafeBufferPointer { writeLines($0, to: &buffer) } }
        buffer.writeStaticString("\n\n")
        return buffer
    }

    /// Writes `bytes` with each line end (`\n`, `\r\n`, `\r`) turned into a new `data:` line: the runs between line
    /// ends in one write each.
    private static func writeLines(_ bytes: UnsafeBufferPointer<UInt8>, to buffer: inout ByteBuffer) {
        var rest = bytes[...]
        while let end = rest.firstIndex(where: { $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "\r") }) {
            buffer.writeBytes(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: rest[..<end])))
            buffer.writeStaticString("\ndata: ")
            var next = end + 1
            if bytes[end] == UInt8(ascii: "\r"), next < rest.endIndex, bytes[next] == UInt8(ascii: "\n") { next += 1 }
            rest = rest[next...]
        }
        buffer.writeBytes(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: rest)))
    }

    /// How many of `bytes` can go out in one event now: all of them when `final`, else all but a trailing `\r`
    /// (its `\n` may follow) and an unfinished UTF-8 sequence (a reader would see two broken halves).
    static func sendablePrefix(of bytes: ArraySlice<UInt8>, final: Bool) -> Int {
        guard !final, let last = bytes.last else { return bytes.count }
        if last == UInt8(ascii: "\r") { return bytes.count - 1 }
        // Walk back over continuation bytes (10xxxxxx) to the lead byte of the last sequence.
        var index = bytes.endIndex - 1
        var continuation = 0
        while index > bytes.startIndex, bytes[index] & 0xC0 == 0x80, continuation < 3 {
            index -= 1
            continuation += 1
        }
        let lead = bytes[index]
        let length =
            switch lead {
            case 0xC0...0xDF: 2
            case 0xE0...0xEF: 3
            case 0xF0...0xF7: 4
            default: 1
            }
        return length > continuation + 1 ? index - bytes.startIndex : bytes.count
    }
}
