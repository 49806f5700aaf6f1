import Testing
@testable import NBDProtocol

/// Big-endian bytes for hand-built test messages.
func be<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    withUnsafeBytes(of: value.bigEndian) { Array($0) }
}

/// Bytes of an ASCII/UTF-8 string.
func utf8(_ string: String) -> [UInt8] { Array(string.utf8) }

/// The code of the `NBDProtocolError` thrown by `body`, or nil if it did not throw one.
func protocolErrorCode(_ body: () throws -> Void) -> NBDProtocolError.Code? {
    do {
        try body()
        return nil
    } catch let error as NBDProtocolError {
        return error.code
    } catch {
        return NBDProtocolError.Code(rawValue: "non-protocol error \(error)")
    }
}

/// Feeds `bytes` to `decode` one byte at a time (every strict prefix) and then all at once:
/// every prefix must fail with a protocol error (never trap), the whole must decode.
func decodeBytewise<T>(_ bytes: [UInt8], _ decode: ([UInt8]) throws -> T,
                       sourceLocation: SourceLocation = #_sourceLocation) throws -> T {
    for cut in 0 ..< bytes.count {
        let code = protocolErrorCode { _ = try decode(Array(bytes[0 ..< cut])) }
        #expect(code != nil, "prefix of \(cut) of \(bytes.count) bytes decoded", sourceLocation: sourceLocation)
    }
    return try decode(bytes)
}

/// For payloads whose last field is "the rest of the message" (a shorter prefix can be a valid,
/// different message): every prefix must decode or throw a protocol error — never trap — and
/// the whole must decode.
func decodeEveryPrefix<T>(_ bytes: [UInt8], _ decode: ([UInt8]) throws -> T,
                          sourceLocation: SourceLocation = #_sourceLocation) throws -> T {
    for cut in 0 ..< bytes.count {
        do {
            _ = try decode(Array(bytes[0 ..< cut]))
        } catch is NBDProtocolError {
        } catch {
            Issue.record("prefix of \(cut) bytes threw a non-protocol error \(error)", sourceLocation: sourceLocation)
        }
    }
    return try decode(bytes)
}
