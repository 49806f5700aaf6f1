import BlockDevices
import NBDProtocol

extension RemoteExport {
    /// One BLOCK_STATUS round answered for every agreed metadata context at once (a server
    /// sends one chunk per context), each list clamped to the export. Used where two views of
    /// the same range are combined — a dirty bitmap and `base:allocation` — so that one round
    /// trip gives both.
    public func statusExtentsByContext(offset: UInt64, length: UInt64) throws -> [UInt32: [BlockStatusExtent]] {
        guard offset < size else { return [:] }
        let asked = min(length, size - offset, export.replyMode == .extended ? UInt64.max : UInt64(UInt32.max) & ~4095)
        let reply: CommandReply
        do {
            reply = try connection().perform(.blockStatus, offset: offset, length: asked)
        } catch let error as NBDClientError {
            throw Self.blockDeviceError(error)
        }
        guard case .blockStatus(let status) = reply else {
            throw BlockDeviceError(.io, "BLOCK_STATUS reply carries no status")
        }
        var result: [UInt32: [BlockStatusExtent]] = [:]
        for (context, extents) in status.extentsByContext {
            var clamped: [BlockStatusExtent] = []
            var position = offset
            for extent in extents where position < size {
                let length = min(extent.length, size - position)
                clamped.append(BlockStatusExtent(length: length, flags: extent.flags))
                position += length
            }
            result[context] = clamped
        }
        return result
    }
}
