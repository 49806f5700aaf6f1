#if canImport(Glibc)
import Glibc
#endif
import BlockDevices
import NBDClient
import Qcow2

/// One side of a copy: an open device, plus what we know about its contents.
struct CopyEndpoint {
    var device: any BlockDevice
    var label: String
    /// Every byte already reads as zero (a freshly truncated file, `null:`), so zero runs need
    /// no writing at all.
    var knownZero: Bool
    /// Number of connections behind it (1 for local files).
    var connections: Int
    /// Local raw file path, for page-cache management while writing.
    var localRawPath: String? = nil

    /// Opens `SRC`: an NBD URI or a local image.
    static func openSource(_ spec: String, connections: Int, requests: Int) throws -> CopyEndpoint {
        if NBDURI.looksLikeURI(spec) {
            let remote = try RemoteExport.open(try NBDURI(spec), connections: connections) { $0.maximumInFlight = requests }
            return CopyEndpoint(device: remote, label: spec, knownZero: false, connections: remote.connections.count)
        }
        if spec == "null:" { throw CopyFailure("null: can only be a destination") }
        return CopyEndpoint(device: try LocalImage.open(spec, writable: false), label: spec, knownZero: false, connections: 1)
    }

    /// Opens `DST` for a source of `size` bytes. Local regular files are created or truncated
    /// to `size` (so they start all-zero and sparse); block devices and exports must be large enough.
    static func openDestination(_ spec: String, size: UInt64, connections: Int, requests: Int) throws -> CopyEndpoint {
        if spec == "null:" {
            return CopyEndpoint(device: NullDevice(size: size), label: spec, knownZero: true, connections: 1)
        }
        if NBDURI.looksLikeURI(spec) {
            let remote = try RemoteExport.open(try NBDURI(spec), connections: connections) { $0.maximumInFlight = requests }
            if remote.capabilities.contains(.readOnly) {
                try? remote.close()
                throw CopyFailure("destination \(spec) is read-only")
            }
            if remote.size < size {
                try? remote.close()
                throw CopyFailure("destination \(spec) has \(remote.size) bytes, less than the source's \(size)")
            }
            return CopyEndpoint(device: remote, label: spec, knownZero: false, connections: remote.connections.count)
        }
        if LocalImage.detect(spec) == .qcow2 {
            // An existing qcow2 image is written in place, never truncated.
            let image = try LocalImage.open(spec, writable: true)
            if image.size < size {
                throw CopyFailure("destination \(spec) has \(image.size) bytes, less than the source's \(size)")
            }
            return CopyEndpoint(device: image, label: spec, knownZero: false, connections: 1)
        }
        let created = try LocalImage.prepareDestinationFile(spec, size: size)
        let device = try LocalImage.open(spec, writable: true)
        if device.size < size {
            throw CopyFailure("destination \(spec) has \(device.size) bytes, less than the source's \(size)")
        }
        return CopyEndpoint(device: device, label: spec, knownZero: created, connections: 1,
                            localRawPath: created ? spec : nil)
    }
}

/// Local images: raw files and block devices, or qcow2 (detected by its magic).
enum LocalImage {
    enum Format { case raw, qcow2 }

    static func detect(_ path: String) -> Format {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .raw }
        defer { close(fd) }
        var magic = [UInt8](repeating: 0, count: 4)
        let n = magic.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 4, 0) }
        return n == 4 && magic == [0x51, 0x46, 0x49, 0xfb] ? .qcow2 : .raw
    }

    static func open(_ path: String, writable: Bool) throws -> any BlockDevice {
        switch detect(path) {
        case .raw:
            return try RawFileDevice(path: path, readOnly: !writable)
        case .qcow2:
            // Guest contents, not the container's bytes (backing files included).
            return try Qcow2Image(path: path, readOnly: !writable)
        }
    }

    /// Creates `path` or truncates an existing regular file to `size`. Returns true when the
    /// file now reads as all zeroes (every regular file, after truncation).
    static func prepareDestinationFile(_ path: String, size: UInt64) throws -> Bool {
        var info = stat()
        if stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFBLK {
            return false // block device: used in place
        }
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw CopyFailure("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard ftruncate(fd, 0) == 0, ftruncate(fd, off_t(size)) == 0 else {
            throw CopyFailure("cannot size \(path) to \(size) bytes: \(String(cString: strerror(errno)))")
        }
        return true
    }
}

/// `null:` — a destination that discards everything (for measuring reads, like nbdcopy's null:).
final class NullDevice: BlockDevice, @unchecked Sendable {
    let size: UInt64
    init(size: UInt64) { self.size = size }
    var capabilities: BlockDeviceCapabilities { [.flush, .fua, .trim, .writeZeroes, .fastZero, .multiConn] }
    var blockSizes: BlockSizeConstraints { .default }
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
    }
    func write(_ data: UnsafeRawBufferPointer, at offset: UInt64, fua: Bool) throws {}
    func flush() throws {}
    func trim(offset: UInt64, length: UInt64, fua: Bool) throws {}
    func writeZeroes(offset: UInt64, length: UInt64, mayTrim: Bool, fastOnly: Bool, fua: Bool) throws {}
    func extents(offset: UInt64, length: UInt64) throws -> [Extent] { [Extent(length: length, flags: [.hole, .zero])] }
    func close() throws {}
}

/// A copy failure with one clear sentence.
struct CopyFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
