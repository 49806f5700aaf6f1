/// Escaping rules of the Prometheus text exposition format.
enum PrometheusText {
    /// A `# HELP` text: backslash and line feed are escaped.
    static func escapedHelp(_ text: String) -> String { escaped(text, quotes: false) }

    /// A label value: backslash, double quote and line feed are escaped.
    static func escapedLabelValue(_ value: String) -> String { escaped(value, quotes: true) }

    private static func escaped(_ text: String, quotes: Bool) -> String {
        // By scalar, not Character: "\r\n" is one Character and would hide its line feed.
        var result = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\"" where quotes: result += "\\\""
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result
    }
}
