/// Server side of fixed-newstyle negotiation as a pure state machine: events in, actions out.
///
/// The engine owns the socket and does exactly what the returned actions say, in order:
///
/// ```
/// var machine = ServerNegotiationStateMachine(configuration: config)
/// run(machine.start())                        // [.send(greeting), .readClientFlags]
/// run(machine.receivedClientFlags(flags))     // [.readNextOption] or [.close]
/// loop:
///   header = read 16 bytes → OptionHeader     // bad magic → close
///   run(machine.receivedOptionHeader(option: header.option, length: header.length))
///                                             // [.readOptionPayload(n)] or [.close] (too long / too many)
///   payload = read n bytes
///   run(machine.receivedOption(option: header.option, payload: payload))
///                                             // replies, then .readNextOption / .startTLS /
///                                             // .enterTransmission / .close
///   after .startTLS: handshake, then tlsHandshakeSucceeded(...) or tlsHandshakeFailed(...)
/// ```
///
/// Every TLS policy decision of docs/protocol.md §3.4 is made here and nowhere else:
/// - `.off`: STARTTLS → `ERR_POLICY` (`ERR_UNSUP` if TLS is not supported at all); TLS-only
///   exports are invisible.
/// - `.on`: STARTTLS → ACK; TLS-only exports are hidden from plaintext LIST, INFO/GO on them
///   answer `ERR_TLS_REQD`, META_CONTEXT options on them `ERR_POLICY` (the spec reserves
///   `ERR_TLS_REQD` for INFO/GO here), EXPORT_NAME on them closes.
/// - `.require`: before TLS everything except STARTTLS and ABORT gets `ERR_TLS_REQD`
///   (EXPORT_NAME closes, since it has no error reply); non-fixed-newstyle clients are closed.
/// - After TLS: STARTTLS → `ERR_INVALID`; `ERR_TLS_REQD` is never sent.
/// - STARTTLS with data → `ERR_INVALID` in every mode.
///
/// The post-STARTTLS state is a fresh `ServerOptionPhase` (see there). Unexpected events (an
/// engine bug) yield `.close`, never a trap.
public struct ServerNegotiationStateMachine: Sendable {
    enum State: Hashable, Sendable {
        case idle
        case awaitingClientFlags
        case awaitingOptionHeader(ServerOptionPhase)
        case awaitingOptionPayload(ServerOptionPhase, OptionHeader)
        case awaitingTLSHandshake(clientFlags: ClientFlags)
        case finished
    }

    /// Handshake flags we always offer.
    public static let offeredHandshakeFlags: HandshakeFlags = [.fixedNewstyle, .noZeroes]

    public let configuration: ServerNegotiationConfiguration
    var state: State = .idle
    /// Options seen on this connection (both TLS epochs: it is a resource bound, not negotiation state).
    public private(set) var optionsReceived = 0

    public init(configuration: ServerNegotiationConfiguration) {
        self.configuration = configuration
    }

    /// Set by `serverIsShuttingDown()`: later options get `ERR_SHUTDOWN`.
    public private(set) var shuttingDown = false

    /// Set once something was refused only because it came without TLS (an option answered
    /// `ERR_TLS_REQD` or its stand-in, or a non-fixed-newstyle client while TLS is required):
    /// lets the engine count plaintext clients turned away from TLS-only exports.
    public private(set) var refusedWithoutTLS = false

    /// True once `.enterTransmission` or `.close` was returned.
    public var isFinished: Bool { state == .finished }

    /// The server is stopping: from now on every option except ABORT gets `NBD_REP_ERR_SHUTDOWN`
    /// (the spec's graceful path: the client must then soft-disconnect); EXPORT_NAME closes.
    /// Returns no actions: the engine keeps following the option loop (bounded by its handshake
    /// timeout) or may simply close.
    public mutating func serverIsShuttingDown() -> [ServerNegotiationAction] {
        shuttingDown = true
        return []
    }

    // MARK: Events

    /// Connection accepted: greet.
    public mutating func start() -> [ServerNegotiationAction] {
        guard state == .idle else { return fail("start() called twice") }
        state = .awaitingClientFlags
        return [.send(NewstyleGreeting(handshakeFlags: Self.offeredHandshakeFlags).bytes), .readClientFlags]
    }

    /// The 4-byte client flags arrived.
    public mutating func receivedClientFlags(_ rawFlags: UInt32) -> [ServerNegotiationAction] {
        guard state == .awaitingClientFlags else { return fail("client flags arrived out of order") }
        let flags = ClientFlags(rawValue: rawFlags)
        let unknown = flags.subtracting(.known)
        guard unknown.isEmpty else {
            return fail("client flags 0x\(String(rawFlags, radix: 16)) contain unknown bits")
        }
        if flags.contains(.noZeroes) && !Self.offeredHandshakeFlags.contains(.noZeroes) {
            return fail("client set C_NO_ZEROES, which was not offered")
        }
        if !flags.contains(.fixedNewstyle) && configuration.tlsMode == .require {
            refusedWithoutTLS = true
            return fail("client does not speak fixed newstyle, so it cannot use TLS, which is required")
        }
        state = .awaitingOptionHeader(.plaintext(clientFlags: flags))
        return [.readNextOption]
    }

    /// Convenience for engines holding a decoded `ClientFlags`.
    public mutating func receivedClientFlags(_ flags: ClientFlags) -> [ServerNegotiationAction] {
        receivedClientFlags(flags.rawValue)
    }

    /// A 16-byte option header arrived; decides whether its data may be read at all.
    public mutating func receivedOptionHeader(option: NBDOption, length: UInt32) -> [ServerNegotiationAction] {
        guard case .awaitingOptionHeader(let phase) = state else { return fail("option header arrived out of order") }
        optionsReceived += 1
        guard optionsReceived <= configuration.maximumOptions else {
            return fail("more than \(configuration.maximumOptions) options on one connection")
        }
        guard length <= configuration.maximumOptionLength else {
            return fail("\(option) carries \(length) bytes, more than the \(configuration.maximumOptionLength)-byte limit")
        }
        state = .awaitingOptionPayload(phase, OptionHeader(option: option, length: length))
        return [.readOptionPayload(length: length)]
    }

    /// The option's data arrived (exactly the length announced in the header).
    public mutating func receivedOption(option: NBDOption, payload: [UInt8]) -> [ServerNegotiationAction] {
        guard case .awaitingOptionPayload(let phase, let header) = state else {
            return fail("option data arrived out of order")
        }
        guard header.option == option, UInt64(header.length) == UInt64(payload.count) else {
            return fail("option data does not match its header (\(header.option)/\(header.length) vs \(option)/\(payload.count))")
        }
        var handler = OptionHandler(configuration: configuration, phase: phase, shuttingDown: shuttingDown)
        let outcome = handler.handle(option: option, payload: payload)
        if handler.refusedWithoutTLS { refusedWithoutTLS = true }
        switch outcome.next {
        case .nextOption:
            state = .awaitingOptionHeader(handler.phase)
            return outcome.actions + [.readNextOption]
        case .startTLS:
            state = .awaitingTLSHandshake(clientFlags: phase.clientFlags)
            return outcome.actions + [.startTLS]
        case .transmission(let session):
            state = .finished
            return outcome.actions + [.enterTransmission(session)]
        case .close(let reason):
            state = .finished
            return outcome.actions + [.close(reason: reason)]
        }
    }

    /// The TLS handshake after STARTTLS succeeded. `authorizationRefusal` (from the TLS layer's
    /// authorisation check) makes every later option fail with `ERR_POLICY` carrying that text,
    /// except ABORT (ACK, close) and EXPORT_NAME (close): the spec lets a server refuse options
    /// but not hang up on a compliant client, and the client learns why.
    public mutating func tlsHandshakeSucceeded(peerIdentity: String?, authorizationRefusal: String? = nil) -> [ServerNegotiationAction] {
        guard case .awaitingTLSHandshake(let clientFlags) = state else { return fail("TLS handshake result out of order") }
        state = .awaitingOptionHeader(.afterTLS(clientFlags: clientFlags, peerIdentity: peerIdentity,
                                                authorizationRefusal: authorizationRefusal))
        return [.readNextOption]
    }

    /// The TLS handshake after STARTTLS failed: the ACK is already out, so there is no way back.
    public mutating func tlsHandshakeFailed(reason: String) -> [ServerNegotiationAction] {
        guard case .awaitingTLSHandshake = state else { return fail("TLS handshake result out of order") }
        return fail("TLS handshake failed: \(reason)")
    }

    private mutating func fail(_ reason: String) -> [ServerNegotiationAction] {
        state = .finished
        return [.close(reason: reason)]
    }
}
