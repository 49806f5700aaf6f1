/// Options for a new (version 3) image.
public struct Qcow2CreateOptions: Sendable {
    public var size: UInt64
    public var clusterSize: UInt64
    /// Stored as given: a relative name is resolved against the new image's directory.
    public var backingFile: String?
    /// "qcow2" or "raw"; always written (QEMU refuses to probe on create, and probing a raw
    /// backing file is unsafe).
    public var backingFormat: String?

    public init(size: UInt64, clusterSize: UInt64 = 65536, backingFile: String? = nil, backingFormat: String? = nil) {
        self.size = size
        self.clusterSize = clusterSize
        self.backingFile = backingFile
        self.backingFormat = backingFormat
    }
}
