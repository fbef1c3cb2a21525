import BuildGateCore
import Foundation

/// Contexts as files: uploads in `<root>/tmp`, stored contexts in `<root>/contexts/sha256/<hex>`.
///
/// File names come only from random UUIDs and validated digests, never from the request.
package struct FileContextStore: ContextStore {
    private let uploadsDirectory: String
    private let contextsDirectory: String

    /// Creates the directories under `dataDirectory` if needed.
    package init(dataDirectory: String) throws {
        uploadsDirectory = "\(dataDirectory)/tmp"
        contextsDirectory = "\(dataDirectory)/contexts/sha256"
        for directory in [uploadsDirectory, contextsDirectory] {
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
    }

    package func makeUploadFile() throws -> String {
        let path = "\(uploadsDirectory)/upload-\(UUID().uuidString.lowercased())"
        let descriptor = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw BuildGateError(
                .internalError, "cannot create an upload file",
                cause: POSIXErrorCode(rawValue: errno).map { POSIXError($0) })
        }
        close(descriptor)
        return path
    }

    package func commit(upload path: String, as context: BuildContext) throws {
        try fsync(path: path, flags: O_RDONLY)
        let destination = self.path(of: context)
        if FileManager.default.fileExists(atPath: destination) {
            discard(upload: path)
            // Stored again, for a new build: retention measures a context's age from its latest store.
            utimes(destination, nil)
            return
        }
        guard rename(path, destination) == 0 else {
            throw BuildGateError(
                .internalError, "cannot store the context",
                cause: POSIXErrorCode(rawValue: errno).map { POSIXError($0) })
        }
        try fsync(path: contextsDirectory, flags: O_RDONLY | O_DIRECTORY)
    }

    package func discard(upload path: String) {
        guard path.hasPrefix(uploadsDirectory + "/") else { return }
        unlink(path)
    }

    package func path(of context: BuildContext) -> String {
        "\(contextsDirectory)/\(context.digest.hex)"
    }

    package func retain(_ context: BuildContext) -> Bool {
        // A new modification time, as a commit of the same bytes gives: `remove(_:ifStoredBefore:)` then keeps it.
        utimes(path(of: context), nil) == 0
    }

    package func remove(_ digest: ContextDigest, ifStoredBefore date: Date) -> Bool {
        let path = "\(contextsDirectory)/\(digest.hex)"
        var info = stat()
        guard stat(path, &info) == 0 else { return errno == ENOENT }
        guard TimeInterval(info.st_mtim.tv_sec) < date.timeIntervalSince1970 else { return false }
        return unlink(path) == 0 || errno == ENOENT
    }

    /// Paths of uploads left behind (e.g. by a crash); swept at start-up. When gateways share the data directory,
    /// another one may be writing an upload now: then only those not written since `cutoff` count.
    package func leftoverUploads(notModifiedSince cutoff: Date? = nil) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: uploadsDirectory)) ?? [])
            .filter { $0.hasPrefix("upload-") }
            .map { "\(uploadsDirectory)/\($0)" }
            .filter { path in
                guard let cutoff else { return true }
                var info = stat()
                return stat(path, &info) == 0 && TimeInterval(info.st_mtim.tv_sec) < cutoff.timeIntervalSince1970
            }
    }

    private func fsync(path: String, flags: Int32) throws {
        let descriptor = open(path, flags | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw BuildGateError(.internalError, "cannot open \(path) to sync it")
        }
        defer { close(descriptor) }
        guard Foundation.fsync(descriptor) == 0 else {
            throw BuildGateError(.internalError, "cannot sync \(path)")
        }
    }
}
