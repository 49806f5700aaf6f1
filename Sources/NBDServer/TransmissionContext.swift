import BlockDevices
import NBDProtocol

/// Everything the transmission phase needs, fixed when negotiation ends.
struct TransmissionContext: Sendable {
    var exportName: String
    var device: any BlockDevice
    var writable: Bool
    /// The flags the client was given (SEND_DF included when structured replies are on).
    var flags: TransmissionFlags
    var framing: ReplyFraming
    var requestForm: NBDRequest.Form
    /// Context ids the client selected with SET_META_CONTEXT for this export (nil: not selected).
    var baseAllocationContextID: UInt32?
    var allocationDepthContextID: UInt32?
    var blockSizes: NBDBlockSizes

    var hasMetaContexts: Bool { baseAllocationContextID != nil || allocationDepthContextID != nil }
}
