/// Shell-style glob matching with `*` (any run of characters except `/`), `**` (anything) and `?`.
package enum Glob {
    package static func matches(_ pattern: String, _ text: String) -> Bool {
        matches(Array(pattern.utf8)[...], Array(text.utf8)[...])
    }

    private static func matches(_ pattern: ArraySlice<UInt8>, _ text: ArraySlice<UInt8>) -> Bool {
        guard let first = pattern.first else { return text.isEmpty }
        let star = UInt8(ascii: "*")
        if first == star {
            let doubled = pattern.dropFirst().first == star
            let rest = pattern.dropFirst(doubled ? 2 : 1)
            var candidate = text
            while true {
                if matches(rest, candidate) { return true }
                guard let next = candidate.first, doubled || next != UInt8(ascii: "/") else { return false }
                candidate = candidate.dropFirst()
            }
        }
        guard let character = text.first else { return false }
        guard first == UInt8(ascii: "?") ? character != UInt8(ascii: "/") : first == character else { return false }
        return matches(pattern.dropFirst(), text.dropFirst())
    }
}
