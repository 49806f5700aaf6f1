import BlockDevices
import Qcow2

/// Image formats `swiftnbd serve` can open.
enum ImageFormat: String, CaseIterable, Sendable {
    case raw
    case qcow2
    /// qcow2 if the file starts with the qcow2 magic, else raw. Only for trusted images: a
    /// guest can write a qcow2 header into a raw disk, and a probed qcow2 header can name any
    /// host file as its backing file.
    case auto

    static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }
}

/// Opens an image file as a block device. The one place the CLI turns (path, format) into
/// storage.
/// - Parameter snapshot: serve a throw-away qcow2 overlay (in `$TMPDIR`, deleted at once, so
///   it vanishes when the server exits) over the image, which is then only read — like
///   `qemu-nbd --snapshot`. Ignored when `readOnly` (nothing would be written anyway).
/// - Throws: `BlockDeviceError` with a message fit for the user (missing file, locked, …).
func openImage(path: String, format: String, readOnly: Bool, snapshot: Bool = false,
               cache: Qcow2CacheOptions = .default) throws -> any BlockDevice {
    guard var known = ImageFormat(rawValue: format.lowercased()) else {
        throw BlockDeviceError(.unsupportedFeature, "unknown image format '\(format)' (known: \(ImageFormat.names))")
    }
    if known == .auto { known = Qcow2Image.hasQcow2Magic(path: path) ? .qcow2 : .raw }
    if snapshot && !readOnly {
        return try Qcow2Creator.temporaryOverlay(over: path, baseFormat: known.rawValue, cache: cache)
    }
    switch known {
    case .raw, .auto:
        return try RawFileDevice(path: path, readOnly: readOnly)
    case .qcow2:
        return try Qcow2Image(path: path, readOnly: readOnly, cache: cache)
    }
}
