/// Exposes another device read-only: writes of every kind fail with `.readOnly`,
/// reads, extents and cache pass through.
public final class ReadOnlyDevice: BlockDevice, @unchecked Sendable {
    public let base: any BlockDevice

    public init(_ base: any BlockDevice) { self.base = base }

    public var size: UInt64 { base.size }
    public var capabilities: BlockDeviceCapabilities {
        base.capabilities.subtracting([.trim, .writeZeroes, .fastZero]).union(.readOnly)
    }
    public var blockSizes: BlockSizeConstraints { base.blockSizes }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        try base.read(into: buffer, at: offset)
    }
    public func readIfImmediate(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Bool {
        try base.readIfImmediate(into: buffer, at: offset)
    }
    public func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, fua: Bool) throws { throw refusal() }
    /// Nothing was written through this wrapper, so there is nothing to make durable.
    public func flush() throws {}
    public func trim(offset: UInt64, length: UInt64, fua: Bool) throws { throw refusal() }
    public func writeZeroes(offset: UInt64, length: UInt64, mayTrim: Bool, fastOnly: Bool, fua: Bool) throws {
        throw refusal()
    }
    public func cache(offset: UInt64, length: UInt64) throws { try base.cache(offset: offset, length: length) }
    public func extents(offset: UInt64, length: UInt64) throws -> [Extent] {
        try base.extents(offset: offset, length: length)
    }
    public func allocationDepth(offset: UInt64, length: UInt64) throws -> [DepthExtent]? {
        try base.allocationDepth(offset: offset, length: length)
    }
    public func close() throws { try base.close() }

    private func refusal() -> BlockDeviceError { BlockDeviceError(.readOnly, "the export is read-only") }
}
