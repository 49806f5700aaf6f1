import Foundation

/// What one backup run did, as text (the copy seeds' figures: time, bytes read, bytes
/// written, throughput) or JSON.
struct BackupReport: Encodable {
    struct Disk: Encodable {
        var node: String
        var image: String
        var size: UInt64
        var bytesRead: UInt64
        var bytesWritten: UInt64
        var bytesZeroed: UInt64
        var bytesSkipped: UInt64
        var seconds: Double
        /// Size of the fleecing overlay at the end of the copy.
        var scratchBytes: UInt64 = 0
        var throughputMiBps: Double { Double(bytesRead) / max(seconds, 0.000_001) / 1_048_576 }

        enum CodingKeys: String, CodingKey {
            case node, image, size, bytesRead, bytesWritten, bytesZeroed, bytesSkipped, seconds, scratchBytes, throughputMiBps
        }

        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(node, forKey: .node)
            try c.encode(image, forKey: .image)
            try c.encode(size, forKey: .size)
            try c.encode(bytesRead, forKey: .bytesRead)
            try c.encode(bytesWritten, forKey: .bytesWritten)
            try c.encode(bytesZeroed, forKey: .bytesZeroed)
            try c.encode(bytesSkipped, forKey: .bytesSkipped)
            try c.encode(seconds, forKey: .seconds)
            try c.encode(scratchBytes, forKey: .scratchBytes)
            try c.encode(throughputMiBps, forKey: .throughputMiBps)
        }
    }

    var directory: String
    var kind: String
    var sequence: Int
    var bitmap: String
    var seconds: Double
    var disks: [Disk]

    var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        guard let data = try? encoder.encode(self), let text = String(data: data, encoding: .utf8) else { return "{}\n" }
        return text + "\n"
    }

    var text: String {
        var out = "\(kind) backup #\(sequence) (checkpoint \(bitmap)) into \(directory) in \(String(format: "%.2f", seconds)) s\n"
        for d in disks {
            out += "  \(d.node): \(d.image)  read \(Self.bytes(d.bytesRead)), wrote \(Self.bytes(d.bytesWritten)), "
                + "zeroed \(Self.bytes(d.bytesZeroed)), unchanged \(Self.bytes(d.bytesSkipped)) of \(Self.bytes(d.size)) "
                + "in \(String(format: "%.2f", d.seconds)) s (\(String(format: "%.1f", d.throughputMiBps)) MiB/s), "
                + "scratch \(Self.bytes(d.scratchBytes))\n"
        }
        let read = disks.reduce(0) { $0 + $1.bytesRead }, written = disks.reduce(0) { $0 + $1.bytesWritten }
        out += "  total: read \(Self.bytes(read)), wrote \(Self.bytes(written))\n"
        return out
    }

    static func bytes(_ n: UInt64) -> String {
        if n >= 1 << 30 { return String(format: "%.2f GiB", Double(n) / 1_073_741_824) }
        if n >= 1 << 20 { return String(format: "%.2f MiB", Double(n) / 1_048_576) }
        if n >= 1 << 10 { return String(format: "%.1f KiB", Double(n) / 1024) }
        return "\(n) B"
    }
}
