/// Appends big-endian integers, raw bytes and strings to a growing byte array.
///
/// Encoding never fails here; message encoders check field ranges before they append.
public struct ByteWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 32) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public var count: Int { bytes.count }

    public mutating func append(_ value: UInt8) { bytes.append(value) }

    public mutating func append(_ value: UInt16) {
        bytes.append(UInt8(truncatingIfNeeded: value >> 8))
        bytes.append(UInt8(truncatingIfNeeded: value))
    }

    public mutating func append(_ value: UInt32) {
        bytes.append(UInt8(truncatingIfNeeded: value >> 24))
        bytes.append(UInt8(truncatingIfNeeded: value >> 16))
        bytes.append(UInt8(truncatingIfNeeded: value >> 8))
        bytes.append(UInt8(truncatingIfNeeded: value))
    }

    public mutating func append(_ value: UInt64) {
        append(UInt32(truncatingIfNeeded: value >> 32))
        append(UInt32(truncatingIfNeeded: value))
    }

    public mutating func append<S: Sequence>(bytes other: S) where S.Element == UInt8 {
        bytes.append(contentsOf: other)
    }

    /// Appends the UTF-8 bytes of `string` (no length prefix, no terminator).
    public mutating func append(string: String) {
        bytes.append(contentsOf: string.utf8)
    }

    public mutating func appendZeroes(count: Int) {
        bytes.append(contentsOf: repeatElement(0, count: max(0, count)))
    }
}

extension ByteWriter {
    /// Spec-style aliases (`appendU32`…) for readers who think in wire widths.
    public mutating func appendU8(_ value: UInt8) { append(value) }
    public mutating func appendU16(_ value: UInt16) { append(value) }
    public mutating func appendU32(_ value: UInt32) { append(value) }
    public mutating func appendU64(_ value: UInt64) { append(value) }
}
