import Foundation

/// How much memory a qcow2 image may spend on cached metadata, in the spirit of QEMU's
/// `l2-cache-size` and `refcount-cache-size`. Each image of a backing chain gets its own
/// caches of these sizes.
///
/// The default L2 cache (128 MiB) maps a whole 1 TiB image with 64 KiB clusters, so reads
/// never go to disk for L2 tables there; memory is only taken as tables are touched, and never
/// more than the image's L2 tables need. Refcount slices are touched mostly in allocation
/// order, so 4 MiB (about 128 GiB of host file with 64 KiB clusters and 16-bit refcounts)
/// is plenty.
public struct Qcow2CacheOptions: Sendable, Equatable {
    public var l2CacheBytes: UInt64
    public var refcountCacheBytes: UInt64

    public static let defaultL2CacheBytes: UInt64 = 128 << 20
    public static let defaultRefcountCacheBytes: UInt64 = 4 << 20
    public static let `default` = Qcow2CacheOptions(l2CacheBytes: defaultL2CacheBytes, refcountCacheBytes: defaultRefcountCacheBytes)

    public init(l2CacheBytes: UInt64, refcountCacheBytes: UInt64) {
        self.l2CacheBytes = l2CacheBytes
        self.refcountCacheBytes = refcountCacheBytes
    }

    /// Splits a total budget as QEMU's `cache-size` does in spirit: refcounts get an eighth
    /// (at most their default), L2 tables the rest.
    public init(totalBytes: UInt64) {
        let refcount = min(Self.defaultRefcountCacheBytes, totalBytes / 8)
        self.init(l2CacheBytes: totalBytes - refcount, refcountCacheBytes: refcount)
    }

    /// Parses a size such as `1048576`, `512K`, `64M`, `2G` (binary units; a trailing `B` or
    /// `iB` is accepted). Nil for anything else or a size beyond 2^62 bytes.
    public static func parseSize(_ text: String) -> UInt64? {
        var digits = Substring(text.trimmingCharacters(in: .whitespaces).uppercased())
        for suffix in ["IB", "B"] where digits.hasSuffix(suffix) && digits.count > suffix.count {
            digits = digits.dropLast(suffix.count)
            break
        }
        var shift: UInt64 = 0
        if let unit = digits.last, let s = ["K": 10, "M": 20, "G": 30, "T": 40][String(unit)] {
            shift = UInt64(s)
            digits = digits.dropLast()
        }
        guard !digits.isEmpty, digits.allSatisfy(\.isASCII), let value = UInt64(digits),
              value <= (UInt64(1) << 62) >> shift else { return nil }
        return value << shift
    }
}
