import CZlib

/// Streaming gzip compression over zlib. Its output depends only on its input and level: zlib writes a gzip header
/// with no name and a zero modification time, so the same tar gives the same bytes (and digest) on every machine.
package final class GzipDeflater {
    private var stream = z_stream()
    private var output = [UInt8](repeating: 0, count: 64 * 1024)

    /// `level` 1 (fastest) to 9 (smallest).
    package init(level: Int32 = 1) throws(ContextArchiveError) {
        // windowBits 15 + 16: a gzip header and trailer around the deflate stream.
        let status = deflateInit2_(
            &stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)
        )
        guard status == Z_OK else { throw ContextArchiveError(.corrupt, "cannot start gzip compression") }
    }

    deinit {
        deflateEnd(&stream)
    }

    /// Compresses `input`, handing each piece of output to `body` as it is produced; `finish` ends the gzip member
    /// (after it, nothing more may be compressed).
    package func deflate(
        _ input: UnsafeRawBufferPointer, finish: Bool = false, _ body: (UnsafeRawBufferPointer) throws -> Void
    ) throws {
        stream.next_in = input.baseAddress.map {
            UnsafeMutablePointer(mutating: $0.assumingMemoryBound(to: UInt8.self))
        }
        stream.avail_in = UInt32(input.count)
        var status: Int32 = Z_OK
        repeat {
            var produced = 0
            output.withUnsafeMutableBytes { buffer in
                stream.next_out = buffer.baseAddress!.assumingMemoryBound(to: UInt8.self)
                stream.avail_out = UInt32(buffer.count)
                status = CZlib.deflate(&stream, finish ? Z_FINISH : Z_NO_FLUSH)
                produced = buffer.count - Int(stream.avail_out)
            }
            if produced > 0 {
                try output.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[..<produced])) }
            }
            guard status == Z_OK || status == Z_STREAM_END || status == Z_BUF_ERROR else {
                throw ContextArchiveError(.corrupt, "gzip compression failed (\(status))")
            }
        } while stream.avail_in > 0 || stream.avail_out == 0 || (finish && status != Z_STREAM_END)
    }
}
