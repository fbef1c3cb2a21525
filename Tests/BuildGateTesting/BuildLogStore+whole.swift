import BuildGateCore

extension BuildLogStore {
    /// Every byte of the log as it stands, read piece by piece as the API does.
    package func whole(_ id: BuildID) async throws -> [UInt8] {
        var bytes: [UInt8] = []
        while true {
            let piece = try await read(id, from: Int64(bytes.count), maxLength: 1 << 20)
            guard !piece.isEmpty else { return bytes }
            bytes += piece
        }
    }

    /// The same as text.
    package func text(_ id: BuildID) async throws -> String {
        String(decoding: try await whole(id), as: UTF8.self)
    }
}
