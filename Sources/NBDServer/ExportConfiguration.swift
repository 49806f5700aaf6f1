import BlockDevices

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

    public init(name: String, description: String? = nil, device: any BlockDevice,
                readOnly: Bool = false, tlsOnly: Bool = false) {
        self.name = name
        self.description = description
        self.device = device
        self.readOnly = readOnly
        self.tlsOnly = tlsOnly
    }

    /// Whether clients may write (neither the configuration nor the device forbids it).
    public var isWritable: Bool { !readOnly && !device.capabilities.contains(.readOnly) }
}
