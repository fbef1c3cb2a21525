import Foundation

/// Percent-encoding for the gateway's HTTP clients (engine, cluster and forge APIs).
package enum URLQuery {
    /// RFC 3986 unreserved characters, ASCII only (Foundation's `.alphanumerics` also lets through letters such as
    /// `é`, which a URL cannot carry raw).
    private static let unreserved = CharacterSet(
        charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

    /// `text` with everything but unreserved characters percent-encoded: for one query value or path segment.
    package static func percentEncoded(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: unreserved) ?? ""
    }

    /// A URL query from name/value pairs, each value percent-encoded. Empty pairs give an empty string, else it
    /// starts with `?`.
    package static func encode(_ items: [(String, String)]) -> String {
        guard !items.isEmpty else { return "" }
        return "?" + items.map { key, value in "\(key)=\(percentEncoded(value))" }.joined(separator: "&")
    }
}
