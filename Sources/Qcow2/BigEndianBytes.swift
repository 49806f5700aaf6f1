/// Big-endian integer access on byte arrays: every on-disk qcow2 integer is big-endian.
/// Callers check bounds first; these helpers trap on out-of-range indices like any array access.
extension Array where Element == UInt8 {
    func be16(at i: Int) -> UInt16 { UInt16(self[i]) << 8 | UInt16(self[i + 1]) }
    func be32(at i: Int) -> UInt32 {
        UInt32(self[i]) << 24 | UInt32(self[i + 1]) << 16 | UInt32(self[i + 2]) << 8 | UInt32(self[i + 3])
    }
    func be64(at i: Int) -> UInt64 { UInt64(be32(at: i)) << 32 | UInt64(be32(at: i + 4)) }

    mutating func putBE16(_ v: UInt16, at i: Int) {
        self[i] = UInt8(truncatingIfNeeded: v >> 8); self[i + 1] = UInt8(truncatingIfNeeded: v)
    }
    mutating func putBE32(_ v: UInt32, at i: Int) {
        for k in 0..<4 { self[i + k] = UInt8(truncatingIfNeeded: v >> (24 - 8 * UInt32(k))) }
    }
    mutating func putBE64(_ v: UInt64, at i: Int) {
        for k in 0..<8 { self[i + k] = UInt8(truncatingIfNeeded: v >> (56 - 8 * UInt64(k))) }
    }

    static func be64(_ v: UInt64) -> [UInt8] { var b = [UInt8](repeating: 0, count: 8); b.putBE64(v, at: 0); return b }
    static func be32(_ v: UInt32) -> [UInt8] { var b = [UInt8](repeating: 0, count: 4); b.putBE32(v, at: 0); return b }
}
