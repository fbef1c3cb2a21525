import BuildGateCore
import NIOCore
import Synchronization

/// The last log pieces written to followers, as the `ByteBuffer`s NIO sends: followers reading the same bytes of the
/// same log (a thousand of a running build, mostly a piece apart) send one buffer instead of a copy each, as the
/// bytes themselves (`?follow=true`) or framed as a Server-Sent Event (whose id, the offset after the bytes, is the
/// same for every reader of them).
///
/// Keyed by build, offset, length and form, which name the bytes for good: logs are append-only with stable offsets.
/// Small reads (a follower that has caught up, taking the last few lines) are not kept: copying them costs less
/// than keeping them.
final class SharedLogPieces: Sendable {
    /// How the bytes go out.
    enum Form: Hashable {
        case raw
        /// A `log` event whose id is the offset after the bytes.
        case serverSentEvent
    }

    private struct Key: Hashable {
        var build: BuildID
        var offset: Int64
        var count: Int
        var form: Form
    }

    private struct Pieces {
        var buffers: [Key: ByteBuffer] = [:]
        /// Insertion order, for evicting the oldest.
        var order: [Key] = []
    }

    /// Reads shorter than this are copied, not kept.
    let minimumShared: Int
    /// Pieces kept at most (with 32 KiB pieces, 64 is 2 MiB).
    let capacity: Int
    private let pieces = Mutex(Pieces())

    init(minimumShared: Int = 8 * 1024, capacity: Int = 64) {
        self.minimumShared = minimumShared
        self.capacity = capacity
    }

    /// The buffer for `bytes`, read from `offset` of `build`'s log, in `form`: the one another follower got, or a
    /// new one.
    func buffer(_ bytes: ArraySlice<UInt8>, of build: BuildID, at offset: Int64, as form: Form = .raw) -> ByteBuffer {
        func make() -> ByteBuffer {
            switch form {
            case .raw: ByteBuffer(bytes: bytes)
            case .serverSentEvent:
                ServerSentEvents.event("log", id: String(offset + Int64(bytes.count)), data: bytes)
            }
        }
        guard bytes.count >= minimumShared else { return make() }
        let key = Key(build: build, offset: offset, count: bytes.count, form: form)
        if let shared = pieces.withLock({ $0.buffers[key] }) { return shared }
        let buffer = make()
        return pieces.withLock { pieces in
            if let shared = pieces.buffers[key] { return shared }
            pieces.buffers[key] = buffer
            pieces.order.append(key)
            if pieces.order.count > capacity { pieces.buffers.removeValue(forKey: pieces.order.removeFirst()) }
            return buffer
        }
    }
}
