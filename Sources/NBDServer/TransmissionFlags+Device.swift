import BlockDevices
import NBDProtocol

extension TransmissionFlags {
    /// The transmission flags an export advertises, derived from what its device can do.
    /// `SEND_DF` is not included: it depends on structured replies, which negotiation decides.
    static func derived(from capabilities: BlockDeviceCapabilities, writable: Bool,
                        multiConnAllowed: Bool) -> TransmissionFlags {
        // CACHE is always understood: at worst it is a successful no-op, which the spec allows.
        var flags: TransmissionFlags = [.hasFlags, .sendCache]
        if capabilities.contains(.flush) { flags.insert(.sendFlush) }
        if capabilities.contains(.fua) { flags.insert(.sendFUA) }
        if capabilities.contains(.rotational) { flags.insert(.rotational) }
        if multiConnAllowed && capabilities.contains(.multiConn) { flags.insert(.canMultiConn) }
        if writable {
            if capabilities.contains(.trim) { flags.insert(.sendTrim) }
            if capabilities.contains(.writeZeroes) {
                flags.insert(.sendWriteZeroes)
                if capabilities.contains(.fastZero) { flags.insert(.sendFastZero) }
            }
        } else {
            flags.insert(.readOnly)
        }
        return flags
    }
}
