/// One extent of a block-status reply: `length` bytes sharing the context-defined `flags`.
public struct BlockStatusExtent: Hashable, Sendable {
    public var length: UInt64
    public var flags: UInt64

    public init(length: UInt64, flags: UInt64) {
        self.length = length
        self.flags = flags
    }

    public init(length: UInt64, allocation: AllocationStateFlags) {
        self.init(length: length, flags: UInt64(allocation.rawValue))
    }
}

/// Payload of a block-status chunk for one metadata context, in either wire form.
///
/// ```
/// NBD_REPLY_TYPE_BLOCK_STATUS (5), compact        NBD_REPLY_TYPE_BLOCK_STATUS_EXT (6), extended headers
///  0  u32 context id                               0  u32 context id
///  4  n × { u32 length (≠0), u32 flags }           4  u32 count n (≠0)
///     (4 + 8n bytes, n ≥ 1)                        8  n × { u64 length (≠0), u64 flags }
///                                                     (8 + 16n bytes)
/// ```
/// The extent count comes from the chunk length (compact) or a count field (extended) that must
/// agree with it; both are checked before anything is allocated.
public struct BlockStatusChunkPayload: Hashable, Sendable {
    public enum Form: Hashable, Sendable {
        /// `NBD_REPLY_TYPE_BLOCK_STATUS`, 32-bit extents.
        case compact
        /// `NBD_REPLY_TYPE_BLOCK_STATUS_EXT`, 64-bit extents.
        case extended

        public var chunkType: NBDChunkType { self == .compact ? .blockStatus : .blockStatusExtended }
        public var descriptorSize: Int { self == .compact ? 8 : 16 }
        public var fixedSize: Int { self == .compact ? 4 : 8 }
    }

    public var contextID: UInt32
    public var extents: [BlockStatusExtent]

    public init(contextID: UInt32, extents: [BlockStatusExtent]) {
        self.contextID = contextID
        self.extents = extents
    }

    /// Payload size in `form`.
    public func wireSize(form: Form) -> Int { form.fixedSize + extents.count * form.descriptorSize }

    public func encode(into writer: inout ByteWriter, form: Form) throws {
        guard !extents.isEmpty else {
            throw NBDProtocolError(.invalidValue, "block status chunk needs at least one extent")
        }
        writer.append(contextID)
        switch form {
        case .compact:
            for extent in extents {
                guard let length = UInt32(exactly: extent.length), let flags = UInt32(exactly: extent.flags) else {
                    throw NBDProtocolError(.valueOutOfRange, "extent \(extent.length)/0x\(String(extent.flags, radix: 16)) does not fit a 32-bit descriptor")
                }
                guard length != 0 else { throw NBDProtocolError(.invalidValue, "block status extent of length 0") }
                writer.append(length)
                writer.append(flags)
            }
        case .extended:
            guard let count = UInt32(exactly: extents.count) else {
                throw NBDProtocolError(.tooManyItems, "\(extents.count) extents do not fit a u32 count")
            }
            writer.append(count)
            for extent in extents {
                guard extent.length != 0 else { throw NBDProtocolError(.invalidValue, "block status extent of length 0") }
                writer.append(extent.length)
                writer.append(extent.flags)
            }
        }
    }

    public func encoded(form: Form) throws -> [UInt8] {
        var writer = ByteWriter(capacity: wireSize(form: form))
        try encode(into: &writer, form: form)
        return writer.bytes
    }

    /// Parses a whole chunk payload in `form`.
    public init(decoding bytes: [UInt8], form: Form) throws {
        var reader = ByteReader(bytes)
        contextID = try reader.readU32("block status context id")
        let count: Int
        switch form {
        case .compact:
            guard reader.remaining >= 8, reader.remaining % 8 == 0 else {
                throw NBDProtocolError(.lengthMismatch, "BLOCK_STATUS payload of \(bytes.count) bytes is not 4 + 8n with n ≥ 1")
            }
            count = reader.remaining / 8
        case .extended:
            let declared = try reader.readU32("BLOCK_STATUS_EXT count")
            guard declared != 0, UInt64(declared) * 16 == UInt64(reader.remaining) else {
                throw NBDProtocolError(.lengthMismatch, "BLOCK_STATUS_EXT count \(declared) disagrees with payload of \(bytes.count) bytes")
            }
            count = Int(declared)
        }
        var result: [BlockStatusExtent] = []
        result.reserveCapacity(count)
        for index in 0 ..< count {
            let length: UInt64
            let flags: UInt64
            switch form {
            case .compact:
                length = UInt64(try reader.readU32("extent length"))
                flags = UInt64(try reader.readU32("extent flags"))
            case .extended:
                length = try reader.readU64("extent length")
                flags = try reader.readU64("extent flags")
            }
            guard length != 0 else {
                throw NBDProtocolError(.invalidValue, "block status extent \(index) has length 0")
            }
            result.append(BlockStatusExtent(length: length, flags: flags))
        }
        try reader.expectEnd("block status payload")
        extents = result
    }
}
