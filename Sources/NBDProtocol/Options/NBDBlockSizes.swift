/// Block-size constraints as `NBD_INFO_BLOCK_SIZE` carries them (docs/protocol.md §5.6).
public struct NBDBlockSizes: Hashable, Sendable, CustomStringConvertible {
    public var minimum: UInt32
    public var preferred: UInt32
    public var maximumPayload: UInt32

    public init(minimum: UInt32, preferred: UInt32, maximumPayload: UInt32) {
        self.minimum = minimum
        self.preferred = preferred
        self.maximumPayload = maximumPayload
    }

    /// What a server should accept when nothing was advertised: 1 / 4096 / 32 MiB.
    public static let serverDefault = NBDBlockSizes(minimum: 1, preferred: 4096, maximumPayload: 1 << 25)
    /// What a prudent client assumes when nothing was advertised: 512 / 4096 / 32 MiB.
    public static let conservativeClientDefault = NBDBlockSizes(minimum: 512, preferred: 4096, maximumPayload: 1 << 25)

    /// Why these constraints break the spec's relations, or nil when they are valid:
    /// minimum a power of two ≤ 64 KiB; preferred a power of two ≥ minimum (the spec also asks
    /// for ≥ 512, which peers treat as advice); maximum a multiple of the minimum, or
    /// "unlimited" (0xffffffff). A maximum below the preferred size is accepted rather than
    /// refused: it only means requests are split at the maximum.
    public var validationProblem: String? {
        func isPowerOfTwo(_ v: UInt32) -> Bool { v != 0 && v & (v - 1) == 0 }
        guard isPowerOfTwo(minimum), minimum <= NBDWireLimits.maximumMinimumBlockSize else {
            return "minimum block size \(minimum) is not a power of two ≤ 65536"
        }
        guard isPowerOfTwo(preferred), preferred >= minimum else {
            return "preferred block size \(preferred) is not a power of two ≥ minimum \(minimum)"
        }
        guard maximumPayload == NBDWireLimits.unlimitedPayload
            || (maximumPayload >= minimum && maximumPayload % minimum == 0) else {
            return "maximum payload \(maximumPayload) is not a multiple of minimum \(minimum)"
        }
        return nil
    }

    public var description: String { "min \(minimum) / preferred \(preferred) / max \(maximumPayload)" }
}
