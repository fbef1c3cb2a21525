/// Why an upload is not an acceptable build context.
public struct ContextArchiveError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// Neither tar nor gzip-compressed tar (or a compression the gateway does not take).
        case notAnArchive
        /// The archive is truncated or its bytes are corrupt (bad checksum, bad gzip data, bad PAX record).
        case corrupt
        /// A well-formed entry a build context must not hold; `path` names it.
        case forbiddenEntry(path: String)
        /// The archive expands past the configured limit.
        case tooLarge
        /// The Dockerfile named by the request is not in the archive.
        case missingDockerfile(path: String)
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}
