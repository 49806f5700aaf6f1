import BlockDevices
import NBDProtocol

/// Everything the transmission phase needs, fixed when negotiation ends: what was negotiated
/// (from the state machine) and the device behind the chosen export.
struct TransmissionContext: Sendable {
    var session: NegotiatedSession
    var device: any BlockDevice
    /// The export's dirty bitmaps (served for the `qemu:dirty-bitmap:` contexts selected).
    var dirtyBitmaps: [ExportedDirtyBitmap] = []

    init(session: NegotiatedSession, device: any BlockDevice, dirtyBitmaps: [ExportedDirtyBitmap] = []) {
        self.session = session
        self.device = device
        self.dirtyBitmaps = dirtyBitmaps
    }

    var exportName: String { session.exportName }
    var replyForm: ReplyForm { session.replyForm }
    var requestForm: NBDRequest.Form { session.requestForm }
    var validator: RequestValidator { RequestValidator(session: session) }
    var baseAllocationContextID: UInt32? { session.contextID(for: .baseAllocation) }
    var allocationDepthContextID: UInt32? { session.contextID(for: .allocationDepth) }
    /// The selected dirty-bitmap contexts, by context id.
    var dirtyBitmapContexts: [(id: UInt32, bitmap: ExportedDirtyBitmap)] {
        session.metaContexts.sorted { $0.key < $1.key }.compactMap { id, context in
            guard let name = context.dirtyBitmapName, let bitmap = dirtyBitmaps.first(where: { $0.name == name }) else { return nil }
            return (id, bitmap)
        }
    }
}
