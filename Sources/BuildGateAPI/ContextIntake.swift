import BuildGateCore
import ContextArchive
import Crypto
import Hummingbird
import NIOCore
import NIOFileSystem

/// Receives one uploaded context: streams it to a private temporary file while hashing it (sha256) and validating
/// the archive, never holding the body in memory, and stores it under its digest when it is whole and valid.
///
/// On any failure the temporary file is removed before the error is thrown, so a rejected upload leaves nothing.
struct ContextIntake: Sendable {
    struct Limits: Sendable {
        /// Largest body accepted, in bytes.
        var maxContextSize: Int64 = 2 << 30
        var archive = ContextArchiveValidator.Limits()
    }

    let store: any ContextStore
    let limits: Limits

    func receive(_ body: RequestBody, dockerfile: String) async throws -> BuildContext {
        let upload = try store.makeUploadFile()
        do {
            let context = try await write(body, to: upload, dockerfile: dockerfile)
            try store.commit(upload: upload, as: context)
            return context
        } catch {
            store.discard(upload: upload)
            throw error
        }
    }

    private func write(_ body: RequestBody, to path: String, dockerfile: String) async throws -> BuildContext {
        var hasher = SHA256()
        var validator = ContextArchiveValidator(dockerfile: dockerfile, limits: limits.archive)
        var size: Int64 = 0
        try await FileSystem.shared.withFileHandle(
            forWritingAt: FilePath(path), options: .modifyFile(createIfNecessary: false)
        ) { file in
            var writer = file.bufferedWriter(capacity: .kibibytes(512))
            for try await buffer in body {
                size += Int64(buffer.readableBytes)
                guard size <= limits.maxContextSize else {
                    throw BuildGateError(.contextTooLarge, "the context is larger than the limit of \(limits.maxContextSize) bytes")
                }
                try buffer.withUnsafeReadableBytes { bytes in
                    hasher.update(bufferPointer: bytes)
                    try Self.mapArchiveErrors { try validator.consume(bytes) }
                }
                try await writer.write(contentsOf: buffer)
            }
            try await writer.flush()
        }
        let summary = try Self.mapArchiveErrors { try validator.finish() }
        let hex = hasher.finalize().hexString
        return BuildContext(
            digest: ContextDigest(hex: hex)!,
            size: size,
            compression: summary.compression == .gzip ? .gzip : .none)
    }

    /// `ContextArchiveError` → `BuildGateError` with the code the API maps to 415, 400, 413 or 422.
    private static func mapArchiveErrors<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as ContextArchiveError {
            let code: BuildGateError.Code = switch error.kind {
            case .notAnArchive: .unsupportedMediaType
            case .corrupt: .corruptArchive
            case .tooLarge: .contextTooLarge
            case .forbiddenEntry, .missingDockerfile: .invalidContext
            }
            throw BuildGateError(code, error.message)
        }
    }
}

extension Sequence<UInt8> {
    var hexString: String {
        let digits = Array("0123456789abcdef".utf8)
        return String(decoding: flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0xf)]] }, as: UTF8.self)
    }
}
