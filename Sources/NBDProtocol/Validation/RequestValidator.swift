/// The one place that decides whether a transmission request may run (docs/protocol.md §5.2;
/// nbdkit's `validate_request` is the model). Pure: no I/O, no device access.
///
/// Order of checks, first failure wins:
///  1. DISC is always accepted (no reply; offset/length ignored like QEMU).
///  2. Payload size (the engine must stay in sync): a payload above
///     max(advertised maximum payload, 32 MiB) → `.disconnect` (draining would let a client make
///     us read gigabytes; the spec allows hanging up on a DoS-sized payload and says ≤ 32 MiB
///     never is one). A payload above the advertised maximum but within that bound → EINVAL
///     after draining.
///  3. Flags: unknown bits, PAYLOAD_LEN in compact mode, a flag not valid for the command, or a
///     flag whose "exposes" transmission flag was not advertised → EINVAL.
///     Extended mode: PAYLOAD_LEN on anything but WRITE → EINVAL (payload drained; the payload
///     form of BLOCK_STATUS is not offered).
///  4. Command: unknown (incl. RESIZE, never advertised) → EINVAL; WRITE/TRIM/WRITE_ZEROES on a
///     read-only export → EPERM; FLUSH/TRIM/WRITE_ZEROES not advertised → EINVAL; CACHE is
///     accepted even without SEND_CACHE (some clients send it anyway); BLOCK_STATUS without a
///     selected context (or without structured replies) → EINVAL.
///  5. FLUSH with offset or length ≠ 0 → EINVAL.
///  6. READ longer than the maximum payload → EOVERFLOW with DF (also when one DF chunk could
///     not carry it), else EINVAL.
///  7. Bounds, overflow-safe (`offset > size || length > size - offset`): WRITE and
///     WRITE_ZEROES → ENOSPC, everything else → EINVAL.
///  8. Zero length: BLOCK_STATUS → EINVAL; all others are accepted (the engine replies success).
///  9. Alignment to the minimum block size, only when the client asked for block sizes in GO
///     (a range ending exactly at an unaligned end of the export is allowed).
public struct RequestValidator: Hashable, Sendable {
    public var session: NegotiatedSession

    public init(session: NegotiatedSession) {
        self.session = session
    }

    private var flags: TransmissionFlags { session.transmissionFlags }
    private var size: UInt64 { session.exportSize }
    private var blockSizes: NBDBlockSizes { session.blockSizes }
    private var form: NBDRequest.Form { session.requestForm }

    /// The largest payload the engine will read and throw away instead of disconnecting.
    public var drainLimit: UInt64 {
        max(UInt64(blockSizes.maximumPayload), UInt64(NBDWireLimits.nonDoSPayload))
    }

    public func validate(_ request: NBDRequest) -> RequestValidation {
        let command = request.command
        if command == .disconnect { return .valid }

        let payload = request.payloadLength(form: form)
        if payload > drainLimit {
            return .disconnect(reason: "\(command) carries a \(payload)-byte payload, above the \(drainLimit)-byte limit")
        }
        if command == .write && payload > UInt64(blockSizes.maximumPayload) {
            return .reply(error: .EINVAL, message: "write of \(payload) bytes exceeds the maximum payload \(blockSizes.maximumPayload)")
        }

        if let problem = flagProblem(request) { return .reply(error: .EINVAL, message: problem) }

        switch command {
        case .read, .cache:
            break
        case .write, .trim, .writeZeroes:
            if flags.contains(.readOnly) { return .reply(error: .EPERM, message: "export is read-only") }
            if command == .trim && !flags.contains(.sendTrim) { return .reply(error: .EINVAL, message: "TRIM not supported") }
            if command == .writeZeroes && !flags.contains(.sendWriteZeroes) {
                return .reply(error: .EINVAL, message: "WRITE_ZEROES not supported")
            }
        case .flush:
            guard flags.contains(.sendFlush) else { return .reply(error: .EINVAL, message: "FLUSH not supported") }
            guard request.offset == 0, request.length == 0 else {
                return .reply(error: .EINVAL, message: "FLUSH needs offset and length 0")
            }
            return .valid
        case .blockStatus:
            guard session.replyForm != .simple, !session.metaContexts.isEmpty else {
                return .reply(error: .EINVAL, message: "BLOCK_STATUS not negotiated (no metadata context selected)")
            }
        default:
            return .reply(error: .EINVAL, message: "unknown command \(command.rawValue)")
        }

        // A DF read is one OFFSET_DATA chunk, so it must also fit a chunk's 32-bit length.
        let readLimit = request.flags.contains(.dontFragment)
            ? min(UInt64(blockSizes.maximumPayload), ReadReplyPlanner.maximumDataChunk)
            : UInt64(blockSizes.maximumPayload)
        if command == .read && request.length > readLimit {
            return request.flags.contains(.dontFragment)
                ? .reply(error: .EOVERFLOW, message: "DF read of \(request.length) bytes exceeds the maximum payload")
                : .reply(error: .EINVAL, message: "read of \(request.length) bytes exceeds the maximum payload \(blockSizes.maximumPayload)")
        }

        if request.offset > size || request.length > size - request.offset {
            let message = "range \(request.offset)+\(request.length) is beyond the export size \(size)"
            return command == .write || command == .writeZeroes
                ? .reply(error: .ENOSPC, message: message)
                : .reply(error: .EINVAL, message: message)
        }

        if command == .blockStatus && request.length == 0 {
            return .reply(error: .EINVAL, message: "BLOCK_STATUS needs a non-zero length")
        }

        if session.clientRequestedBlockSizes, blockSizes.minimum > 1 {
            let minimum = UInt64(blockSizes.minimum)
            let endsAtExportEnd = request.offset + request.length == size // no overflow: checked above
            if request.offset % minimum != 0 || (request.length % minimum != 0 && !endsAtExportEnd) {
                return .reply(error: .EINVAL, message: "range \(request.offset)+\(request.length) is not aligned to \(minimum) bytes")
            }
        }
        return .valid
    }

    /// Why the request's flags are unacceptable, or nil.
    private func flagProblem(_ request: NBDRequest) -> String? {
        let given = request.flags
        let unknown = given.subtracting(.known)
        if !unknown.isEmpty { return "unknown command flags 0x\(String(unknown.rawValue, radix: 16))" }

        var allowed: CommandFlags = []
        if flags.contains(.sendFUA) { allowed.insert(.fua) }
        switch request.command {
        case .read:
            if flags.contains(.sendDF) { allowed.insert(.dontFragment) }
        case .writeZeroes:
            allowed.insert(.noHole)
            if flags.contains(.sendFastZero) { allowed.insert(.fastZero) }
        case .blockStatus:
            allowed.insert(.requestOne)
        default:
            break
        }
        if form == .extended && request.command == .write { allowed.insert(.payloadLength) }

        let refused = given.subtracting(allowed)
        guard refused.isEmpty else {
            if refused.contains(.payloadLength) {
                return form == .compact ? "PAYLOAD_LEN is only valid with extended headers"
                                        : "\(request.command) has no payload form"
            }
            return "flags \(refused) are not valid for \(request.command) on this export"
        }
        return nil
    }
}
