#if canImport(Glibc)
import Glibc
#endif
import BlockDevices

/// Opens the backing file named in a header: relative names resolve against the directory of
/// the image that names them (as QEMU does), loops and over-long chains are refused, and
/// protocol names (`nbd:`, `json:` …) are not followed.
enum BackingChain {
    static func openBacking(of header: Qcow2Header, imagePath: String, depth: Int, maxDepth: Int,
                            visited: Set<String>, cache: Qcow2CacheOptions) throws -> ChainLayer? {
        guard let name = header.backingFileName else { return nil }
        if let scheme = protocolScheme(of: name) {
            throw BlockDeviceError(.unsupportedFeature, "qcow2: backing file '\(name)' uses the '\(scheme)' protocol; only local files are supported")
        }
        guard depth <= maxDepth else {
            throw BlockDeviceError(.badFormat, "qcow2: backing chain of \(imagePath) is deeper than \(maxDepth) images")
        }
        let resolved = resolve(name, relativeTo: imagePath)
        let canonical = canonicalPath(resolved)
        guard !visited.contains(canonical) else {
            throw BlockDeviceError(.badFormat, "qcow2: backing chain loop: \(imagePath) refers back to \(resolved)")
        }
        let format = try header.backingFormat ?? probeFormat(resolved)
        do {
            switch format {
            case "qcow2":
                return try Qcow2Image(path: resolved, writable: false, depth: depth, maxDepth: maxDepth, visited: visited, cache: cache)
            case "raw":
                return try RawLayer(path: resolved)
            default:
                throw BlockDeviceError(.unsupportedFeature, "qcow2: backing file format '\(format)' is not supported (qcow2 and raw are)")
            }
        } catch let error as BlockDeviceError {
            var e = error
            if !e.message.contains("backing") || e.code == .notFound {
                e.message = "qcow2: backing file \(resolved) of \(imagePath): \(e.message)"
            }
            throw e
        }
    }

    static func resolve(_ name: String, relativeTo imagePath: String) -> String {
        if name.hasPrefix("/") { return name }
        guard let slash = imagePath.lastIndex(of: "/") else { return name }
        return String(imagePath[...slash]) + name
    }

    /// The real path when it exists (so `a/../b` and symlinks compare equal), else the input.
    static func canonicalPath(_ path: String) -> String {
        guard let real = realpath(path, nil) else { return path }
        defer { free(real) }
        return String(cString: real)
    }

    /// Without a backing-format extension QEMU probes; we only tell qcow2 from raw.
    static func probeFormat(_ path: String) throws -> String {
        let file = try HostFile(path: path, writable: false)
        let length = try file.length()
        guard length >= 4 else { return "raw" }
        let magic = try file.readExactly(4, at: 0, what: "magic")
        return magic.be32(at: 0) == Qcow2Header.magic ? "qcow2" : "raw"
    }

    static func protocolScheme(of name: String) -> String? {
        let known = ["nbd", "nbds", "nbd+unix", "nbds+unix", "json", "http", "https", "ftp", "ftps", "ssh",
                     "iscsi", "gluster", "rbd", "nfs", "sheepdog", "vxhs", "file"]
        guard let colon = name.firstIndex(of: ":") else { return nil }
        let scheme = String(name[..<colon]).lowercased()
        return known.contains(scheme) ? scheme : nil
    }
}
