/// Build output as HTML: every line in its own element with an anchor (`#L12`), HTML escaped, and ANSI colour and
/// bold (SGR) codes as classes; other escape sequences are dropped. The dashboard's script does the same for lines
/// that arrive live.
enum AnsiHTML {
    static func lines(_ text: String, firstLine: Int = 1) -> String {
        var html = ""
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        if lines.last == "" { lines.removeLast() }
        for (index, line) in lines.enumerated() {
            let number = firstLine + index
            html += "<div class=\"line\" id=\"L\(number)\"><a class=\"number\" href=\"#L\(number)\">\(number)</a>"
            html += "<span class=\"text\">\(render(line))</span></div>"
        }
        return html
    }

    /// One line: escaped text with `<span class="ansi-…">` for SGR colours and bold.
    static func render(_ line: Substring) -> String {
        var html = ""
        var classes: [String] = []
        var open = false
        var characters = line[...]
        func style(_ codes: [Int]) {
            for code in codes.isEmpty ? [0] : codes {
                switch code {
                case 0: classes = []
                case 1: classes.append("ansi-bold")
                case 30...37: classes.removeAll { $0.hasPrefix("ansi-fg") }; classes.append("ansi-fg\(code - 30)")
                case 90...97: classes.removeAll { $0.hasPrefix("ansi-fg") }; classes.append("ansi-fg\(code - 90 + 8)")
                case 39: classes.removeAll { $0.hasPrefix("ansi-fg") }
                default: break
                }
            }
            if open { html += "</span>" }
            open = !classes.isEmpty
            if open { html += "<span class=\"\(classes.joined(separator: " "))\">" }
        }
        while let character = characters.popFirst() {
            switch character {
            case "\u{1B}":
                guard characters.first == "[" else { continue }
                characters.removeFirst()
                let parameters = characters.prefix { $0.isNumber || $0 == ";" }
                characters.removeFirst(parameters.count)
                guard let final = characters.popFirst() else { break }
                if final == "m" { style(parameters.split(separator: ";").compactMap { Int($0) }) }
            case "&": html += "&amp;"
            case "<": html += "&lt;"
            case ">": html += "&gt;"
            case "\"": html += "&quot;"
            case "\r": continue
            default: html.append(character)
            }
        }
        if open { html += "</span>" }
        return html
    }
}
