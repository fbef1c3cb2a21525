import Foundation

/// A URL query from name/value pairs, each value percent-encoded (RFC 3986 unreserved characters kept), for the
/// HTTP clients of engine and cluster APIs. Empty pairs give an empty string, else it starts with `?`.
package enum URLQuery {
    package static func encode(_ items: [(String, String)]) -> String {
        guard !items.isEmpty else { return "" }
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return "?" + items.map { key, value in
            "\(key)=\(value.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")"
        }.joined(separator: "&")
    }
}
