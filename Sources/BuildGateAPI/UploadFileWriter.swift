import BuildGateCore
import Foundation
import NIOCore

/// Writes an upload's bytes to its file, in order, bypassing the page cache (`O_DIRECT`) where the file system
/// allows it.
///
/// A context is written once and read once, later, by the build: keeping it in the page cache buys nothing, and
/// copying it there was the gateway's largest cost while ingesting (43 % of its CPU for a 512 MiB upload), with the
/// writeback still to wait for at the fsync before the 202. Direct writes go from this buffer to the disk. They
/// must start and end on block boundaries, from memory aligned to a block, so the bytes are gathered in an aligned
/// buffer and written a whole buffer at a time; the last piece, shorter than a block, is written through the page
/// cache once `O_DIRECT` is cleared. Where direct writes are refused (a file system without them, such as tmpfs on
/// older kernels), everything goes through the page cache, with its writeback started every `writebackEvery` bytes
/// so the fsync finds little left.
///
/// Not for concurrent use: one task hands it the upload's batches one after another (it is `Sendable` only so each
/// batch can be written on the file system's threads).
package final class UploadFileWriter: @unchecked Sendable {
    /// The alignment of direct writes' offsets, lengths and memory: a multiple of every logical block size in use.
    static let blockSize = 4096
    /// How much written data may wait for the disk before its writeback is started (page-cache writes only).
    static let writebackEvery: Int64 = 8 << 20

    /// The gathered bytes: `capacity` of them, aligned to a block.
    private let buffer: UnsafeMutableRawPointer
    /// Linux's `O_DIRECT`, which Glibc's module leaves out (it is behind `_GNU_SOURCE`); nil where unknown.
    private static let directFlag: Int32? = {
        #if os(Linux) && arch(x86_64)
            0o40000
        #elseif os(Linux) && arch(arm64)
            0o200000
        #else
            nil
        #endif
    }()
    private let capacity: Int
    private var filled = 0
    /// Bytes written to the file so far.
    package private(set) var offset: Int64 = 0
    /// Whether the bytes go to the disk directly; false once the file system refused it.
    package private(set) var isDirect = false
    private var writtenBack: Int64 = 0

    /// - Parameter capacity: bytes gathered per write, rounded up to whole blocks.
    package init(capacity: Int) {
        let blocks = max(1, (capacity + Self.blockSize - 1) / Self.blockSize)
        self.capacity = blocks * Self.blockSize
        buffer = .allocate(byteCount: self.capacity, alignment: Self.blockSize)
    }

    deinit { buffer.deallocate() }

    /// Asks for direct writes on `descriptor` (opened for writing, positioned nowhere in particular: every write
    /// names its offset). Returns whether the file system accepted; when it did not, writes use the page cache.
    @discardableResult
    package func writeDirectly(to descriptor: Int32) -> Bool {
        let flags = fcntl(descriptor, F_GETFL)
        if flags >= 0, let direct = Self.directFlag {
            isDirect = fcntl(descriptor, F_SETFL, flags | direct) == 0
        }
        return isDirect
    }

    /// Adds `buffers` to the file, writing every full buffer's worth now and keeping the rest for the next call.
    package func write(_ buffers: [ByteBuffer], to descriptor: Int32) throws {
        for var buffer in buffers {
            while buffer.readableBytes > 0 {
                let count = min(buffer.readableBytes, capacity - filled)
                buffer.withUnsafeReadableBytes { bytes in
                    if let source = bytes.baseAddress {
                        (self.buffer + filled).copyMemory(from: source, byteCount: count)
                    }
                }
                buffer.moveReaderIndex(forwardBy: count)
                filled += count
                if filled == capacity { try flush(to: descriptor) }
            }
        }
    }

    /// Writes what is left, the part shorter than a block through the page cache. The caller then fsyncs the file.
    package func finish(to descriptor: Int32) throws {
        let whole = filled / Self.blockSize * Self.blockSize
        if isDirect, whole > 0, whole < filled {
            try write(count: whole, to: descriptor)
            buffer.copyMemory(from: buffer + whole, byteCount: filled - whole)
            filled -= whole
        }
        if isDirect, filled % Self.blockSize != 0 { stopWritingDirectly(to: descriptor) }
        if filled > 0 { try flush(to: descriptor) }
    }

    private func flush(to descriptor: Int32) throws {
        try write(count: filled, to: descriptor)
        filled = 0
        guard !isDirect, offset - writtenBack >= Self.writebackEvery else { return }
        // Start the writeback of what is written (without waiting for it), so the fsync before the 202 finds
        // little left.
        posix_fadvise(descriptor, off_t(writtenBack), off_t(offset - writtenBack), POSIX_FADV_DONTNEED)
        writtenBack = offset
    }

    /// Writes the buffer's first `count` bytes at `offset`. A direct write the file system refuses (`EINVAL`: it
    /// takes no direct writes after all, or wants a larger alignment) is written again through the page cache.
    private func write(count: Int, to descriptor: Int32) throws {
        var done = 0
        while done < count {
            let written = pwrite(descriptor, buffer + done, count - done, off_t(offset))
            if written <= 0 {
                let code = written == 0 ? ENOSPC : errno  // nothing written of a regular file: no room
                if code == EINTR { continue }
                if code == EINVAL, isDirect {
                    stopWritingDirectly(to: descriptor)
                    continue
                }
                throw BuildGateError(
                    code == ENOSPC || code == EDQUOT ? .insufficientStorage : .internalError,
                    "cannot write the upload: \(String(cString: strerror(code)))",
                    cause: POSIXErrorCode(rawValue: code).map { POSIXError($0) })
            }
            done += written
            offset += Int64(written)
            // A short direct write leaves the next one unaligned: the rest goes through the page cache.
            if isDirect, done < count { stopWritingDirectly(to: descriptor) }
        }
    }

    private func stopWritingDirectly(to descriptor: Int32) {
        let flags = fcntl(descriptor, F_GETFL)
        if flags >= 0, let direct = Self.directFlag { _ = fcntl(descriptor, F_SETFL, flags & ~direct) }
        isDirect = false
    }
}
