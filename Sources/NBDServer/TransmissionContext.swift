import BlockDevices
import NBDProtocol

/// Everything the transmission phase needs, fixed when negotiation ends: what was negotiated
/// (from the state machine) and the device behind the chosen export.
struct TransmissionContext: Sendable {
    var session: NegotiatedSession
    var device: any BlockDevice

    var exportName: String { session.exportName }
    var replyForm: ReplyForm { session.replyForm }
    var requestForm: NBDRequest.Form { session.requestForm }
    var validator: RequestValidator { RequestValidator(session: session) }
    var baseAllocationContextID: UInt32? { session.contextID(for: .baseAllocation) }
    var allocationDepthContextID: UInt32? { session.contextID(for: .allocationDepth) }
}
