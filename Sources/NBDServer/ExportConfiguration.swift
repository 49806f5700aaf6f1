import BlockDevices
import NBDProtocol

/// One named export: a device and how it is offered.
public struct ExportConfiguration: Sendable {
    /// The export name clients ask for ("" is the default export).
    public var name: String
    /// Free text shown by `nbdinfo --list` / `qemu-nbd -L` (NBD_INFO_DESCRIPTION).
    public var description: String?
    public var device: any BlockDevice
    /// Serve read-only even if the device is writable.
    public var readOnly: Bool
    /// Only offer this export once TLS is up (SELECTIVETLS mode).
    public var tlsOnly: Bool
    /// Dirty bitmaps offered as `qemu:dirty-bitmap:NAME` (names unique within the export).
    public var dirtyBitmaps: [ExportedDirtyBitmap]

    public init(name: String, description: String? = nil, device: any BlockDevice,
                readOnly: Bool = false, tlsOnly: Bool = false, dirtyBitmaps: [ExportedDirtyBitmap] = []) {
        self.name = name
        self.description = description
        self.device = device
        self.readOnly = readOnly
        self.tlsOnly = tlsOnly
        self.dirtyBitmaps = dirtyBitmaps
    }

    /// Whether clients may write (neither the configuration nor the device forbids it).
    public var isWritable: Bool { !readOnly && !device.capabilities.contains(.readOnly) }
}

/// A dirty bitmap an export offers as the metadata context `qemu:dirty-bitmap:NAME`.
public struct ExportedDirtyBitmap: Sendable {
    public typealias Runs = @Sendable (_ offset: UInt64, _ length: UInt64, _ maxRuns: Int) throws -> [BlockStatusExtent]

    public var name: String
    /// Consecutive extents from `offset` covering at most `length` bytes and at most `maxRuns`
    /// extents, flags `NBD_STATE_DIRTY` (1) where the bitmap is dirty, 0 where clean. Thrown
    /// errors become the request's error.
    public var runs: Runs

    public init(name: String, runs: @escaping Runs) {
        self.name = name
        self.runs = runs
    }
}
