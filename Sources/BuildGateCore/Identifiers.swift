import Foundation

/// The identity of one build: `b` followed by 26 lowercase base-32 characters, time-ordered.
package struct BuildID: Hashable, Sendable, StringCodable, Comparable {
    package let rawValue: String

    /// Accepts only the shape the gateway itself generates, so an identifier from a URL is safe to use in a path.
    package init?(_ rawValue: String) {
        guard rawValue.count == 27, rawValue.first == "b",
            rawValue.dropFirst().allSatisfy({ Self.alphabet.contains($0) })
        else { return nil }
        self.rawValue = rawValue
    }

    /// A new identifier: 48 bits of milliseconds since the epoch, then 82 random bits (like a ULID).
    package static func generate(at date: Date = Date()) -> BuildID {
        let millis = UInt64(max(0, date.timeIntervalSince1970 * 1000))
        var generator = SystemRandomNumberGenerator()
        var characters: [Character] = ["b"]
        for shift in stride(from: 45, through: 0, by: -5) {
            characters.append(alphabet[Int((millis >> UInt64(shift)) & 31)])
        }
        while characters.count < 27 {
            characters.append(alphabet[Int(generator.next(upperBound: UInt8(32)))])
        }
        return BuildID(String(characters))!
    }

    package var description: String { rawValue }
    package static func < (lhs: BuildID, rhs: BuildID) -> Bool { lhs.rawValue < rhs.rawValue }

    private static let alphabet = Array("0123456789abcdefghjkmnpqrstvwxyz")
}

/// The sha256 digest of a stored build context, as `sha256:<64 hex>`.
package struct ContextDigest: Hashable, Sendable, StringCodable {
    package let hex: String

    package init?(hex: String) {
        guard hex.count == 64, hex.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) else { return nil }
        self.hex = hex
    }

    /// The digest of 32 sha256 bytes.
    package init(sha256 bytes: [UInt8]) {
        precondition(bytes.count == 32, "a sha256 digest has 32 bytes")
        hex = bytes.hexString
    }

    package init?(_ string: String) {
        guard string.hasPrefix("sha256:") else { return nil }
        self.init(hex: String(string.dropFirst("sha256:".count)))
    }

    package var description: String { "sha256:\(hex)" }
}

/// A value that is a checked string on the wire: encoded as `description`, decoded through `init?(_:)`.
package protocol StringCodable: Codable, CustomStringConvertible {
    init?(_ text: String)
}

extension StringCodable {
    package init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let value = Self(text) else {
            throw DecodingError.dataCorrupted(
                .init(codingPath: decoder.codingPath, debugDescription: "'\(text)' is not a valid \(Self.self)"))
        }
        self = value
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

extension Sequence<UInt8> {
    /// Lowercase hexadecimal, two digits a byte.
    package var hexString: String {
        let digits = Array("0123456789abcdef".utf8)
        return String(decoding: flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0xf)]] }, as: UTF8.self)
    }
}
