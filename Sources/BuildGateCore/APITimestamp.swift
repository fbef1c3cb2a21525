import Foundation

/// How the HTTP API writes times: ISO 8601 with fractional seconds (`2026-12-04T19:50:29.815Z`). The server's
/// encoder and the API's readers in this repository (the command-line client, the dashboard) use this one format.
package enum APITimestamp {
    package static let style = Date.ISO8601FormatStyle(includingFractionalSeconds: true)

    /// The time `text` names, or nil when there is none or it is not in the API's format.
    package static func date(_ text: String?) -> Date? {
        text.flatMap { try? style.parse($0) }
    }
}
