import BuildGateCore
import NIOCore
import Testing

@testable import BuildGateAPI

struct SharedLogPiecesTests {
    @Test func followersAtTheSameBytesGetOneBufferAndSmallReadsAreCopies() {
        let pieces = SharedLogPieces(minimumShared: 1024, capacity: 2)
        let build = BuildID.generate()
        let piece = (0..<4096).map { UInt8(truncatingIfNeeded: $0) }[...]
        let first = pieces.buffer(piece, of: build, at: 0)
        let second = pieces.buffer(piece, of: build, at: 0)
        #expect(first == ByteBuffer(bytes: piece))
        #expect(address(first) == address(second))
        // Another build's bytes at the same offset are other bytes.
        #expect(address(pieces.buffer(piece, of: .generate(), at: 0)) != address(first))

        let small = piece.prefix(100)
        let (one, other) = (pieces.buffer(small, of: build, at: 0), pieces.buffer(small, of: build, at: 0))
        #expect(one == other && address(one) != address(other))

        // Past the capacity the oldest goes: its next reader gets a new buffer with the same bytes.
        _ = pieces.buffer(piece, of: build, at: 4096)
        _ = pieces.buffer(piece, of: build, at: 8192)
        let again = pieces.buffer(piece, of: build, at: 0)
        #expect(again == first)
        #expect(address(again) != address(first))
    }

    @Test func followersOfTheEventStreamShareTheFramedEventOfTheSameBytes() {
        let pieces = SharedLogPieces(minimumShared: 1024, capacity: 4)
        let build = BuildID.generate()
        let piece = Array(String(repeating: "a line of build output\r\n", count: 200).utf8)[...]
        let first = pieces.buffer(piece, of: build, at: 4096, as: .serverSentEvent)
        let second = pieces.buffer(piece, of: build, at: 4096, as: .serverSentEvent)
        #expect(first == ServerSentEvents.event("log", id: String(4096 + piece.count), data: piece))
        #expect(address(first) == address(second))
        // The same bytes raw are another buffer, and stay the bytes.
        let raw = pieces.buffer(piece, of: build, at: 4096)
        #expect(raw == ByteBuffer(bytes: piece) && address(raw) != address(first))
    }

    private func address(_ buffer: ByteBuffer) -> UnsafeRawPointer? {
        buffer.withUnsafeReadableBytes { $0.baseAddress }
    }
}
