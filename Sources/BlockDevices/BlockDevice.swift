/// Storage behind an export, knowing nothing of NBD.
///
/// The API is synchronous and blocking by design: the server and client engines run
/// each request on a worker thread (docs/architecture.md §3.4), so a device may block in
/// `pread`/`pwrite`/`fdatasync`. Implementations must be safe to call from several
/// threads at once (requests from several connections run concurrently).
public protocol BlockDevice: AnyObject, Sendable {
    /// Virtual size in bytes.
    var size: UInt64 { get }
    /// What the device can do; the NBD server derives transmission flags from this.
    var capabilities: BlockDeviceCapabilities { get }
    /// Block-size constraints the device wants advertised (NBD_INFO_BLOCK_SIZE).
    var blockSizes: BlockSizeConstraints { get }

    /// Fills `buffer` with `buffer.count` bytes starting at `offset`.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws
    /// Writes `data` at `offset`; when `fua` is set the data is durable before returning.
    func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, fua: Bool) throws
    /// Makes every completed write durable.
    func flush() throws
    /// Hints that a range may be discarded; reads of it afterwards are unspecified.
    func trim(offset: UInt64, length: UInt64, fua: Bool) throws
    /// Zeroes a range. `mayTrim`: holes may be punched (no NO_HOLE flag).
    /// `fastOnly`: fail with `.notSupported` instead of falling back to writing zeroes.
    func writeZeroes(offset: UInt64, length: UInt64, mayTrim: Bool, fastOnly: Bool, fua: Bool) throws
    /// Prefetch hint; must not change contents.
    func cache(offset: UInt64, length: UInt64) throws
    /// Allocation status (NBD `base:allocation` semantics) of the range starting at `offset`.
    /// Returns at least one extent; extents are consecutive from `offset`; the result may
    /// cover less than `length` (the caller asks again) and the last extent may run past it.
    func extents(offset: UInt64, length: UInt64) throws -> [Extent]
    /// Which layer of a backing chain provides each range (`qemu:allocation-depth`:
    /// 0 unallocated, 1 this image, 2 first backing file…). `nil` when not meaningful.
    func allocationDepth(offset: UInt64, length: UInt64) throws -> [DepthExtent]?
    /// Flushes and releases the device (file descriptors, locks). Idempotent.
    func close() throws

    /// `read(into:at:)`, but only when it can finish without waiting for storage (the data is
    /// in memory or the page cache). Returns false, having read nothing, otherwise. The
    /// server's reader thread answers such reads itself instead of waking a worker.
    func readIfImmediate(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Bool
    /// `write(_:at:fua: false)`, but only when the device normally absorbs it without waiting
    /// for storage (a buffered write, a memory copy). Returns false, having written nothing,
    /// otherwise.
    func writeIfImmediate(_ data: UnsafeRawBufferPointer, at offset: UInt64) throws -> Bool
}

extension BlockDevice {
    public func cache(offset: UInt64, length: UInt64) throws {}
    /// Devices that may block (metadata lookups, network) leave every request to workers.
    public func readIfImmediate(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Bool { false }
    public func writeIfImmediate(_ data: UnsafeRawBufferPointer, at offset: UInt64) throws -> Bool { false }
    public func allocationDepth(offset: UInt64, length: UInt64) throws -> [DepthExtent]? { nil }
}

/// Capability flags of a device.
public struct BlockDeviceCapabilities: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let readOnly = BlockDeviceCapabilities(rawValue: 1 << 0)
    public static let flush = BlockDeviceCapabilities(rawValue: 1 << 1)
    public static let fua = BlockDeviceCapabilities(rawValue: 1 << 2)
    public static let trim = BlockDeviceCapabilities(rawValue: 1 << 3)
    public static let writeZeroes = BlockDeviceCapabilities(rawValue: 1 << 4)
    /// Zeroing is cheaper than writing (fallocate, metadata-only); FAST_ZERO may be honoured.
    public static let fastZero = BlockDeviceCapabilities(rawValue: 1 << 5)
    public static let cache = BlockDeviceCapabilities(rawValue: 1 << 6)
    /// `extents` reports real allocation (not just "all data").
    public static let extents = BlockDeviceCapabilities(rawValue: 1 << 7)
    /// Writes completed on one handle are visible to and flushed for all (NBD CAN_MULTI_CONN).
    public static let multiConn = BlockDeviceCapabilities(rawValue: 1 << 8)
    public static let rotational = BlockDeviceCapabilities(rawValue: 1 << 9)
    /// `allocationDepth` is meaningful (backing chains).
    public static let allocationDepth = BlockDeviceCapabilities(rawValue: 1 << 10)
}

/// NBD_INFO_BLOCK_SIZE values: minimum, preferred and maximum payload.
public struct BlockSizeConstraints: Sendable, Hashable {
    public var minimum: UInt32
    public var preferred: UInt32
    public var maximumPayload: UInt32
    public init(minimum: UInt32 = 1, preferred: UInt32 = 4096, maximumPayload: UInt32 = 32 << 20) {
        self.minimum = minimum
        self.preferred = preferred
        self.maximumPayload = maximumPayload
    }
    public static let `default` = BlockSizeConstraints()
}

/// `base:allocation` flags; raw values equal NBD_STATE_HOLE / NBD_STATE_ZERO.
public struct ExtentFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// Not allocated in backing storage.
    public static let hole = ExtentFlags(rawValue: 1)
    /// Reads return zeroes.
    public static let zero = ExtentFlags(rawValue: 2)
}

public struct Extent: Sendable, Hashable {
    public var length: UInt64
    public var flags: ExtentFlags
    public init(length: UInt64, flags: ExtentFlags) {
        self.length = length
        self.flags = flags
    }
}

public struct DepthExtent: Sendable, Hashable {
    public var length: UInt64
    public var depth: UInt32
    public init(length: UInt64, depth: UInt32) {
        self.length = length
        self.depth = depth
    }
}
