/// Writes the header blocks of a build context's tar entries, the same bytes for the same tree wherever it is
/// packed: uid and gid 0, no user or group names, permission bits only, whole-second modification times. A name or
/// link target that does not fit a ustar header, or a size past its 8 GiB, gets a PAX header before it. Pure: the
/// caller reads the files and writes their contents (padded with `padding(after:)`), then `end`.
package enum TarEntryWriter {
    package enum Kind: Sendable, Equatable {
        case file(size: Int64)
        case directory
        case symbolicLink(target: String)
    }

    /// One entry: its path in the context (`/`-separated, relative; directories without a trailing `/`), what it
    /// is, its permission bits and modification time (seconds since 1970).
    package struct Entry: Sendable, Equatable {
        package var path: String
        package var kind: Kind
        package var mode: Int
        package var modified: Int64

        package init(path: String, kind: Kind, mode: Int, modified: Int64) {
            self.path = path
            self.kind = kind
            self.mode = mode
            self.modified = modified
        }
    }

    /// The two zero blocks that end an archive.
    package static let end = [UInt8](repeating: 0, count: 1024)

    /// Zero bytes that round a file's `size` bytes up to whole 512-byte blocks.
    package static func padding(after size: Int64) -> [UInt8] {
        [UInt8](repeating: 0, count: Int((512 - size % 512) % 512))
    }

    /// The header blocks for `entry` (a PAX header first when needed).
    package static func header(for entry: Entry) -> [UInt8] {
        let name = entry.kind == .directory ? entry.path + "/" : entry.path
        let target: String = if case .symbolicLink(let target) = entry.kind { target } else { "" }
        let size: Int64 = if case .file(let size) = entry.kind { size } else { 0 }
        var records: [(String, String)] = []
        let split = ustarSplit(name)
        if split == nil { records.append(("path", name)) }
        if target.utf8.count > 100 { records.append(("linkpath", target)) }
        if size >= 0o77777777777 { records.append(("size", String(size))) }

        var bytes: [UInt8] = []
        if !records.isEmpty {
            let data = records.flatMap { paxRecord($0.0, $0.1) }
            bytes += block(
                name: "PaxHeader", prefix: "", typeflag: "x",
                size: Int64(data.count), mode: 0o644, modified: entry.modified, linkName: "")
            bytes += data + padding(after: Int64(data.count))
        }
        let typeflag: Character =
            switch entry.kind {
            case .file: "0"
            case .directory: "5"
            case .symbolicLink: "2"
            }
        bytes += block(
            name: split?.name ?? String(decoding: name.utf8.suffix(99), as: UTF8.self), prefix: split?.prefix ?? "",
            typeflag: typeflag, size: size >= 0o77777777777 ? 0 : size, mode: entry.mode & 0o7777,
            modified: entry.modified, linkName: String(decoding: target.utf8.prefix(100), as: UTF8.self))
        return bytes
    }

    /// `name` as ustar's name (100 bytes) and prefix (155), split at a `/`; nil when it does not fit.
    private static func ustarSplit(_ name: String) -> (prefix: String, name: String)? {
        let bytes = Array(name.utf8)
        if bytes.count <= 100 { return ("", name) }
        for index in bytes.indices.reversed() where bytes[index] == UInt8(ascii: "/") {
            let prefix = bytes[..<index]
            let rest = bytes[(index + 1)...]
            if prefix.count <= 155 && rest.count <= 100 && !rest.isEmpty {
                return (String(decoding: prefix, as: UTF8.self), String(decoding: rest, as: UTF8.self))
            }
        }
        return nil
    }

    /// One PAX record: `LENGTH KEY=VALUE\n`, LENGTH counting itself.
    private static func paxRecord(_ key: String, _ value: String) -> [UInt8] {
        let body = " \(key)=\(value)\n"
        var length = body.utf8.count + 1
        while String(length).utf8.count + body.utf8.count != length { length += 1 }
        return Array("\(length)\(body)".utf8)
    }

    private static func block(
        name: String, prefix: String, typeflag: Character, size: Int64, mode: Int, modified: Int64, linkName: String
    ) -> [UInt8] {
        var header = [UInt8](repeating: 0, count: 512)
        func put(_ text: String, at offset: Int, length: Int) {
            for (index, byte) in text.utf8.prefix(length).enumerated() { header[offset + index] = byte }
        }
        func octal(_ value: Int64, at offset: Int, length: Int) {
            let digits = String(value, radix: 8)
            put(
                String(repeating: "0", count: max(0, length - 1 - digits.count)) + digits, at: offset,
                length: length - 1)
        }
        put(name, at: 0, length: 100)
        octal(Int64(mode), at: 100, length: 8)
        octal(0, at: 108, length: 8)
        octal(0, at: 116, length: 8)
        octal(size, at: 124, length: 12)
        octal(max(0, min(modified, 0o77777777777)), at: 136, length: 12)
        header[156] = typeflag.asciiValue ?? UInt8(ascii: "0")
        put(linkName, at: 157, length: 100)
        put("ustar\u{0}00", at: 257, length: 8)
        put(prefix, at: 345, length: 155)
        for index in 148..<156 { header[index] = 0x20 }
        let sum = header.reduce(0) { $0 + Int64($1) }
        octal(sum, at: 148, length: 7)
        header[155] = 0x20
        return header
    }
}
