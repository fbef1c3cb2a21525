import Foundation

/// Writes tar archives byte by byte, including the hostile ones a gateway must refuse (absolute paths, `..`,
/// escaping links, devices, FIFOs, PAX and GNU long-name headers of any size). Test support only.
package struct TarWriter {
    package private(set) var bytes: [UInt8] = []

    package init() {}

    package enum EntryType: UInt8 {
        case file = 48  // "0"
        case hardLink = 49  // "1"
        case symbolicLink = 50  // "2"
        case characterDevice = 51  // "3"
        case blockDevice = 52  // "4"
        case directory = 53  // "5"
        case fifo = 54  // "6"
        case paxHeader = 120  // "x"
        case paxGlobalHeader = 103  // "g"
        case gnuLongName = 76  // "L"
    }

    package mutating func file(_ name: String, _ contents: String) {
        entry(name, type: .file, contents: Array(contents.utf8))
    }

    package mutating func directory(_ name: String) {
        entry(name, type: .directory)
    }

    package mutating func link(_ name: String, to target: String, type: EntryType) {
        entry(name, type: type, linkName: target)
    }

    /// A PAX extended header whose records apply to the next entry (with `global`, to every later entry).
    package mutating func pax(_ records: [(String, String)], global: Bool = false) {
        var data: [UInt8] = []
        for (key, value) in records {
            let body = " \(key)=\(value)\n"
            var length = body.utf8.count + 1
            while String(length).utf8.count + body.utf8.count != length { length += 1 }
            data += Array("\(length)\(body)".utf8)
        }
        entry("PaxHeader", type: global ? .paxGlobalHeader : .paxHeader, contents: data)
    }

    /// A PAX header of exactly `size` bytes (one record padded with a comment key).
    package mutating func paxOfSize(_ size: Int) {
        let overhead = " comment=\n".utf8.count
        var length = size
        while String(length).utf8.count + overhead > length { length += 1 }
        let value = String(repeating: "a", count: size - String(size).utf8.count - overhead)
        entry("PaxHeader", type: .paxHeader, contents: Array("\(size) comment=\(value)\n".utf8))
    }

    package mutating func entry(_ name: String, type: EntryType, contents: [UInt8] = [], linkName: String = "") {
        var header = [UInt8](repeating: 0, count: 512)
        func put(_ text: String, at offset: Int, length: Int) {
            for (index, byte) in text.utf8.prefix(length).enumerated() { header[offset + index] = byte }
        }
        func octal(_ value: Int, at offset: Int, length: Int) {
            put(
                String(String(value, radix: 8).suffix(length - 1)).leftPad(to: length - 1), at: offset,
                length: length - 1)
        }
        put(name, at: 0, length: 100)
        octal(0o644, at: 100, length: 8)
        octal(0, at: 108, length: 8)
        octal(0, at: 116, length: 8)
        octal(contents.count, at: 124, length: 12)
        octal(1_700_000_000, at: 136, length: 12)
        header[156] = type.rawValue
        put(linkName, at: 157, length: 100)
        put("ustar", at: 257, length: 6)
        put("00", at: 263, length: 2)
        for index in 148..<156 { header[index] = 0x20 }
        let sum = header.reduce(0) { $0 + Int($1) }
        put(String(String(sum, radix: 8)).leftPad(to: 6), at: 148, length: 6)
        header[154] = 0
        header[155] = 0x20
        bytes += header
        bytes += contents
        bytes += [UInt8](repeating: 0, count: (512 - contents.count % 512) % 512)
    }

    /// Appends raw bytes (e.g. a whole archive built elsewhere).
    package mutating func entryBytes(_ raw: [UInt8]) {
        bytes += raw
    }

    /// The two zero blocks that end an archive.
    package mutating func end() {
        bytes += [UInt8](repeating: 0, count: 1024)
    }

    /// The archive so far, gzip-compressed by the system's `gzip`.
    package func gzipped() throws -> [UInt8] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/gzip")
        process.arguments = ["-c", "-n"]
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        let data = Data(bytes)
        let writer = Thread {
            input.fileHandleForWriting.write(data)
            try? input.fileHandleForWriting.close()
        }
        writer.start()
        let compressed = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Array(compressed)
    }
}

extension String {
    fileprivate func leftPad(to length: Int) -> String {
        count >= length ? self : String(repeating: "0", count: length - count) + self
    }
}
