import AsyncAlgorithms
import BuildGateCore
import ContextArchive
import Hummingbird
import NIOCore
import NIOFileSystem
import ServiceLifecycle

/// Receives one uploaded context: streams it to a private temporary file while hashing it (sha256) and validating
/// the archive, never holding the body in memory, and stores it under its digest when it is whole and valid.
///
/// On any failure the temporary file is removed before the error is thrown, so a rejected upload leaves nothing.
/// An upload still arriving `shutdownGrace` after the gateway began shutting down is cut off the same way (503
/// `shuttingDown`), so a client trickling bytes cannot hold a shutdown open.
struct ContextIntake: Sendable {
    struct Limits: Sendable {
        /// Largest body accepted, in bytes.
        var maxContextSize: Int64 = 2 << 30
        var archive = ContextArchiveValidator.Limits()
        /// How long an upload may go on once the gateway starts shutting down.
        var shutdownGrace: Duration = .seconds(30)
    }

    let store: any ContextStore
    let limits: Limits

    func receive(_ body: RequestBody, dockerfile: String) async throws -> BuildContext {
        let upload = try store.makeUploadFile()
        do {
            let context = try await endingWithinShutdownGrace {
                try await write(body, to: upload, dockerfile: dockerfile)
            }
            try store.commit(upload: upload, as: context)
            return context
        } catch {
            store.discard(upload: upload)
            throw error
        }
    }

    /// Runs `operation` (the upload), cancelling it `shutdownGrace` after graceful shutdown begins.
    private func endingWithinShutdownGrace<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T)
        async throws -> T
    {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await operation() }
            group.addTask { [grace = limits.shutdownGrace] in
                try await gracefulShutdown()  // returns once shutdown begins; throws when the upload ended first
                try await Task.sleep(for: grace)
                return nil
            }
            defer { group.cancelAll() }
            guard let value = try await group.next()! else {
                throw APIError(
                    status: .serviceUnavailable, code: "shuttingDown",
                    message: "the gateway shut down before the upload finished; send it again",
                    headers: [.retryAfter: "30"])
            }
            return value
        }
    }

    /// What the socket side found: the context's size, digest and compression.
    private struct Checked: Sendable {
        var context: BuildContext
    }

    /// Bytes handed from the socket side to the disk side at a time, and written at a time.
    static let handOff = 1 << 20

    /// The socket, the checks (sha256 and the archive validator) and the disk run at once: one task reads and checks
    /// the body and hands it on in 1 MiB batches; the other writes them, 1 MiB at a time, straight to the disk
    /// (`UploadFileWriter`: no copy into the page cache, no writeback left for the fsync). The hand-off waits until
    /// the disk side takes the batch (`AsyncChannel`), so a slow disk slows the reading (TCP back-pressure) and
    /// memory stays at a few MiB per upload, however large.
    private func write(_ body: RequestBody, to path: String, dockerfile: String) async throws -> BuildContext {
        try await FileSystem.shared.withFileHandle(
            forWritingAt: FilePath(path), options: .modifyFile(createIfNecessary: false)
        ) { file in
            let batches = AsyncChannel<[ByteBuffer]>()
            return try await withThrowingTaskGroup(of: Checked?.self) { group in
                group.addTask {
                    do {
                        let writer = UploadFileWriter(capacity: Self.handOff)
                        try await file.withUnsafeDescriptor { writer.writeDirectly(to: $0.rawValue) }
                        for await batch in batches {
                            try await file.withUnsafeDescriptor { try writer.write(batch, to: $0.rawValue) }
                        }
                        try await file.withUnsafeDescriptor { try writer.finish(to: $0.rawValue) }
                        return nil
                    } catch {
                        batches.finish()  // the socket side stops waiting for a taker
                        throw error
                    }
                }
                group.addTask { [limits] in
                    defer { batches.finish() }
                    var digester = ContextArchiveDigester(dockerfile: dockerfile, limits: limits.archive)
                    var batch: [ByteBuffer] = []
                    var batched = 0
                    for try await buffer in body {
                        try Task.checkCancellation()
                        guard digester.size + Int64(buffer.readableBytes) <= limits.maxContextSize else {
                            throw BuildGateError(
                                .contextTooLarge,
                                "the context is larger than the limit of \(limits.maxContextSize) bytes")
                        }
                        try buffer.withUnsafeReadableBytes { bytes in
                            try Self.mapArchiveErrors { try digester.consume(bytes) }
                        }
                        batch.append(buffer)
                        batched += buffer.readableBytes
                        if batched >= Self.handOff {
                            await batches.send(batch)
                            (batch, batched) = ([], 0)
                        }
                    }
                    if !batch.isEmpty { await batches.send(batch) }
                    let (summary, sha256) = try Self.mapArchiveErrors { try digester.finish() }
                    return Checked(
                        context: BuildContext(
                            digest: ContextDigest(sha256: sha256), size: digester.size,
                            compression: summary.compression == .gzip ? .gzip : .none))
                }
                var checked: Checked?
                for try await result in group {
                    if let result { checked = result }
                }
                guard let checked else {
                    throw BuildGateError(.internalError, "the upload ended without its checks")
                }
                return checked.context
            }
        }
    }

    /// `ContextArchiveError` → `BuildGateError` with the code the API maps to 415, 400, 413 or 422.
    private static func mapArchiveErrors<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as ContextArchiveError {
            let code: BuildGateError.Code =
                switch error.kind {
                case .notAnArchive: .unsupportedMediaType
                case .corrupt: .corruptArchive
                case .tooLarge: .contextTooLarge
                case .forbiddenEntry, .missingDockerfile: .invalidContext
                }
            throw BuildGateError(code, error.message)
        }
    }
}
