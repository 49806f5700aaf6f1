import BlockDevices

/// Image formats `swiftnbd serve` can open.
enum ImageFormat: String, CaseIterable, Sendable {
    case raw

    static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }
}

/// Opens an image file as a block device. The one place the CLI turns (path, format) into
/// storage; new formats (qcow2) add a case here.
/// - Throws: `BlockDeviceError` with a message fit for the user (missing file, locked, …).
func openImage(path: String, format: String, readOnly: Bool) throws -> any BlockDevice {
    guard let known = ImageFormat(rawValue: format.lowercased()) else {
        throw BlockDeviceError(.unsupportedFeature, "unknown image format '\(format)' (known: \(ImageFormat.names))")
    }
    switch known {
    case .raw:
        return try RawFileDevice(path: path, readOnly: readOnly)
    }
}
