/// Magic numbers of the NBD wire protocol (docs/protocol.md §2.1). All travel big-endian.
public enum NBDMagic {
    /// "NBDMAGIC": first 8 bytes from the server in both handshake styles.
    public static let nbdMagic: UInt64 = 0x4e42_444d_4147_4943
    /// "IHAVEOPT": second word of the newstyle greeting and prefix of every client option.
    public static let ihaveopt: UInt64 = 0x4948_4156_454f_5054
    /// Second word of the obsolete oldstyle greeting.
    public static let oldstyleCliserv: UInt64 = 0x0042_0281_8612_53
    /// Prefix of every option reply.
    public static let optionReply: UInt64 = 0x0003_e889_0455_65a9
    /// Compact (28-byte) request.
    public static let request: UInt32 = 0x2560_9513
    /// Extended (32-byte) request, extended-headers mode only.
    public static let extendedRequest: UInt32 = 0x21e4_1c71
    /// Simple (16-byte) reply.
    public static let simpleReply: UInt32 = 0x6744_6698
    /// Structured (20-byte) reply chunk.
    public static let structuredReply: UInt32 = 0x668e_33ef
    /// Extended (32-byte) reply chunk, extended-headers mode only.
    public static let extendedReply: UInt32 = 0x6e8a_278c
}

/// Sizes and limits the protocol fixes (docs/protocol.md §2.12).
public enum NBDWireLimits {
    /// No NBD string (name, description, message, context) may be longer than this.
    public static let maximumStringLength = 4096
    /// Echoed export names in error messages are cut to this many characters (CVE-2020-10761).
    public static let maximumEchoedNameLength = 80
    /// Option error messages we generate stay below this many bytes.
    public static let maximumOptionErrorMessageLength = 255
    /// Payloads this size or smaller must never be treated as a denial of service.
    public static let nonDoSPayload: UInt32 = 1 << 25
    /// The largest number of extents a status chunk should carry.
    public static let maximumExtentsPerChunk = 1 << 20
    /// A DF read of this size or smaller must be served unfragmented.
    public static let minimumUnfragmentedRead: UInt32 = 65_536
    /// The largest minimum block size the protocol allows.
    public static let maximumMinimumBlockSize: UInt32 = 65_536
    /// "No fixed limit" marker for the maximum payload.
    public static let unlimitedPayload: UInt32 = 0xffff_ffff
}
