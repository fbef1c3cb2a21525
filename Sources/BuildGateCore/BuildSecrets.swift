import Foundation

/// A tenant's build secrets (an npm token, an SSH key…), sealed at rest. The API sets, lists (names only) and
/// deletes them; only the dispatcher reads values, for the owning tenant's builds, and hands them to the builder as
/// `RUN --mount=type=secret` sources: never as build args, never in the image or the log.
package protocol BuildSecretRepository: Sendable {
    func setSecret(_ value: SecretValue, tenant: TenantID, name: String, at date: Date) async throws
    /// The named secrets' values; a name the tenant has not set is missing from the result.
    func secrets(tenant: TenantID, names: [String]) async throws -> [String: SecretValue]
    /// The tenant's secret names, with when each was last set.
    func names(of tenant: TenantID) async throws -> [(name: String, updatedAt: Date)]
    func deleteSecret(tenant: TenantID, name: String) async throws -> Bool
}

package enum BuildSecretName {
    /// 1 to 64 of `A-Z a-z 0-9 _ - .`, not starting with a dot: usable as a mount id and as a file name.
    package static func isValid(_ name: String) -> Bool {
        (1...64).contains(name.utf8.count) && !name.hasPrefix(".")
            && name.utf8.allSatisfy { $0.isASCIIAlphanumeric || "_-.".utf8.contains($0) }
    }

    /// Secret values are small: keys, tokens, config files.
    package static let maxValueSize = 64 * 1024
}

extension UInt8 {
    fileprivate var isASCIIAlphanumeric: Bool {
        (0x30...0x39).contains(self) || (0x41...0x5a).contains(self) || (0x61...0x7a).contains(self)
    }
}

/// Masks secret values in build output, as CI services do, for the case where a build step prints one.
/// Output arrives in pieces; a value split across two pieces is not caught (engines send whole lines almost
/// always). Values shorter than 4 bytes are left alone: masking them would mangle ordinary text.
package struct SecretRedactor: Sendable {
    private let values: [String]

    package init(_ secrets: some Sequence<SecretValue>) {
        values = secrets.compactMap { value in
            let text = String(decoding: value.bytes, as: UTF8.self)
            // Multi-line secrets (keys, config files) are masked line by line, as they are printed.
            return text.utf8.count >= 4 ? text : nil
        }.flatMap { text in
            [text] + text.split(whereSeparator: \.isNewline).map(String.init).filter { $0.utf8.count >= 4 }
        }.sorted { $0.utf8.count > $1.utf8.count }
    }

    package func redact(_ text: String) -> String {
        values.reduce(text) { $0.replacingOccurrences(of: $1, with: "****") }
    }
}
