/// Rules for NBD strings: UTF-8, no NUL, at most 4096 bytes (docs/protocol.md §1.2).
public enum NBDString {
    /// Checks raw wire bytes and returns them as a String, or throws.
    public static func validate(_ raw: [UInt8], maxLength: Int = NBDWireLimits.maximumStringLength,
                                what: String = "string") throws -> String {
        guard raw.count <= maxLength else {
            throw NBDProtocolError(.stringTooLong, "\(what) is \(raw.count) bytes, limit is \(maxLength)")
        }
        guard !raw.contains(0) else {
            throw NBDProtocolError(.embeddedNUL, "\(what) contains a NUL byte")
        }
        guard let string = String(validating: raw, as: UTF8.self) else {
            throw NBDProtocolError(.invalidUTF8, "\(what) is not valid UTF-8")
        }
        return string
    }

    /// Checks a string we are about to send, so we never emit something a peer must reject.
    public static func checkEncodable(_ string: String, what: String = "string") throws {
        let count = string.utf8.count
        guard count <= NBDWireLimits.maximumStringLength else {
            throw NBDProtocolError(.stringTooLong, "\(what) is \(count) bytes, limit is \(NBDWireLimits.maximumStringLength)")
        }
        guard !string.utf8.contains(0) else {
            throw NBDProtocolError(.embeddedNUL, "\(what) contains a NUL byte")
        }
    }

    /// Decodes a human-readable message leniently (invalid UTF-8 replaced) for display only.
    public static func lenientMessage(_ raw: [UInt8]) -> String {
        String(decoding: raw, as: UTF8.self)
    }

    /// Cuts `name` to at most `limit` characters for echoing in error messages (CVE-2020-10761).
    public static func truncatedForEcho(_ name: String, limit: Int = NBDWireLimits.maximumEchoedNameLength) -> String {
        guard name.count > limit else { return name }
        return String(name.prefix(limit)) + "…"
    }

    /// Cuts a message so its UTF-8 form is at most `maxBytes` bytes, on a character boundary.
    public static func truncatedMessage(_ message: String, maxBytes: Int = NBDWireLimits.maximumOptionErrorMessageLength) -> String {
        guard message.utf8.count > maxBytes else { return message }
        var result = ""
        var used = 0
        for character in message {
            let size = character.utf8.count
            if used + size > maxBytes { break }
            result.append(character)
            used += size
        }
        return result
    }
}
