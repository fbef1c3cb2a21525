/// A target platform, `os/architecture[/variant]`, e.g. `linux/amd64` or `linux/arm/v7`.
package struct Platform: Hashable, Sendable, CustomStringConvertible {
    package let os: String
    package let architecture: String
    package let variant: String?

    package init(parsing text: String) throws(BuildGateError) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        let valid =
            (2...3).contains(parts.count)
            && parts.allSatisfy {
                !$0.isEmpty && $0.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "_") }
            }
        guard valid else {
            throw BuildGateError(
                .invalidParameter, "platform '\(text)' must look like os/architecture[/variant], e.g. linux/amd64")
        }
        self.os = parts[0]
        self.architecture = parts[1]
        self.variant = parts.count == 3 ? parts[2] : nil
    }

    package var description: String { [os, architecture, variant].compactMap { $0 }.joined(separator: "/") }
}

extension Platform: Codable {
    package init(from decoder: any Decoder) throws {
        try self.init(parsing: try decoder.singleValueContainer().decode(String.self))
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
