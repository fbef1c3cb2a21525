import Foundation

/// A fresh directory under the system temp dir, removed by `remove()`.
package struct TemporaryDirectory: Sendable {
    package let path: String

    package init(_ label: String = "buildgate") throws {
        path = "\(NSTemporaryDirectory())/\(label)-\(UUID().uuidString.lowercased())"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    /// A directory at exactly `path` (for tools with path-length limits).
    package init(path: String) throws {
        self.path = path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    package func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }

    /// Every regular file below the directory, relative to it.
    package func files(under subdirectory: String = "") -> [String] {
        let root = subdirectory.isEmpty ? path : "\(path)/\(subdirectory)"
        guard let enumerator = FileManager.default.enumerator(atPath: root) else { return [] }
        return enumerator.compactMap { $0 as? String }.filter { relative in
            var isDirectory: ObjCBool = false
            return FileManager.default.fileExists(atPath: "\(root)/\(relative)", isDirectory: &isDirectory)
                && !isDirectory.boolValue
        }
    }
}

/// The repository root, found from this source file, for `migrations/` and test fixtures.
package let repositoryRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

package var migrationsDirectory: String { "\(repositoryRoot)/migrations" }
