/// Entry points shared by the libFuzzer targets Fuzz/server-negotiation and
/// Fuzz/client-negotiation and by their regression tests: arbitrary peer bytes through the real
/// state machines, driven exactly the way the socket engines drive them
/// (`ClientConnection.negotiate`, `ClientHandshakeDriver.run`), with the TLS handshake replaced by
/// a stand-in that succeeds at once, so the post-STARTTLS state is reached without a cipher.
///
/// Besides "never trap", the harnesses check what the engines rely on (a violated check is a
/// `preconditionFailure`, which the fuzzer reports as a crash):
/// - every option reply the server sends is framed correctly and never `ERR_TLS_REQD` where the
///   spec forbids it (TLS off, or after TLS);
/// - every length the client machine asks to read is bounded.
package enum ProtocolFuzzEntryPoints {
    /// A cursor over the fuzzer's bytes.
    struct Input {
        let bytes: [UInt8]
        var position = 0
        init(_ bytes: [UInt8]) { self.bytes = bytes }
        mutating func take(_ count: Int) -> [UInt8]? {
            guard count >= 0, count <= bytes.count - position else { return nil }
            defer { position += count }
            return Array(bytes[position ..< position + count])
        }
        mutating func byte() -> UInt8 { take(1)?.first ?? 0 }
        var remaining: Int { bytes.count - position }
    }

    // MARK: Server side

    /// The exports the fuzzed server offers: a writable one with block sizes and allocation
    /// depth, a TLS-only one, and one whose name needs the full 4096 bytes of a string.
    static let serverExports: [ExportDescriptor] = [
        ExportDescriptor(name: "disk", description: "the disk", size: 1 << 20,
                         transmissionFlags: [.hasFlags, .sendFlush, .sendFUA, .sendTrim, .sendWriteZeroes,
                                             .sendFastZero, .sendCache, .sendDF, .canMultiConn],
                         blockSizes: NBDBlockSizes(minimum: 512, preferred: 4096, maximumPayload: 1 << 25),
                         offersAllocationDepth: true),
        ExportDescriptor(name: "secret", description: "tls only", size: 4096, tlsOnly: true),
        ExportDescriptor(name: String(repeating: "x", count: 4096), size: 0, transmissionFlags: [.hasFlags, .readOnly]),
    ]

    /// Server negotiation. Byte 0 chooses the configuration: bits 0–1 the TLS mode
    /// (off/on/require/require), bit 2 TLS unsupported, bit 3 the TLS stand-in reports an
    /// authorisation refusal, bit 4 the TLS handshake fails, bit 5 the server starts shutting down
    /// after the first option, bit 6 no structured replies, bit 7 no extended headers. The rest is
    /// what the client sends: flags, options, and after `.enterTransmission` request headers,
    /// which go through the `RequestValidator` of the negotiated session.
    package static func serverNegotiation(_ bytes: [UInt8]) {
        var input = Input(bytes)
        let selector = input.byte()
        let mode: ServerTLSMode = [.off, .on, .require, .require][Int(selector & 3)]
        let configuration = ServerNegotiationConfiguration(
            exports: serverExports, tlsMode: mode, tlsSupported: selector & 4 == 0, defaultExportName: "disk",
            maximumOptions: 64, allowsStructuredReplies: selector & 0x40 == 0, allowsExtendedHeaders: selector & 0x80 == 0)
        var machine = ServerNegotiationStateMachine(configuration: configuration)
        var pending = machine.start()[...]
        var currentOption: OptionHeader?
        var tlsDone = false
        var optionsHandled = 0
        while let action = pending.popFirst() {
            switch action {
            case let .send(reply):
                checkServerReply(reply, mode: mode, afterTLS: tlsDone)
            case .readClientFlags:
                guard let raw = input.take(4) else { return }
                pending += machine.receivedClientFlags(raw.reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
            case .readNextOption:
                if selector & 0x20 != 0 && optionsHandled == 1 { pending += machine.serverIsShuttingDown() }
                guard let raw = input.take(OptionHeader.wireSize), let header = try? OptionHeader(decoding: raw) else { return }
                currentOption = header
                pending += machine.receivedOptionHeader(option: header.option, length: header.length)
            case let .readOptionPayload(length):
                guard let header = currentOption else { fatalError("payload requested without an option header") }
                fuzzCheck(length <= configuration.maximumOptionLength, "asked to read \(length) option bytes")
                guard let payload = input.take(Int(length)) else { return }
                optionsHandled += 1
                pending += machine.receivedOption(option: header.option, payload: payload)
            case .startTLS:
                fuzzCheck(pending.isEmpty, "actions after .startTLS")
                fuzzCheck(mode != .off, "STARTTLS accepted with TLS off")
                if selector & 0x10 != 0 {
                    pending += machine.tlsHandshakeFailed(reason: "fuzz: handshake failed")
                } else {
                    tlsDone = true
                    pending += machine.tlsHandshakeSucceeded(peerIdentity: "CN=fuzz",
                                                             authorizationRefusal: selector & 8 != 0 ? "fuzz: not authorised" : nil)
                }
            case let .enterTransmission(session):
                fuzzCheck(machine.isFinished, "entered transmission but the machine is not finished")
                fuzzCheck(!session.export.tlsOnly || session.tlsActive, "TLS-only export entered without TLS")
                fuzzCheck(mode != .require || session.tlsActive, "transmission without TLS in require mode")
                validateRequests(&input, session: session)
                return
            case .close:
                fuzzCheck(machine.isFinished, "closed but the machine is not finished")
                return
            }
        }
    }

    /// An option reply must carry exactly the data its header announces, and `ERR_TLS_REQD`
    /// only before TLS in a mode that offers it.
    static func checkServerReply(_ reply: [UInt8], mode: ServerTLSMode, afterTLS: Bool) {
        guard reply.count >= OptionReplyHeader.wireSize,
              let header = try? OptionReplyHeader(decoding: Array(reply.prefix(OptionReplyHeader.wireSize))) else { return }
        fuzzCheck(Int(header.length) == reply.count - OptionReplyHeader.wireSize, "option reply length field is wrong")
        if header.replyType == .errTLSRequired {
            fuzzCheck(mode != .off && !afterTLS, "ERR_TLS_REQD sent with TLS \(mode), afterTLS \(afterTLS)")
        }
    }

    /// Transmission entry: request headers (and their payloads) through the validator, the way
    /// `TransmissionDriver` reads them, until a disconnect or the input ends.
    static func validateRequests(_ input: inout Input, session: NegotiatedSession) {
        let validator = RequestValidator(session: session)
        let form = session.requestForm
        while let raw = input.take(form.wireSize) {
            guard let request = try? NBDRequest(decoding: raw, form: form) else { return }
            let payload = request.payloadLength(form: form)
            switch validator.validate(request) {
            case .disconnect:
                return
            case .reply:
                fuzzCheck(payload <= validator.drainLimit, "refused request's payload \(payload) exceeds the drain limit")
            case .valid:
                if request.command == .disconnect { return }
                fuzzCheck(payload <= validator.drainLimit,
                             "valid request with a \(payload)-byte payload")
            }
            guard input.take(Int(payload)) != nil else { return }
        }
    }

    // MARK: Client side

    /// Client negotiation. Byte 0 chooses the configuration: bits 0–1 the mode (go/info/list/go),
    /// bits 2–3 the TLS policy (disable/allow/require/allow), bit 4 no extended headers,
    /// bit 5 no structured replies, bit 6 list meta contexts, bit 7 ask for no meta context;
    /// byte 1 bit 0 an export name other than "". The rest is what the server sends.
    /// Returns the outcome, if the handshake finished.
    @discardableResult
    package static func clientNegotiation(_ bytes: [UInt8]) -> ClientNegotiationOutcome? {
        var input = Input(bytes)
        let selector = input.byte()
        let options = input.byte()
        let configuration = ClientNegotiationConfiguration(
            mode: [.go, .info, .list, .go][Int(selector & 3)],
            exportName: options & 1 != 0 ? "disk" : "",
            tlsPolicy: [.disable, .allow, .require, .allow][Int(selector >> 2 & 3)],
            requestExtendedHeaders: selector & 0x10 == 0, requestStructuredReplies: selector & 0x20 == 0,
            metaContexts: selector & 0x80 != 0 ? [] : ["base:allocation", "qemu:allocation-depth"],
            listMetaContexts: selector & 0x40 != 0)
        var machine = ClientNegotiationStateMachine(configuration: configuration)
        var action = machine.start()
        // Every step consumes input or ends, so this bound is never the reason to stop; it guards
        // against a machine that loops without reading.
        for _ in 0 ..< 1_000_000 {
            switch action {
            case let .receive(count), let .send(_, count):
                fuzzCheck(count >= 0 && count <= Int(configuration.maximumReplyLength) + 64, "asked to read \(count) bytes")
                guard let reply = input.take(count) else {
                    _ = machine.connectionClosed()
                    return nil
                }
                action = machine.received(reply)
            case .startTLS:
                fuzzCheck(configuration.tlsPolicy != .disable, "STARTTLS with TLS disabled")
                action = machine.tlsEstablished()
            case let .finish(outcome, _):
                if configuration.tlsPolicy == .require {
                    switch outcome {
                    case let .transmission(export), let .info(export):
                        fuzzCheck(export.tlsActive, "finished without TLS although TLS is required")
                    case let .list(_, tlsActive):
                        fuzzCheck(tlsActive, "listed without TLS although TLS is required")
                    }
                }
                return outcome
            case .fail:
                return nil
            }
        }
        fatalError("client negotiation did not end")
    }
}

/// A harness invariant: unlike `precondition`, the message survives optimised builds, so the
/// fuzzer's crash report says what was violated.
func fuzzCheck(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
               file: StaticString = #fileID, line: UInt = #line) {
    if !condition() { fatalError(message(), file: file, line: line) }
}
