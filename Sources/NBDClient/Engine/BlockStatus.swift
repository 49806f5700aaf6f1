import NBDProtocol

/// The status chunks of one `BLOCK_STATUS` reply, by context id.
public struct BlockStatusReply: Sendable, Hashable {
    public var extentsByContext: [UInt32: [BlockStatusExtent]]
    public init(extentsByContext: [UInt32: [BlockStatusExtent]] = [:]) {
        self.extentsByContext = extentsByContext
    }
}
