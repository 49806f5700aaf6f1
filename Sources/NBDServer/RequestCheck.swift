import NBDProtocol

/// The verdict on one transmission request before it reaches storage.
enum RequestVerdict: Equatable, Sendable {
    case accept
    /// Answer with this error (after draining any payload) and keep going.
    case reject(NBDErrno, String)
    /// The client broke a MUST; hard disconnect.
    case disconnect(String)
}

/// TEMPORARY local workaround: request validation belongs to `NBDProtocol.RequestValidator`
/// (protocol helper, not yet in main when this was written). This adapter is the only call
/// site, so replacing its body with the validator is a one-place change.
enum RequestCheck {
    static func check(_ request: NBDRequest, payloadLength: UInt64, context: TransmissionContext) -> RequestVerdict {
        let flags = context.flags
        let size = context.device.size
        let command = request.command
        let known: [NBDCommand] = [.read, .write, .disconnect, .flush, .trim, .cache, .writeZeroes, .blockStatus]
        guard known.contains(command) else { return .reject(.EINVAL, "unknown command \(command.rawValue)") }

        // Flags: each only where it means something and was advertised.
        var allowed: CommandFlags = [.fua]
        switch command {
        case .read: if flags.contains(.sendDF) { allowed.insert(.dontFragment) }
        case .writeZeroes:
            allowed.insert(.noHole)
            if flags.contains(.sendFastZero) { allowed.insert(.fastZero) }
        case .blockStatus: allowed.insert(.requestOne)
        default: break
        }
        if context.requestForm == .extended && command == .write { allowed.insert(.payloadLength) }
        if !request.flags.subtracting(allowed).isEmpty {
            return .reject(.EINVAL, "flags \(request.flags) not valid for \(command)")
        }
        if command == .write && context.requestForm == .extended && !request.flags.contains(.payloadLength) {
            // Extended WRITE without PAYLOAD_LEN: the payload still follows (length = effect length).
        }
        if command == .disconnect || command == .flush { return .accept }

        let writes: [NBDCommand] = [.write, .trim, .writeZeroes]
        if writes.contains(command) && !context.writable { return .reject(.EPERM, "export is read-only") }
        if command == .trim && !flags.contains(.sendTrim) { return .reject(.EINVAL, "TRIM not advertised") }
        if command == .writeZeroes && !flags.contains(.sendWriteZeroes) { return .reject(.EINVAL, "WRITE_ZEROES not advertised") }

        let maxPayload = UInt64(context.blockSizes.maximumPayload)
        if (command == .read || command == .write) && request.length > maxPayload {
            if command == .read && request.flags.contains(.dontFragment) {
                return .reject(.EOVERFLOW, "read of \(request.length) bytes too large")
            }
            return .reject(.EINVAL, "\(command) of \(request.length) bytes exceeds the maximum payload \(maxPayload)")
        }
        if command == .blockStatus {
            if !context.hasMetaContexts { return .reject(.EINVAL, "no metadata context negotiated") }
            if request.length == 0 { return .reject(.EINVAL, "block status needs a non-zero length") }
        }
        let (end, overflow) = request.offset.addingReportingOverflow(request.length)
        if overflow || end > size {
            let error: NBDErrno = command == .write || command == .writeZeroes ? .ENOSPC : .EINVAL
            return .reject(error, "\(command) \(request.offset)+\(request.length) is beyond the end (\(size))")
        }
        _ = payloadLength
        return .accept
    }
}
