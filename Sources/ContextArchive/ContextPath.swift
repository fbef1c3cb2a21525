/// Path rules for build contexts: every entry lives under the context root, written relative to it.
public enum ContextPath {
    /// The normalized form of a relative path inside the context (`./a//b/` → `a/b`), or nil when the path is
    /// empty, absolute, contains a `..` component or a NUL byte.
    public static func normalize(_ path: String) -> String? {
        guard !path.isEmpty, !path.hasPrefix("/"), !path.utf8.contains(0) else { return nil }
        var components: [Substring] = []
        for component in path.split(separator: "/", omittingEmptySubsequences: true) {
            switch component {
            case ".": continue
            case "..": return nil
            default: components.append(component)
            }
        }
        return components.isEmpty ? "." : components.joined(separator: "/")
    }
}
