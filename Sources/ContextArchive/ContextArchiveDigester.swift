import Crypto

/// Validates a context archive and computes the sha256 of its bytes in the same pass: what every context the
/// gateway stores goes through, whether uploaded or made by `git archive`.
public struct ContextArchiveDigester {
    private var validator: ContextArchiveValidator
    private var hasher = SHA256()
    /// Bytes consumed so far.
    public private(set) var size: Int64 = 0

    public init(dockerfile: String, limits: ContextArchiveValidator.Limits = .init()) {
        validator = ContextArchiveValidator(dockerfile: dockerfile, limits: limits)
    }

    /// Hashes and validates the next bytes. Throws `ContextArchiveError` only.
    public mutating func consume(_ bytes: UnsafeRawBufferPointer) throws {
        size += Int64(bytes.count)
        hasher.update(bufferPointer: bytes)
        try validator.consume(bytes)
    }

    /// After the last byte: the archive's summary and the sha256 of all bytes.
    public mutating func finish() throws -> (summary: ContextArchiveValidator.Summary, sha256: [UInt8]) {
        let summary = try validator.finish()
        return (summary, Array(hasher.finalize()))
    }
}
