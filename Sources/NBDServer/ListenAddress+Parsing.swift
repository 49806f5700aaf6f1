extension ListenAddress {
    /// Parses `HOST:PORT`, `[IPv6]:PORT`, `:PORT` (all local addresses) or `unix:PATH`, the
    /// forms `swiftnbd serve --metrics` takes. Throws `ServerError(.badConfiguration)` saying
    /// what is wrong.
    public init(parsing text: String) throws {
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            guard !path.isEmpty else { throw ServerError(.badConfiguration, "'\(text)': unix: needs a socket path") }
            self = .unix(path: path)
            return
        }
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                throw ServerError(.badConfiguration, "'\(text)': an IPv6 address needs its closing ']'")
            }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { throw ServerError(.badConfiguration, "'\(text)': expected [ADDRESS]:PORT") }
            portText = rest.dropFirst()
            guard !host.isEmpty else { throw ServerError(.badConfiguration, "'\(text)': empty IPv6 address") }
        } else {
            guard let colon = text.lastIndex(of: ":") else {
                throw ServerError(.badConfiguration, "'\(text)': expected ADDRESS:PORT, [IPv6]:PORT or unix:PATH")
            }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            guard !host.contains(":") else {
                throw ServerError(.badConfiguration, "'\(text)': write an IPv6 address in brackets, e.g. [::1]:9100")
            }
        }
        guard !portText.isEmpty, portText.allSatisfy(\.isASCII), portText.allSatisfy(\.isNumber),
              let port = UInt16(portText) else {
            throw ServerError(.badConfiguration, "'\(text)': the port must be a number from 0 to 65535")
        }
        self = .tcp(host: host.isEmpty ? nil : String(host), port: port)
    }
}
