/// Read-only view of one 512-byte tar header block (v7, ustar and GNU).
struct TarHeader {
    private let block: [UInt8]

    init(_ block: [UInt8]) {
        precondition(block.count == 512)
        self.block = block
    }

    var typeflag: UInt8 { block[156] }

    /// The entry name; for POSIX ustar, with the `prefix` field joined in front.
    var name: String {
        let name = string(0, 100)
        let isPOSIXUstar = block[257..<263].elementsEqual(Array("ustar\0".utf8))
        guard isPOSIXUstar else { return name }
        let prefix = string(345, 155)
        return prefix.isEmpty ? name : "\(prefix)/\(name)"
    }

    var linkName: String { string(157, 100) }

    /// The size field: octal text, or GNU base-256 binary when the high bit of the first byte is set.
    var size: Int64? { Self.number(block[124..<136]) }

    /// Whether the stored checksum matches the header (the sum of its bytes with the checksum field as spaces).
    /// Both unsigned and historic signed sums are accepted, as GNU tar does.
    static func checksumMatches(_ block: [UInt8]) -> Bool {
        guard let stored = number(block[148..<156]) else { return false }
        var unsigned: Int64 = 0
        var signed: Int64 = 0
        for (index, byte) in block.enumerated() {
            let value: UInt8 = (148..<156).contains(index) ? 0x20 : byte
            unsigned += Int64(value)
            signed += Int64(Int8(bitPattern: value))
        }
        return stored == unsigned || stored == signed
    }

    private func string(_ offset: Int, _ length: Int) -> String {
        let field = block[offset..<(offset + length)]
        return String(decoding: field.prefix { $0 != 0 }, as: UTF8.self)
    }

    private static func number(_ field: ArraySlice<UInt8>) -> Int64? {
        guard let first = field.first else { return nil }
        if first & 0x80 != 0 {
            // Base-256: the remaining bits, big-endian. Negative values (0xff) are not valid sizes.
            guard first == 0x80 else { return nil }
            var value: Int64 = 0
            for byte in field.dropFirst() {
                guard value < (Int64.max >> 8) else { return nil }
                value = value << 8 | Int64(byte)
            }
            return value
        }
        var value: Int64 = 0
        var sawDigit = false
        for byte in field {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "7"):
                guard value < (Int64.max >> 3) else { return nil }
                value = value << 3 | Int64(byte - UInt8(ascii: "0"))
                sawDigit = true
            case UInt8(ascii: " ") where !sawDigit:
                continue
            case 0, UInt8(ascii: " "):
                return sawDigit ? value : 0
            default:
                return nil
            }
        }
        return sawDigit ? value : 0
    }
}

/// PAX extended header records: `"<length> <key>=<value>\n"`, where length counts the whole record.
enum PAXRecords {
    static func parse(_ bytes: [UInt8]) -> [String: String]? {
        var records: [String: String] = [:]
        var index = 0
        while index < bytes.count {
            if bytes[index] == 0 { break }  // Some writers pad with NULs.
            guard let space = bytes[index...].firstIndex(of: UInt8(ascii: " ")), space > index,
                let length = Int(String(decoding: bytes[index..<space], as: UTF8.self)),
                length > space - index, index + length <= bytes.count,
                bytes[index + length - 1] == UInt8(ascii: "\n")
            else { return nil }
            let record = bytes[(space + 1)..<(index + length - 1)]
            guard let equals = record.firstIndex(of: UInt8(ascii: "=")) else { return nil }
            let key = String(decoding: record[record.startIndex..<equals], as: UTF8.self)
            records[key] = String(decoding: record[(equals + 1)...], as: UTF8.self)
            index += length
        }
        return records
    }
}
