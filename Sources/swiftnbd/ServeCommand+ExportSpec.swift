/// One `--export NAME=PATH[,ro][,tls-only][,format=FMT][,bitmap=NAME]...[,desc=TEXT]` value.
///
/// `desc=` must come last: everything after it (commas included) is the description.
struct ExportSpec: Equatable, Sendable {
    var name: String
    var path: String
    var readOnly = false
    var tlsOnly = false
    var format: String?
    var description: String?
    /// Persistent bitmaps offered as `qemu:dirty-bitmap:NAME` (`bitmap=NAME`, repeatable).
    var bitmaps: [String] = []

    struct ParseError: Error, CustomStringConvertible {
        var description: String
    }

    init(name: String, path: String, readOnly: Bool = false, tlsOnly: Bool = false,
         format: String? = nil, description: String? = nil) {
        self.name = name
        self.path = path
        self.readOnly = readOnly
        self.tlsOnly = tlsOnly
        self.format = format
        self.description = description
    }

    init(parsing text: String) throws {
        guard let equals = text.firstIndex(of: "=") else {
            throw ParseError(description: "--export '\(text)': expected NAME=PATH[,ro][,tls-only][,format=FMT][,bitmap=NAME]...[,desc=TEXT]")
        }
        name = String(text[..<equals])
        var rest = text[text.index(after: equals)...]
        var description: String?
        if let descRange = rest.range(of: ",desc=") {
            description = String(rest[descRange.upperBound...])
            rest = rest[..<descRange.lowerBound]
        }
        let parts = rest.split(separator: ",", omittingEmptySubsequences: false)
        guard let first = parts.first, !first.isEmpty else {
            throw ParseError(description: "--export '\(text)': missing image path after '='")
        }
        path = String(first)
        for option in parts.dropFirst() {
            switch option {
            case "ro", "readonly", "read-only": readOnly = true
            case "tls-only": tlsOnly = true
            case let other where other.hasPrefix("format="):
                format = String(other.dropFirst("format=".count))
            case let other where other.hasPrefix("bitmap="):
                let bitmap = String(other.dropFirst("bitmap=".count))
                guard !bitmap.isEmpty else { throw ParseError(description: "--export '\(text)': bitmap= needs a name") }
                bitmaps.append(bitmap)
            default:
                throw ParseError(description: "--export '\(text)': unknown option '\(option)' (known: ro, tls-only, format=FMT, bitmap=NAME, desc=TEXT)")
            }
        }
        self.description = description
    }
}
