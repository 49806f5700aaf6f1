import BlockDevices
import Foundation

/// Writes new, empty v3 images: header (cluster 0), refcount table, refcount block(s), L1 table,
/// in that order, each cluster counted once. Unwritten parts stay sparse.
public enum Qcow2Creator {
    public static func create(at path: String, options: Qcow2CreateOptions) throws {
        let cs = options.clusterSize
        guard cs >= 512, cs <= 2 << 20, cs & (cs - 1) == 0 else {
            throw BlockDeviceError(.invalidArgument, "qcow2: cluster size \(cs) must be a power of two from 512 B to 2 MiB")
        }
        let clusterBits = UInt32(cs.trailingZeroBitCount)
        let size = (options.size + 511) / 512 * 512
        guard size <= 1 << 62 else { throw BlockDeviceError(.invalidArgument, "qcow2: size \(options.size) is too large") }
        if options.backingFile != nil {
            guard let f = options.backingFormat, f == "qcow2" || f == "raw" else {
                throw BlockDeviceError(.invalidArgument, "qcow2: a backing file needs a backing format (qcow2 or raw)")
            }
        }
        let g = Qcow2Geometry(clusterBits: clusterBits, extendedL2: false, version: 3, refcountOrder: 4)
        let l1Entries = (size + g.bytesPerL2 - 1) / g.bytesPerL2
        guard l1Entries * 8 <= Qcow2Header.maxL1Bytes else {
            throw BlockDeviceError(.invalidArgument, "qcow2: size \(size) needs an L1 table larger than 32 MiB; use larger clusters")
        }
        let l1Clusters = max(1, (l1Entries * 8 + cs - 1) / cs)

        // Refcount table and blocks must cover every cluster of the layout, themselves included.
        var tableClusters: UInt64 = 1, blockCount: UInt64 = 1
        for _ in 0..<64 {
            let total = 1 + tableClusters + blockCount + l1Clusters
            let blocksNeeded = (total + g.refcountsPerBlock - 1) / g.refcountsPerBlock
            let tableNeeded = (blocksNeeded * 8 + cs - 1) / cs
            if blocksNeeded == blockCount && tableNeeded == tableClusters { break }
            blockCount = blocksNeeded
            tableClusters = tableNeeded
        }
        let tableOffset = cs
        let blocksOffset = tableOffset + tableClusters * cs
        let l1Offset = blocksOffset + blockCount * cs
        let totalClusters = 1 + tableClusters + blockCount + l1Clusters

        var head = [UInt8](repeating: 0, count: Int(cs))
        head.putBE32(Qcow2Header.magic, at: 0)
        head.putBE32(3, at: 4)
        head.putBE32(clusterBits, at: 20)
        head.putBE64(size, at: 24)
        head.putBE32(UInt32(l1Entries), at: 36)
        head.putBE64(l1Offset, at: 40)
        head.putBE64(tableOffset, at: 48)
        head.putBE32(UInt32(tableClusters), at: 56)
        head.putBE32(4, at: 96)     // refcount_order: 16-bit refcounts
        head.putBE32(112, at: 100)  // header_length, like QEMU 7.2 (compression type byte = 0)
        var position = 112
        if let backing = options.backingFile, let format = options.backingFormat {
            let f = Array(format.utf8)
            head.putBE32(Qcow2Header.ExtensionType.backingFormat, at: position)
            head.putBE32(UInt32(f.count), at: position + 4)
            head.replaceSubrange(position + 8..<position + 8 + f.count, with: f)
            position += 8 + (f.count + 7) / 8 * 8
            position += 8  // end-of-extensions terminator (zeroes)
            let name = Array(backing.utf8)
            guard !name.isEmpty, name.count <= 1023, position + name.count <= Int(cs) else {
                throw BlockDeviceError(.invalidArgument, "qcow2: backing file name '\(backing)' does not fit in the header cluster")
            }
            head.replaceSubrange(position..<position + name.count, with: name)
            head.putBE64(UInt64(position), at: 8)
            head.putBE32(UInt32(name.count), at: 16)
        }

        var table = [UInt8](repeating: 0, count: Int(tableClusters * cs))
        for b in 0..<blockCount { table.putBE64(blocksOffset + b * cs, at: Int(b) * 8) }
        var blocks = [UInt8](repeating: 0, count: Int(blockCount * cs))
        for c in 0..<totalClusters {
            var block = Array(blocks[Int(c / g.refcountsPerBlock * cs)..<Int((c / g.refcountsPerBlock + 1) * cs)])
            RefcountStore.write(&block, index: Int(c % g.refcountsPerBlock), bits: 16, value: 1)
            blocks.replaceSubrange(Int(c / g.refcountsPerBlock * cs)..<Int((c / g.refcountsPerBlock + 1) * cs), with: block)
        }

        let file = try HostFile(creating: path)
        try file.truncate(to: totalClusters * cs)
        try file.write(table, at: tableOffset)
        try file.write(blocks, at: blocksOffset)
        try file.write(head, at: 0)
        try file.sync()
    }

    /// A throw-away writable overlay over `basePath` (like `qemu-nbd --snapshot`): created in
    /// `directory` and unlinked at once, so it disappears with the last open handle.
    public static func temporaryOverlay(over basePath: String, baseFormat: String,
                                        directory: String = NSTemporaryDirectory(),
                                        cache: Qcow2CacheOptions = .default) throws -> Qcow2Image {
        let absoluteBase = basePath.hasPrefix("/") ? basePath : FileManager.default.currentDirectoryPath + "/" + basePath
        let baseSize: UInt64
        switch baseFormat {
        case "qcow2": baseSize = try Qcow2Image(path: absoluteBase, readOnly: true).size
        case "raw": baseSize = try HostFile(path: absoluteBase, writable: false).length()
        default: throw BlockDeviceError(.invalidArgument, "qcow2: unsupported base format '\(baseFormat)'")
        }
        let dir = directory.hasSuffix("/") ? directory : directory + "/"
        let overlayPath = dir + "swiftnbd-snapshot-\(UUID().uuidString).qcow2"
        try create(at: overlayPath, options: Qcow2CreateOptions(size: baseSize, backingFile: absoluteBase, backingFormat: baseFormat))
        defer { unlink(overlayPath) }
        return try Qcow2Image(path: overlayPath, readOnly: false, cache: cache)
    }
}
