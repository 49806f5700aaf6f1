#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
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
    static func openSource(_ spec: String, connections: Int, requests: Int, cache: Qcow2CacheOptions) throws -> CopyEndpoint {
        if NBDURI.looksLikeURI(spec) {
            let remote = try RemoteExport.open(try NBDURI(spec), connections: connections) { $0.maximumInFlight = requests }
            return CopyEndpoint(device: remote, label: spec, knownZero: false, connections: remote.connections.count)
        }
        if spec == "null:" { throw CopyFailure("null: can only be a destination") }
        return CopyEndpoint(device: try LocalImage.open(spec, writable: false, cache: cache), label: spec, knownZero: false, connections: 1)
    }

    /// Opens `DST` for a source of `size` bytes. Local raw files are created or truncated to
    /// `size` (so they start all-zero and sparse), new qcow2 images are created empty; block
    /// devices, existing qcow2 images and exports must be large enough.
    static func openDestination(_ spec: String, size: UInt64, format: CopyOutputFormat,
                                connections: Int, requests: Int, cache: Qcow2CacheOptions) throws -> CopyEndpoint {
        if spec == "null:" {
            return CopyEndpoint(device: NullDevice(size: size), label: spec, knownZero: true, connections: 1)
        }
        if NBDURI.looksLikeURI(spec) {
            let remote = try RemoteExport.open(try NBDURI(spec), connections: connections) { $0.maximumInFlight = requests }
            if remote.capabilities.contains(.readOnly) {
                try? remote.close()
                throw CopyFailure("destination \(spec) is read-only")
            }
            do {
                try requireRoom(remote, spec, size)
            } catch {
                try? remote.close()
                throw error
            }
            return CopyEndpoint(device: remote, label: spec, knownZero: false, connections: remote.connections.count)
        }
        switch try LocalImage.destinationFormat(spec, requested: format) {
        case .existingQcow2:
            // An existing qcow2 image is written in place (guest contents), never recreated.
            let image = try LocalImage.open(spec, writable: true, cache: cache)
            try requireRoom(image, spec, size)
            return CopyEndpoint(device: image, label: spec, knownZero: false, connections: 1)
        case .newQcow2:
            try LocalImage.refuseIfInUse(spec)
            try Qcow2Creator.create(at: spec, options: Qcow2CreateOptions(size: size))
            // A new image has no clusters: every byte reads as zero until written.
            return CopyEndpoint(device: try Qcow2Image(path: spec, readOnly: false, cache: cache), label: spec, knownZero: true, connections: 1)
        case .raw:
            let created = try LocalImage.prepareDestinationFile(spec, size: size)
            let device = try RawFileDevice(path: spec, readOnly: false)
            try requireRoom(device, spec, size)
            return CopyEndpoint(device: device, label: spec, knownZero: created, connections: 1,
                                localRawPath: created ? spec : nil)
        }
    }

    /// A destination must hold the whole source.
    private static func requireRoom(_ device: any BlockDevice, _ spec: String, _ size: UInt64) throws {
        guard device.size >= size else {
            throw CopyFailure("destination \(spec) has \(device.size) bytes, less than the source's \(size)")
        }
    }
}

/// What `copy --output-format` asks for.
enum CopyOutputFormat: String, CaseIterable, ExpressibleByArgument {
    /// An existing qcow2 image is written in place; a name ending in `.qcow2` becomes a new
    /// qcow2 image; anything else is raw.
    case auto
    case raw
    case qcow2
}

/// Local images: raw files and block devices, or qcow2 (detected by its magic).
enum LocalImage {
    enum DestinationFormat { case raw, existingQcow2, newQcow2 }

    /// Opens a local source or an existing destination: qcow2 by its magic (guest contents,
    /// backing files included), anything else raw. Copy's inputs are the user's own files,
    /// so probing is what they expect (qemu-img convert probes too).
    static func open(_ path: String, writable: Bool, cache: Qcow2CacheOptions = .default) throws -> any BlockDevice {
        try openImage(path: path, format: ImageFormat.auto.rawValue, readOnly: !writable, cache: cache)
    }

    static func destinationFormat(_ path: String, requested: CopyOutputFormat) throws -> DestinationFormat {
        let isQcow2 = Qcow2Image.hasQcow2Magic(path: path)
        switch requested {
        case .raw:
            return .raw
        case .qcow2:
            if isQcow2 { return .existingQcow2 }
            if let type = fileType(path), type != S_IFREG {
                throw CopyFailure("cannot create a qcow2 image at \(path): not a regular file")
            }
            return .newQcow2
        case .auto:
            if isQcow2 { return .existingQcow2 }
            return path.lowercased().hasSuffix(".qcow2") && !isBlockDevice(path) ? .newQcow2 : .raw
        }
    }

    /// Refuses to truncate or recreate an image another process (a server, QEMU) has open for
    /// writing: the same QEMU-compatible lock probe a writable open makes.
    static func refuseIfInUse(_ path: String) throws {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return } // does not exist yet
        defer { close(fd) }
        try ImageLock.writer.acquire(fd: fd, path: path)
        ImageLock.release(fd: fd)
    }

    static func isBlockDevice(_ path: String) -> Bool { fileType(path) == S_IFBLK }

    /// The `S_IFMT` bits of `path`, or nil when it does not exist.
    static func fileType(_ path: String) -> mode_t? {
        var info = stat()
        return stat(path, &info) == 0 ? info.st_mode & S_IFMT : nil
    }

    /// Creates `path` or truncates an existing regular file to `size`. Returns true when the
    /// file now reads as all zeroes (every regular file, after truncation).
    static func prepareDestinationFile(_ path: String, size: UInt64) throws -> Bool {
        if isBlockDevice(path) { return false } // used in place
        try refuseIfInUse(path)
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
