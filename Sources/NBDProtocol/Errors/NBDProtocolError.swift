/// The one error type of the NBDProtocol module.
///
/// A struct with an open-set `code` (not an enum) so new failure kinds can be added without
/// breaking callers that switch over codes. Decoders throw it for every malformed input; nothing
/// in this module traps on bytes that came from the network.
public struct NBDProtocolError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What kind of problem was found.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        /// Fewer bytes than the message needs.
        public static let truncated = Code(rawValue: "truncated")
        /// More bytes than the message may have (a fixed header or an exact-length payload).
        public static let trailingBytes = Code(rawValue: "trailingBytes")
        /// A magic number did not match.
        public static let badMagic = Code(rawValue: "badMagic")
        /// A nested length disagrees with the enclosing length.
        public static let lengthMismatch = Code(rawValue: "lengthMismatch")
        /// A string is longer than the protocol's 4096-byte limit (or a caller's smaller cap).
        public static let stringTooLong = Code(rawValue: "stringTooLong")
        /// A string contains a NUL byte.
        public static let embeddedNUL = Code(rawValue: "embeddedNUL")
        /// A string is not valid UTF-8.
        public static let invalidUTF8 = Code(rawValue: "invalidUTF8")
        /// A field holds a value the protocol forbids (zero extent length, error 0 in an error chunk…).
        public static let invalidValue = Code(rawValue: "invalidValue")
        /// A value does not fit the field it must be encoded into (e.g. a 64-bit length in a compact request).
        public static let valueOutOfRange = Code(rawValue: "valueOutOfRange")
        /// A count is larger than the protocol or this implementation allows.
        public static let tooManyItems = Code(rawValue: "tooManyItems")

        public var description: String { rawValue }
    }

    public var code: Code
    public var message: String
    public var file: String
    public var line: UInt

    public init(_ code: Code, _ message: String, file: String = #fileID, line: UInt = #line) {
        self.code = code
        self.message = message
        self.file = file
        self.line = line
    }

    public var description: String { "NBDProtocolError.\(code): \(message) (\(file):\(line))" }

    /// Equality ignores the source location so tests and callers can compare by meaning.
    public static func == (lhs: NBDProtocolError, rhs: NBDProtocolError) -> Bool {
        lhs.code == rhs.code && lhs.message == rhs.message
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(code)
        hasher.combine(message)
    }
}
