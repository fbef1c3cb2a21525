import Foundation

/// Where build contexts live: uploads land in a private temporary file, then move, whole and valid, into a
/// content-addressed store. Paths never come from user input.
///
/// All methods are safe to call concurrently. Temporary files and stored contexts are on the same file system, so
/// `commit` is a rename.
package protocol ContextStore: Sendable {
    /// Creates a new, empty, private temporary file for an upload and returns its path.
    func makeUploadFile() throws -> String

    /// Moves a fully written and validated upload into the store under its digest (fsyncing it first). If a
    /// context with that digest is already stored, the upload is removed instead.
    func commit(upload path: String, as context: BuildContext) throws

    /// Removes an upload that will not be committed. Never throws; a missing file is fine.
    func discard(upload path: String)

    /// The path of a stored context.
    func path(of context: BuildContext) -> String

    /// Marks a stored context as used again now, as storing the same bytes again would (retention keeps it for the
    /// new build). Returns false when it is no longer stored.
    func retain(_ context: BuildContext) -> Bool

    /// Deletes a stored context if it was stored before `date` (a context stored again since, for a new build of
    /// the same bytes, stays). Returns whether it is gone now: deleted, or not stored at all.
    func remove(_ digest: ContextDigest, ifStoredBefore date: Date) -> Bool
}
