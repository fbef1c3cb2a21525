import CZlib

/// Streaming gzip decompression over zlib, reporting truncation and corruption exactly.
///
/// Accepts concatenated gzip members (as `gzip` itself does). `isAtEnd` is true only when the last member's
/// trailer (CRC-32 and length) has been read and verified.
final class GzipInflater {
    private var stream = z_stream()
    private var output = [UInt8](repeating: 0, count: 64 * 1024)
    private(set) var isAtEnd = false

    init() throws {
        // windowBits 15 + 16: gzip format only, with the header and trailer checked by zlib.
        let status = inflateInit2_(&stream, 15 + 16, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard status == Z_OK else { throw ContextArchiveError(.corrupt, "cannot start gzip decompression") }
    }

    deinit {
        inflateEnd(&stream)
    }

    /// Decompresses `input`, handing each piece of output to `body` as it is produced.
    func inflate(
        _ input: UnsafeRawBufferPointer,
        _ body: (UnsafeRawBufferPointer) throws -> Void
    ) throws {
        guard let base = input.baseAddress, !input.isEmpty else { return }
        var offset = 0
        repeat {
            if isAtEnd {
                guard offset < input.count else { return }
                // Another gzip member follows the previous one.
                guard inflateReset(&stream) == Z_OK else { throw ContextArchiveError(.corrupt, "bad gzip member") }
                isAtEnd = false
            }
            stream.next_in = UnsafeMutablePointer(mutating: base.assumingMemoryBound(to: UInt8.self) + offset)
            stream.avail_in = UInt32(input.count - offset)
            var status: Int32 = Z_OK
            var produced = 0
            try output.withUnsafeMutableBytes { buffer in
                stream.next_out = buffer.baseAddress!.assumingMemoryBound(to: UInt8.self)
                stream.avail_out = UInt32(buffer.count)
                status = CZlib.inflate(&stream, Z_NO_FLUSH)
                produced = buffer.count - Int(stream.avail_out)
                if produced > 0 { try body(UnsafeRawBufferPointer(rebasing: buffer[..<produced])) }
            }
            offset = input.count - Int(stream.avail_in)
            switch status {
            case Z_OK:
                break
            case Z_STREAM_END:
                isAtEnd = true
            case Z_BUF_ERROR where produced == 0:
                return
            default:
                throw ContextArchiveError(.corrupt, "the gzip data is corrupt")
            }
        } while offset < input.count || stream.avail_out == 0
    }
}
