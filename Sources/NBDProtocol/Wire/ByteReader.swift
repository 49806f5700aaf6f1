/// Reads big-endian integers, byte runs and NBD strings from a byte array.
///
/// Every read is bounds-checked and throws `NBDProtocolError` (`.truncated`) instead of trapping;
/// length arguments are checked against what remains before anything is allocated, so an
/// attacker-chosen length can never cause a large allocation.
public struct ByteReader: Sendable {
    public let bytes: [UInt8]
    public private(set) var position: Int

    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
        position = 0
    }

    public init(_ bytes: ArraySlice<UInt8>) {
        self.init(Array(bytes))
    }

    public var remaining: Int { bytes.count - position }
    public var isAtEnd: Bool { position >= bytes.count }

    private mutating func take(_ count: Int, _ what: @autoclosure () -> String) throws -> Int {
        guard count >= 0, count <= remaining else {
            throw NBDProtocolError(.truncated, "\(what()) needs \(count) bytes but only \(remaining) remain")
        }
        let start = position
        position += count
        return start
    }

    public mutating func readU8(_ what: @autoclosure () -> String = "u8") throws -> UInt8 {
        let i = try take(1, what())
        return bytes[i]
    }

    public mutating func readU16(_ what: @autoclosure () -> String = "u16") throws -> UInt16 {
        let i = try take(2, what())
        return UInt16(bytes[i]) << 8 | UInt16(bytes[i + 1])
    }

    public mutating func readU32(_ what: @autoclosure () -> String = "u32") throws -> UInt32 {
        let i = try take(4, what())
        return UInt32(bytes[i]) << 24 | UInt32(bytes[i + 1]) << 16 | UInt32(bytes[i + 2]) << 8 | UInt32(bytes[i + 3])
    }

    public mutating func readU64(_ what: @autoclosure () -> String = "u64") throws -> UInt64 {
        let high = try readU32(what())
        let low = try readU32(what())
        return UInt64(high) << 32 | UInt64(low)
    }

    /// Reads `count` bytes; `count` comes from the wire, so it is checked before copying.
    public mutating func readBytes(count: Int, _ what: @autoclosure () -> String = "bytes") throws -> [UInt8] {
        let i = try take(count, what())
        return Array(bytes[i ..< i + count])
    }

    /// Same as `readBytes(count:)` for a 32-bit wire length (no conversion trap on 32-bit hosts).
    public mutating func readBytes(count: UInt32, _ what: @autoclosure () -> String = "bytes") throws -> [UInt8] {
        guard let n = Int(exactly: count), n <= remaining else {
            throw NBDProtocolError(.truncated, "\(what()) needs \(count) bytes but only \(remaining) remain")
        }
        return try readBytes(count: n, what())
    }

    /// Reads everything that is left.
    public mutating func readRemainingBytes() -> [UInt8] {
        let result = Array(bytes[position...])
        position = bytes.count
        return result
    }

    /// Skips `count` bytes (bounds-checked).
    public mutating func skip(_ count: Int, _ what: @autoclosure () -> String = "bytes") throws {
        _ = try take(count, what())
    }

    /// Reads an NBD string of `length` bytes: at most `maxLength` (4096 by default), no NUL, valid UTF-8.
    public mutating func readString(length: UInt32, maxLength: Int = NBDWireLimits.maximumStringLength,
                                    _ what: @autoclosure () -> String = "string") throws -> String {
        let name = what()
        guard let n = Int(exactly: length), n <= maxLength else {
            throw NBDProtocolError(.stringTooLong, "\(name) is \(length) bytes, limit is \(maxLength)")
        }
        guard n <= remaining else {
            throw NBDProtocolError(.lengthMismatch, "\(name) length \(length) runs past the \(remaining) remaining bytes")
        }
        let raw = try readBytes(count: n, name)
        return try NBDString.validate(raw, what: name)
    }

    /// Reads the rest as an NBD string (for strings whose length is "the rest of the message").
    public mutating func readRemainingString(maxLength: Int = NBDWireLimits.maximumStringLength,
                                             _ what: @autoclosure () -> String = "string") throws -> String {
        try readString(length: UInt32(clamping: remaining), maxLength: maxLength, what())
    }

    /// Throws `.trailingBytes` unless every byte was consumed.
    public func expectEnd(_ what: @autoclosure () -> String = "message") throws {
        guard isAtEnd else {
            throw NBDProtocolError(.trailingBytes, "\(what()) has \(remaining) unexpected trailing bytes")
        }
    }
}

extension ByteReader {
    /// Reads a 32-bit magic and throws `.badMagic` when it differs.
    public mutating func expectMagic(_ expected: UInt32, _ what: @autoclosure () -> String) throws {
        let found = try readU32(what())
        guard found == expected else {
            throw NBDProtocolError(.badMagic, "\(what()): expected magic 0x\(String(expected, radix: 16)), got 0x\(String(found, radix: 16))")
        }
    }

    /// Reads a 64-bit magic and throws `.badMagic` when it differs.
    public mutating func expectMagic(_ expected: UInt64, _ what: @autoclosure () -> String) throws {
        let found = try readU64(what())
        guard found == expected else {
            throw NBDProtocolError(.badMagic, "\(what()): expected magic 0x\(String(expected, radix: 16)), got 0x\(String(found, radix: 16))")
        }
    }
}
