/// A `.dockerignore` file, read and matched as Docker reads it (moby/patternmatcher, as the docker CLI uses it).
///
/// - One pattern a line; blank lines and lines starting with `#` are skipped; surrounding white space is trimmed.
/// - `!` makes an exception: a path it matches is sent even if an earlier pattern excluded it. The last pattern
///   that matches a path decides.
/// - Patterns are cleaned like Go's `filepath.Clean` (`./a//b/` is `a/b`) and a leading `/` is dropped: they are
///   always relative to the context's root.
/// - `*` matches any run of characters but `/`, `?` one character but `/`, `[…]` a character class, `\` escapes the
///   next character; `**` matches any number of directories, none included (`**/*.go` matches `a.go` and `a/b.go`).
/// - A pattern that matches a directory excludes everything below it (`node_modules` excludes
///   `node_modules/x/y.js`), unless a later exception matches the file itself.
///
/// Paths given to `excludes` are relative, `/`-separated, without a leading `./`.
package struct DockerIgnore {
    private struct Pattern {
        /// The cleaned text, for `mayIncludeBelow`.
        var text: String
        var exception: Bool
        var regex: Regex<Substring>
    }

    private var patterns: [Pattern] = []

    /// A line that is not a pattern (an unterminated `[`, say).
    package struct InvalidPattern: Error, Equatable, CustomStringConvertible {
        package var pattern: String
        package var description: String { "the .dockerignore pattern '\(pattern)' is not a valid pattern" }
    }

    /// No patterns: nothing is excluded.
    package init() {}

    /// Reads a `.dockerignore`'s text. A pattern that is not a valid pattern (an unterminated `[`) is an error, as it
    /// is for docker.
    package init(_ text: String) throws(DockerIgnore.InvalidPattern) {
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            var line = rawLine.trimmingWhitespace()
            if line.isEmpty || line.hasPrefix("#") { continue }
            var exception = false
            if line.hasPrefix("!") {
                exception = true
                line = line.dropFirst().trimmingWhitespace()
                if line.isEmpty { continue }
            }
            try add(String(line), exception: exception)
        }
    }

    /// Adds a pattern after the others (an exception with `exception`).
    package mutating func add(_ pattern: String, exception: Bool) throws(DockerIgnore.InvalidPattern) {
        var cleaned = Self.clean(pattern)
        if cleaned.count > 1 && cleaned.hasPrefix("/") { cleaned.removeFirst() }
        let regex: Regex<Substring>
        do {
            regex = try Regex(Self.regex(for: cleaned), as: Substring.self)
        } catch {
            throw InvalidPattern(pattern: pattern)
        }
        patterns.append(Pattern(text: cleaned, exception: exception, regex: regex))
    }

    /// Whether the file or directory at `path` is left out of the context.
    package func excludes(_ path: String) -> Bool {
        let parents = path.split(separator: "/").dropLast()
        var excluded = false
        for pattern in patterns {
            // Only a pattern that could change the answer is tried (patternmatcher's order of evaluation).
            if pattern.exception != excluded { continue }
            var matches = path.wholeMatch(of: pattern.regex) != nil
            if !matches && !parents.isEmpty {
                matches = (1...parents.count).contains { count in
                    parents.prefix(count).joined(separator: "/").wholeMatch(of: pattern.regex) != nil
                }
            }
            if matches { excluded = !pattern.exception }
        }
        return excluded
    }

    /// Whether an exception could bring back something below the excluded directory `directory`: when none can, a
    /// walk need not look inside it at all.
    package func mayIncludeBelow(_ directory: String) -> Bool {
        patterns.contains { pattern in
            guard pattern.exception else { return false }
            // An exception with wildcards before its last component might match anywhere; one without them only
            // below a directory it names.
            let firstWildcard = pattern.text.firstIndex { "*?[\\".contains($0) }
            let literal = firstWildcard.map { String(pattern.text[..<$0]) } ?? pattern.text
            return literal.hasPrefix(directory + "/") || (directory + "/").hasPrefix(literal)
                || !literal.contains("/") && firstWildcard != nil
        }
    }

    /// Go's `filepath.Clean` on a `/`-separated path.
    static func clean(_ path: String) -> String {
        let rooted = path.hasPrefix("/")
        var parts: [Substring] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            switch part {
            case ".": continue
            case "..":
                if let last = parts.last, last != ".." {
                    parts.removeLast()
                } else if !rooted {
                    parts.append(part)
                }
            default: parts.append(part)
            }
        }
        let joined = parts.joined(separator: "/")
        if rooted { return "/" + joined }
        return joined.isEmpty ? "." : joined
    }

    /// patternmatcher's translation of a pattern into a regular expression.
    static func regex(for pattern: String) -> String {
        var result = ""
        var characters = pattern[...]
        while let character = characters.popFirst() {
            switch character {
            case "*":
                if characters.first == "*" {
                    characters.removeFirst()
                    while characters.first == "*" { characters.removeFirst() }
                    if characters.first == "/" { characters.removeFirst() }
                    result += characters.isEmpty ? ".*" : "(?:.*/)?"
                } else {
                    result += "[^/]*"
                }
            case "?":
                result += "[^/]"
            case "\\":
                if let escaped = characters.popFirst() { result += "\\" + String(escaped) } else { result += "\\\\" }
            case "[":
                // A character class passes through to the end of the class (`[^…]` negates, as in Go).
                result += "["
                while let inner = characters.popFirst() {
                    if inner == "\\", let escaped = characters.popFirst() {
                        result += "\\" + String(escaped)
                        continue
                    }
                    if inner == "[" { result += "\\[" } else { result.append(inner) }
                    if inner == "]" { break }
                }
            default:
                if ".+()|{}$^]".contains(character) { result += "\\" }
                result.append(character)
            }
        }
        return result
    }
}

extension Substring {
    fileprivate func trimmingWhitespace() -> Substring {
        var text = self
        while let first = text.first, first.isWhitespace { text.removeFirst() }
        while let last = text.last, last.isWhitespace { text.removeLast() }
        return text
    }
}
