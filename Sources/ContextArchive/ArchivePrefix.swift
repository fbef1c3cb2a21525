import CZlib

/// Files to put in front of a stored context archive, for engines that take extra files only inside the context
/// (Podman moves a build secret named by `secrets=[…src=FILE]` out of the extracted context before it builds).
///
/// The prefix holds the entries without an end-of-archive marker, so the stored archive's entries and marker follow
/// in the same stream: plain tar entries before a plain tar, or one gzip member of them before a gzip archive (a
/// gzip reader reads concatenated members as one stream, as `gzip -d` does).
package enum ArchivePrefix {
    /// - Parameter files: names (flat, validated by the caller) and contents; written mode 0600, owner root.
    package static func entries(_ files: [(name: String, contents: [UInt8])], gzip: Bool) -> [UInt8] {
        guard !files.isEmpty else { return [] }
        var tar: [UInt8] = []
        for (name, contents) in files {
            tar += header(name: name, size: contents.count)
            tar += contents
            tar += [UInt8](repeating: 0, count: (512 - contents.count % 512) % 512)
        }
        return gzip ? gzipMember(tar) : tar
    }

    /// A ustar header for a regular file.
    static func header(name: String, size: Int) -> [UInt8] {
        precondition(name.utf8.count <= 100, "prefix entry names are short and flat")
        var block = [UInt8](repeating: 0, count: 512)
        func put(_ text: String, at offset: Int) {
            for (index, byte) in text.utf8.enumerated() { block[offset + index] = byte }
        }
        func octal(_ value: Int, at offset: Int, width: Int) {
            let digits = String(value, radix: 8)
            put(String(repeating: "0", count: width - 1 - digits.count) + digits, at: offset)
        }
        put(name, at: 0)
        octal(0o600, at: 100, width: 8)
        octal(0, at: 108, width: 8)
        octal(0, at: 116, width: 8)
        octal(size, at: 124, width: 12)
        octal(0, at: 136, width: 12)
        put("        ", at: 148)
        block[156] = UInt8(ascii: "0")
        put("ustar", at: 257)
        put("00", at: 263)
        let checksum = block.reduce(0) { $0 + Int($1) }
        octal(checksum, at: 148, width: 7)
        block[155] = UInt8(ascii: " ")
        return block
    }

    /// One complete gzip member of `bytes`, compressed by zlib.
    static func gzipMember(_ bytes: [UInt8]) -> [UInt8] {
        var stream = z_stream()
        // windowBits 15 + 16: write a gzip header and trailer.
        guard
            deflateInit2_(
                &stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY,
                ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK
        else { preconditionFailure("zlib cannot start deflate") }
        defer { deflateEnd(&stream) }
        var input = bytes
        var output = [UInt8](repeating: 0, count: Int(deflateBound(&stream, UInt(bytes.count))) + 64)
        let status = input.withUnsafeMutableBufferPointer { inputBuffer in
            output.withUnsafeMutableBufferPointer { outputBuffer in
                stream.next_in = inputBuffer.baseAddress
                stream.avail_in = UInt32(inputBuffer.count)
                stream.next_out = outputBuffer.baseAddress
                stream.avail_out = UInt32(outputBuffer.count)
                return deflate(&stream, Z_FINISH)
            }
        }
        precondition(status == Z_STREAM_END, "deflateBound leaves room for the whole member")
        return Array(output.prefix(Int(stream.total_out)))
    }
}
