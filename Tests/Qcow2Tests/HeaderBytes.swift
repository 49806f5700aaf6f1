@testable import Qcow2

/// Hand-built qcow2 header bytes for parser tests: a valid v3 (or v2) header of one cluster
/// that each test then breaks in exactly one way.
struct HeaderBytes {
    var bytes: [UInt8]

    init(version: UInt32 = 3, clusterBits: UInt32 = 16, size: UInt64 = 1 << 20) {
        let cluster = 1 << Int(clusterBits)
        bytes = [UInt8](repeating: 0, count: cluster)
        bytes.putBE32(0x5146_49FB, at: 0)
        bytes.putBE32(version, at: 4)
        bytes.putBE32(clusterBits, at: 20)
        bytes.putBE64(size, at: 24)
        bytes.putBE32(1, at: 36)                      // l1_size
        bytes.putBE64(UInt64(3 * cluster), at: 40)    // l1_table_offset
        bytes.putBE64(UInt64(cluster), at: 48)        // refcount_table_offset
        bytes.putBE32(1, at: 56)                      // refcount_table_clusters
        if version == 3 {
            bytes.putBE32(4, at: 96)                  // refcount_order
            bytes.putBE32(112, at: 100)               // header_length
        }
    }

    /// File length the parser is told (the tables must fit inside it).
    var fileLength: UInt64 { UInt64(bytes.count) * 4 }

    func parse() throws -> Qcow2Header { try Qcow2Header.parse(bytes, fileLength: fileLength) }

    mutating func set32(_ v: UInt32, at i: Int) { bytes.putBE32(v, at: i) }
    mutating func set64(_ v: UInt64, at i: Int) { bytes.putBE64(v, at: i) }

    /// Appends a header extension at `position` and returns the position after it.
    @discardableResult
    mutating func addExtension(type: UInt32, data: [UInt8], at position: Int) -> Int {
        bytes.putBE32(type, at: position)
        bytes.putBE32(UInt32(data.count), at: position + 4)
        bytes.replaceSubrange(position + 8..<position + 8 + data.count, with: data)
        return position + 8 + (data.count + 7) / 8 * 8
    }
}
