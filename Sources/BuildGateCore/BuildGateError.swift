/// The one error type the gateway's modules throw to each other.
///
/// `code` is machine-readable and stable (clients switch on it); `message` is for people and never carries secrets.
/// Only `BuildGateAPI` turns it into an HTTP status and `{"error":{"code":…,"message":…}}`.
package struct BuildGateError: Error, Sendable, CustomStringConvertible {
    /// An extensible set of error codes, like `HTTPClientError`'s.
    package struct Code: Hashable, Sendable, CustomStringConvertible {
        package let rawValue: String
        package init(_ rawValue: String) { self.rawValue = rawValue }
        package var description: String { rawValue }

        /// A query parameter, header or body field is malformed.
        package static let invalidParameter = Code("invalidParameter")
        /// The request body is larger than the configured limit.
        package static let contextTooLarge = Code("contextTooLarge")
        /// The body is neither a tar nor a gzip-compressed tar archive.
        package static let unsupportedMediaType = Code("unsupportedMediaType")
        /// The archive is truncated or its bytes are corrupt.
        package static let corruptArchive = Code("corruptArchive")
        /// The archive is well-formed but holds something a build context must not (bad path, link, device…).
        package static let invalidContext = Code("invalidContext")
        /// The build uses an option that no builder in the pool supports (e.g. secrets with only dockerd).
        package static let noCapableBuilder = Code("noCapableBuilder")
        /// The build names a secret the tenant has not stored.
        package static let noSuchSecret = Code("noSuchSecret")
        /// No such resource (or not visible to the caller).
        package static let notFound = Code("notFound")
        /// The request conflicts with the resource's current state.
        package static let conflict = Code("conflict")
        /// The requested byte range is not (yet) there.
        package static let rangeNotSatisfiable = Code("rangeNotSatisfiable")
        /// No valid credentials (missing, unknown, revoked or expired token; bad webhook signature).
        package static let unauthorized = Code("unauthorized")
        /// Valid credentials without the needed scope.
        package static let forbidden = Code("forbidden")
        /// The data directory is short of free space; uploads wait until the operator (or retention) frees some.
        package static let insufficientStorage = Code("insufficientStorage")
        /// A tenant limit was reached; retry later.
        package static let tooManyRequests = Code("tooManyRequests")
        /// An unexpected failure inside the gateway; details stay in the server log.
        package static let internalError = Code("internalError")
    }

    package var code: Code
    package var message: String
    /// The underlying error, for the server log only; never shown to clients.
    package var cause: (any Error)?

    package init(_ code: Code, _ message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    package var description: String {
        cause.map { "\(code): \(message) (\($0))" } ?? "\(code): \(message)"
    }
}
