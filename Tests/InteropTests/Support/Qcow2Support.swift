import BlockDevices
import Foundation
import Qcow2

/// Paths of the committed qcow2 fixtures and helpers shared by the qcow2 interop tests.
enum Qcow2Fixtures {
    static var directory: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures/qcow2").path
    }
    static func path(_ name: String) -> String { directory + "/" + name }

    /// Readable fixtures (relative to the fixture directory).
    static let readable = [
        "v3.qcow2", "v2.qcow2", "c512.qcow2", "odd-size.qcow2", "refcount1.qcow2", "refcount64.qcow2",
        "chain/top.qcow2", "chain/sub/mid.qcow2", "chain/v2-top.qcow2",
        "compressed-zlib.qcow2", "compressed-zstd.qcow2", "compressed-v2.qcow2", "compressed-io.qcow2",
        "extended-l2.qcow2", "extended-l2-backed.qcow2", "snapshot.qcow2", "lazy-dirty.qcow2",
    ]
}

/// Reads a whole device in odd-sized chunks (so requests straddle clusters and L2 tables).
func readWholeDevice(_ device: BlockDevice, chunk: Int = 100_003) throws -> Data {
    var data = Data(count: Int(device.size))
    try data.withUnsafeMutableBytes { raw in
        var offset = 0
        while offset < raw.count {
            let n = min(chunk, raw.count - offset)
            try device.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[offset..<offset + n]), at: UInt64(offset))
            offset += n
        }
    }
    return data
}

/// One run of `qemu-img map --output=json`, reduced to what NBD block status reports.
struct QemuMapRun: Equatable, CustomStringConvertible {
    var start: UInt64
    var length: UInt64
    var flags: UInt32   // NBD_STATE_HOLE (1) when not data, NBD_STATE_ZERO (2) when zero
    var depth: UInt32   // qemu:allocation-depth: 0 absent, else map depth + 1
    var description: String { "\(start)+\(length) flags=\(flags) depth=\(depth)" }
}

/// `qemu-img map --output=json` of an image, as base:allocation flags and allocation depths.
func qemuMap(_ path: String) throws -> [QemuMapRun] {
    let result = try run(["qemu-img", "map", "-U", "--output=json", path])
    guard result.succeeded, let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [[String: Any]] else {
        throw BlockDeviceError(.io, "qemu-img map failed: \(result)")
    }
    return json.map { e in
        let data = e["data"] as? Bool ?? false, zero = e["zero"] as? Bool ?? false
        let present = e["present"] as? Bool ?? false
        let depth = (e["depth"] as? NSNumber)?.uint32Value ?? 0
        return QemuMapRun(start: (e["start"] as! NSNumber).uint64Value, length: (e["length"] as! NSNumber).uint64Value,
                          flags: (data ? 0 : 1) | (zero ? 2 : 0), depth: present ? depth + 1 : 0)
    }
}

/// Merges neighbouring runs with the same value of `key`.
func mergeRuns(_ runs: [(length: UInt64, value: UInt32)]) -> [(UInt64, UInt32)] {
    var out: [(UInt64, UInt32)] = []
    for r in runs {
        if let last = out.last, last.1 == r.value { out[out.count - 1].0 += r.length } else { out.append((r.length, r.value)) }
    }
    return out
}

/// All extents of a device from offset 0 to its end (asking again when a reply is short).
func allExtents(_ device: BlockDevice) throws -> [(UInt64, UInt32)] {
    var runs: [(length: UInt64, value: UInt32)] = []
    var offset: UInt64 = 0
    while offset < device.size {
        let extents = try device.extents(offset: offset, length: device.size - offset)
        for e in extents {
            let n = min(e.length, device.size - offset)
            runs.append((n, e.flags.rawValue))
            offset += n
        }
    }
    return mergeRuns(runs)
}

func allDepths(_ device: BlockDevice) throws -> [(UInt64, UInt32)] {
    var runs: [(length: UInt64, value: UInt32)] = []
    var offset: UInt64 = 0
    while offset < device.size {
        for e in try device.allocationDepth(offset: offset, length: device.size - offset) ?? [] {
            let n = min(e.length, device.size - offset)
            runs.append((n, e.depth))
            offset += n
        }
    }
    return mergeRuns(runs)
}

func describe(_ runs: [(UInt64, UInt32)]) -> String { runs.map { "\($0.0):\($0.1)" }.joined(separator: " ") }

/// `nbdinfo --map[=context]` of a server command run under socket activation
/// (`nbdinfo --map -- [ qemu-nbd … ]`), as merged (length, value) runs.
func nbdinfoMap(context: String? = nil, server: [String]) throws -> [(UInt64, UInt32)] {
    let mapArg = context.map { "--map=\($0)" } ?? "--map"
    let result = try run(["nbdinfo", mapArg, "--", "["] + server + ["]"], timeout: 60)
    guard result.succeeded else { throw BlockDeviceError(.io, "nbdinfo failed: \(result)") }
    return parseNbdinfoMap(result.stdout)
}

/// Parses `nbdinfo --map` lines: offset, length, value, description.
func parseNbdinfoMap(_ text: String) -> [(UInt64, UInt32)] {
    var runs: [(length: UInt64, value: UInt32)] = []
    for line in text.split(separator: "\n") {
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count >= 3, let length = UInt64(fields[1]), let value = UInt32(fields[2]) else { continue }
        runs.append((length, value))
    }
    return mergeRuns(runs)
}
