/// The client side of the NBD handshake as a pure state machine (docs/architecture.md §2): feed it
/// the bytes it asked for, carry out the action it returns. No sockets, no TLS in here.
///
/// Order (docs/protocol.md §4.1): greeting → client flags → STARTTLS (when the policy allows TLS)
/// → EXTENDED_HEADERS → STRUCTURED_REPLY → [LIST_META_CONTEXT] → SET_META_CONTEXT → GO
/// (→ EXPORT_NAME on ERR_UNSUP). In list mode: LIST → INFO per export → ABORT.
///
/// Everything learned before STARTTLS lives in `Session`, which is replaced wholesale when TLS
/// comes up, so nothing negotiated in plaintext can survive into the encrypted session
/// (CVE-2021-3716 class).
///
/// Driver contract:
/// ```
/// var action = machine.start()
/// loop: switch action {
///   case .receive(n):            action = machine.received(read exactly n bytes)
///   case .send(b, thenReceive: n): write b; action = machine.received(read exactly n bytes)
///   case .startTLS:              handshake; action = machine.tlsEstablished()
///   case .finish / .fail:        done (write the bytes they carry first)
/// }
/// on end of stream: throw machine.connectionClosed()
/// ```
public struct ClientNegotiationStateMachine: Sendable {
    public let configuration: ClientNegotiationConfiguration

    /// The option whose replies we are reading.
    enum Step: Sendable, Hashable {
        case startTLS
        case extendedHeaders
        case structuredReply
        case listMetaContext
        case setMetaContext
        case go
        case info
        case list
        case listInfo(index: Int)

        var option: NBDOption {
            switch self {
            case .startTLS: .startTLS
            case .extendedHeaders: .extendedHeaders
            case .structuredReply: .structuredReply
            case .listMetaContext: .listMetaContext
            case .setMetaContext: .setMetaContext
            case .go: .go
            case .info, .listInfo: .info
            case .list: .list
            }
        }
    }

    enum State: Sendable {
        case initial
        case awaitingGreetingPrefix
        case awaitingNewstyleFlags
        case awaitingOldstyleRest
        case awaitingReplyHeader(Step)
        case awaitingReplyPayload(Step, OptionReplyHeader)
        case awaitingTLS
        case awaitingExportNameReply(padded: Bool)
        case finished
    }

    /// What was learned on the current side of STARTTLS. Replaced, never edited, at STARTTLS.
    struct Session: Sendable {
        var replyMode = NBDReplyMode.simple
        var metaContexts: [NegotiatedMetaContext] = []
        var availableMetaContexts: [String] = []
        var info = InfoAccumulator()
        var listed: [ListedExport] = []
    }

    /// Pieces of INFO/GO replies gathered until the final ACK.
    struct InfoAccumulator: Sendable {
        var size: UInt64?
        var flags = TransmissionFlags()
        var canonicalName: String?
        var description: String?
        var blockSizes: NBDBlockSizes?
    }

    var state = State.initial
    var session = Session()
    var handshake = HandshakeStyle.fixedNewstyle
    var serverFlags = HandshakeFlags()
    var clientFlags = ClientFlags()
    var tlsActive = false
    /// Client flags wait here to go out together with the first option (one write).
    var pendingPrefix: [UInt8] = []
    var repliesForCurrentOption = 0

    public init(configuration: ClientNegotiationConfiguration) {
        self.configuration = configuration
    }

    // MARK: - Events

    /// The first action: read the greeting's first 16 bytes.
    public mutating func start() -> ClientNegotiationAction {
        guard case .initial = state else { return violation("start() called twice") }
        do {
            try NBDString.checkEncodable(configuration.exportName, what: "export name")
            for context in configuration.metaContexts { try NBDString.checkEncodable(context, what: "meta context") }
        } catch {
            return fail(ClientNegotiationError(.invalidConfiguration, "\(error)"), abort: false)
        }
        state = .awaitingGreetingPrefix
        return .receive(count: 16)
    }

    /// The bytes the last action asked for arrived.
    public mutating func received(_ bytes: [UInt8]) -> ClientNegotiationAction {
        switch state {
        case .awaitingGreetingPrefix:
            return receivedGreetingPrefix(bytes)
        case .awaitingNewstyleFlags:
            return receivedNewstyleFlags(bytes)
        case .awaitingOldstyleRest:
            return receivedOldstyleRest(bytes)
        case .awaitingReplyHeader(let step):
            return receivedReplyHeader(bytes, step: step)
        case .awaitingReplyPayload(let step, let header):
            return handleReply(header, payload: bytes, step: step)
        case .awaitingExportNameReply(let padded):
            return receivedExportNameReply(bytes, padded: padded)
        case .awaitingTLS:
            // Plaintext after the STARTTLS ACK belongs to TLS, never to NBD (docs/tls.md §3.1).
            return violation("bytes were handed to the negotiation while TLS was starting")
        case .initial, .finished:
            return violation("bytes received outside the handshake")
        }
    }

    /// The TLS handshake finished; continue negotiating inside TLS with a fresh session.
    public mutating func tlsEstablished() -> ClientNegotiationAction {
        guard case .awaitingTLS = state else { return violation("TLS established without STARTTLS") }
        tlsActive = true
        session = Session()
        pendingPrefix = []
        return afterTLSDecision()
    }

    /// The peer closed the connection: explain it for the current state.
    public func connectionClosed() -> ClientNegotiationError {
        switch state {
        case .awaitingExportNameReply:
            return ClientNegotiationError(.exportNotFound,
                "server closed the connection after NBD_OPT_EXPORT_NAME: export '\(echo(configuration.exportName))' does not exist or was refused",
                option: .exportName)
        case .awaitingReplyHeader(.startTLS), .awaitingReplyPayload(.startTLS, _):
            if configuration.tlsPolicy == .require {
                return ClientNegotiationError(.tlsUnavailable, "server closed the connection instead of answering STARTTLS; TLS is required", option: .startTLS)
            }
            return ClientNegotiationError(.connectionClosed, "server closed the connection instead of answering STARTTLS", option: .startTLS)
        case .awaitingReplyHeader(let step), .awaitingReplyPayload(let step, _):
            return ClientNegotiationError(.connectionClosed, "server closed the connection while we waited for its reply to \(step.option)", option: step.option)
        case .awaitingGreetingPrefix, .awaitingNewstyleFlags, .awaitingOldstyleRest:
            return ClientNegotiationError(.connectionClosed, "server closed the connection before completing its greeting")
        default:
            return ClientNegotiationError(.connectionClosed, "server closed the connection during the handshake")
        }
    }

    // MARK: - Greeting

    mutating func receivedGreetingPrefix(_ bytes: [UInt8]) -> ClientNegotiationAction {
        let style: GreetingStyle
        do { style = try GreetingStyle(firstSixteenBytes: bytes) } catch {
            return violation("not an NBD server: \(message(of: error))")
        }
        switch style {
        case .newstyle:
            state = .awaitingNewstyleFlags
            return .receive(count: 2)
        case .oldstyle:
            handshake = .oldstyle
            if configuration.tlsPolicy == .require {
                return fail(ClientNegotiationError(.tlsUnavailable,
                    "server uses the oldstyle handshake, which cannot do TLS, and TLS is required"), abort: false)
            }
            state = .awaitingOldstyleRest
            return .receive(count: OldstyleGreeting.wireSize - 16)
        }
    }

    mutating func receivedNewstyleFlags(_ bytes: [UInt8]) -> ClientNegotiationAction {
        guard bytes.count == 2 else { return violation("handshake flags must be 2 bytes") }
        serverFlags = HandshakeFlags(rawValue: UInt16(bytes[0]) << 8 | UInt16(bytes[1]))
        let fixed = serverFlags.contains(.fixedNewstyle)
        handshake = fixed ? .fixedNewstyle : .newstyle
        // Set only bits the server offered; ignore its unknown bits.
        clientFlags = []
        if fixed { clientFlags.insert(.fixedNewstyle) }
        if serverFlags.contains(.noZeroes) { clientFlags.insert(.noZeroes) }
        pendingPrefix = clientFlags.bytes

        guard fixed else {
            if configuration.tlsPolicy == .require {
                return fail(ClientNegotiationError(.tlsUnavailable,
                    "server does not support fixed newstyle negotiation, so it cannot do STARTTLS, and TLS is required"), abort: false)
            }
            if configuration.mode != .go {
                return fail(ClientNegotiationError(.unsupported,
                    "server does not support fixed newstyle negotiation, so it cannot list or describe exports"), abort: false)
            }
            return sendExportName()
        }
        if configuration.tlsPolicy != .disable {
            // STARTTLS first, so nothing stateful exists before encryption (docs/protocol.md §4.2).
            return sendOption(.startTLS, payload: [])
        }
        return afterTLSDecision()
    }

    mutating func receivedOldstyleRest(_ bytes: [UInt8]) -> ClientNegotiationAction {
        // Re-assemble the whole greeting for the shared decoder.
        var whole = ByteWriter(capacity: OldstyleGreeting.wireSize)
        whole.append(NBDMagic.nbdMagic)
        whole.append(NBDMagic.oldstyleCliserv)
        whole.append(bytes: bytes)
        let greeting: OldstyleGreeting
        do { greeting = try OldstyleGreeting(decoding: whole.bytes) } catch {
            return violation("bad oldstyle greeting: \(message(of: error))")
        }
        guard configuration.mode == .go else {
            return fail(ClientNegotiationError(.unsupported, "server uses the oldstyle handshake, which cannot list or describe exports"), abort: false)
        }
        guard configuration.exportName.isEmpty else {
            return fail(ClientNegotiationError(.unsupported,
                "server uses the oldstyle handshake, which has no export names, but export '\(echo(configuration.exportName))' was requested"), abort: false)
        }
        if let problem = exportProblem(size: greeting.exportSize, flags: greeting.transmissionFlags) {
            return violation(problem)
        }
        state = .finished
        let export = NegotiatedExport(requestedName: "", size: greeting.exportSize, flags: greeting.transmissionFlags,
                                      replyMode: .simple, handshake: .oldstyle)
        return .finish(.transmission(export), send: [])
    }

    // MARK: - Option sequencing

    /// After STARTTLS (or instead of it): pick reply format, contexts, then the final option.
    mutating func afterTLSDecision() -> ClientNegotiationAction {
        if configuration.mode == .list {
            return sendOption(.list, payload: [])
        }
        if configuration.requestExtendedHeaders {
            return sendOption(.extendedHeaders, payload: [])
        }
        return afterExtendedHeaders()
    }

    mutating func afterExtendedHeaders() -> ClientNegotiationAction {
        if session.replyMode == .simple && configuration.requestStructuredReplies {
            return sendOption(.structuredReply, payload: [])
        }
        return afterReplyMode()
    }

    mutating func afterReplyMode() -> ClientNegotiationAction {
        guard session.replyMode != .simple else { return sendFinalOption() }
        if configuration.listMetaContexts {
            return sendMetaContextOption(.listMetaContext, queries: [])
        }
        return afterListMetaContext()
    }

    mutating func afterListMetaContext() -> ClientNegotiationAction {
        if session.replyMode != .simple && !configuration.metaContexts.isEmpty {
            return sendMetaContextOption(.setMetaContext, queries: configuration.metaContexts)
        }
        return sendFinalOption()
    }

    mutating func sendFinalOption() -> ClientNegotiationAction {
        session.info = InfoAccumulator()
        let request = InfoRequestPayload(exportName: configuration.exportName, requestedInfo: [.blockSize, .name, .description])
        let payload = (try? request.encoded()) ?? []
        return sendOption(configuration.mode == .info ? .info : .go, payload: payload)
    }

    mutating func sendMetaContextOption(_ option: NBDOption, queries: [String]) -> ClientNegotiationAction {
        let payload = (try? MetaContextRequestPayload(exportName: configuration.exportName, queries: queries).encoded()) ?? []
        if option == .setMetaContext { session.metaContexts = [] }
        return sendOption(option, payload: payload)
    }

    mutating func sendInfoForListedExport(_ index: Int) -> ClientNegotiationAction {
        session.info = InfoAccumulator()
        let request = InfoRequestPayload(exportName: session.listed[index].name, requestedInfo: [.blockSize, .name, .description])
        let payload = (try? request.encoded()) ?? []
        return send(Self.optionBytes(.info, payload), step: .listInfo(index: index))
    }

    mutating func sendOption(_ option: NBDOption, payload: [UInt8]) -> ClientNegotiationAction {
        let step: Step
        switch option {
        case .startTLS: step = .startTLS
        case .extendedHeaders: step = .extendedHeaders
        case .structuredReply: step = .structuredReply
        case .listMetaContext: step = .listMetaContext
        case .setMetaContext: step = .setMetaContext
        case .go: step = .go
        case .info: step = .info
        default: step = .list
        }
        return send(Self.optionBytes(option, payload), step: step)
    }

    mutating func send(_ bytes: [UInt8], step: Step) -> ClientNegotiationAction {
        let out = pendingPrefix + bytes
        pendingPrefix = []
        repliesForCurrentOption = 0
        state = .awaitingReplyHeader(step)
        return .send(out, thenReceive: OptionReplyHeader.wireSize)
    }

    mutating func sendExportName() -> ClientNegotiationAction {
        let padded = !(serverFlags.contains(.noZeroes) && clientFlags.contains(.noZeroes))
        let out = pendingPrefix + Self.optionBytes(.exportName, Array(configuration.exportName.utf8))
        pendingPrefix = []
        state = .awaitingExportNameReply(padded: padded)
        return .send(out, thenReceive: ExportNameReply.wireSize(includesZeroPadding: padded))
    }

    mutating func receivedExportNameReply(_ bytes: [UInt8], padded: Bool) -> ClientNegotiationAction {
        let reply: ExportNameReply
        do { reply = try ExportNameReply(decoding: bytes, includesZeroPadding: padded) } catch {
            return violation("bad EXPORT_NAME reply: \(message(of: error))")
        }
        if let problem = exportProblem(size: reply.exportSize, flags: reply.transmissionFlags) { return violation(problem) }
        state = .finished
        var export = NegotiatedExport(requestedName: configuration.exportName, size: reply.exportSize,
                                      flags: reply.transmissionFlags, replyMode: session.replyMode,
                                      tlsActive: tlsActive, handshake: handshake,
                                      usedExportNameFallback: handshake == .fixedNewstyle)
        // Contexts were bound to this export name by SET_META_CONTEXT; they stay valid.
        export.metaContexts = session.metaContexts
        export.availableMetaContexts = session.availableMetaContexts
        return .finish(.transmission(export), send: [])
    }

    // MARK: - Option replies

    mutating func receivedReplyHeader(_ bytes: [UInt8], step: Step) -> ClientNegotiationAction {
        let header: OptionReplyHeader
        do { header = try OptionReplyHeader(decoding: bytes) } catch {
            return violation("bad option reply header: \(message(of: error))")
        }
        guard header.option == step.option else {
            return violation("server answered \(header.option) while we waited for \(step.option)")
        }
        repliesForCurrentOption += 1
        guard repliesForCurrentOption <= configuration.maximumRepliesPerOption else {
            return violation("server sent more than \(configuration.maximumRepliesPerOption) replies to \(step.option)")
        }
        let limit = header.replyType.isError ? UInt32(NBDWireLimits.maximumStringLength) : configuration.maximumReplyLength
        guard header.length <= limit else {
            return violation("\(header.replyType) reply to \(step.option) claims \(header.length) bytes, more than the \(limit) allowed")
        }
        if header.replyType == .ack && header.length != 0 {
            return violation("\(step.option) ACK carries \(header.length) bytes of data; an ACK has none")
        }
        if header.length == 0 {
            return handleReply(header, payload: [], step: step)
        }
        state = .awaitingReplyPayload(step, header)
        return .receive(count: Int(header.length))
    }

    mutating func handleReply(_ header: OptionReplyHeader, payload: [UInt8], step: Step) -> ClientNegotiationAction {
        if header.replyType.isError {
            let text = NBDString.lenientMessage(payload)
            return handleError(header.replyType, serverMessage: text.isEmpty ? nil : text, step: step)
        }
        switch (step, header.replyType) {
        case (.startTLS, .ack):
            // Forget everything from the plaintext side now, not just when TLS is up.
            session = Session()
            state = .awaitingTLS
            return .startTLS
        case (.extendedHeaders, .ack):
            session.replyMode = .extended
            return afterExtendedHeaders()
        case (.structuredReply, .ack):
            session.replyMode = .structured
            return afterReplyMode()
        case (.listMetaContext, .metaContext), (.setMetaContext, .metaContext):
            return receivedMetaContext(payload, step: step)
        case (.listMetaContext, .ack):
            return afterListMetaContext()
        case (.setMetaContext, .ack):
            return sendFinalOption()
        case (.go, .info), (.info, .info), (.listInfo, .info):
            return receivedInfo(payload, step: step)
        case (.go, .ack), (.info, .ack), (.listInfo, .ack):
            return receivedInfoAck(step: step)
        case (.list, .server):
            do {
                let entry = try ServerReplyPayload(decoding: payload)
                session.listed.append(ListedExport(name: entry.exportName, listDescription: entry.description))
            } catch {
                return violation("bad NBD_REP_SERVER: \(message(of: error))")
            }
            state = .awaitingReplyHeader(step)
            return .receive(count: OptionReplyHeader.wireSize)
        case (.list, .ack):
            if session.listed.isEmpty { return finishWithAbort(.list([], tlsActive: tlsActive)) }
            return sendInfoForListedExport(0)
        default:
            return violation("unexpected \(header.replyType) reply to \(step.option)")
        }
    }

    mutating func receivedMetaContext(_ payload: [UInt8], step: Step) -> ClientNegotiationAction {
        let context: MetaContextReplyPayload
        do { context = try MetaContextReplyPayload(decoding: payload) } catch {
            return violation("bad NBD_REP_META_CONTEXT: \(message(of: error))")
        }
        guard !context.name.isEmpty else { return violation("NBD_REP_META_CONTEXT with an empty name") }
        if step == .setMetaContext {
            guard !session.metaContexts.contains(where: { $0.id == context.contextID || $0.name == context.name }) else {
                return violation("server selected meta context \(context.contextID) '\(context.name)' twice")
            }
            session.metaContexts.append(NegotiatedMetaContext(id: context.contextID, name: context.name))
        } else {
            session.availableMetaContexts.append(context.name)
        }
        state = .awaitingReplyHeader(step)
        return .receive(count: OptionReplyHeader.wireSize)
    }

    mutating func receivedInfo(_ payload: [UInt8], step: Step) -> ClientNegotiationAction {
        let info: InfoReplyPayload
        do { info = try InfoReplyPayload(decoding: payload) } catch {
            return violation("bad NBD_REP_INFO: \(message(of: error))")
        }
        switch info {
        case .export(let size, let flags):
            if let problem = exportProblem(size: size, flags: flags) { return violation(problem) }
            session.info.size = size
            session.info.flags = flags
        case .name(let name):
            session.info.canonicalName = name
        case .description(let text):
            session.info.description = text
        case .blockSize(let sizes):
            if let problem = sizes.validationProblem { return violation("bad NBD_INFO_BLOCK_SIZE: \(problem)") }
            session.info.blockSizes = sizes
        case .unknown:
            break // clients ignore unknown info types
        }
        state = .awaitingReplyHeader(step)
        return .receive(count: OptionReplyHeader.wireSize)
    }

    mutating func receivedInfoAck(step: Step) -> ClientNegotiationAction {
        let name: String
        if case .listInfo(let index) = step { name = session.listed[index].name } else { name = configuration.exportName }
        guard let size = session.info.size else {
            return violation("server acknowledged \(step.option) for '\(echo(name))' without sending NBD_INFO_EXPORT")
        }
        let export = NegotiatedExport(
            requestedName: name, canonicalName: session.info.canonicalName, description: session.info.description,
            size: size, flags: session.info.flags, blockSizes: session.info.blockSizes,
            replyMode: session.replyMode, metaContexts: step == .go ? session.metaContexts : [],
            availableMetaContexts: session.availableMetaContexts, tlsActive: tlsActive, handshake: handshake)
        switch step {
        case .go:
            state = .finished
            return .finish(.transmission(export), send: [])
        case .info:
            return finishWithAbort(.info(export))
        case .listInfo(let index):
            session.listed[index].info = export
            return nextListedExport(after: index)
        default:
            return violation("internal: INFO ACK in step \(step)")
        }
    }

    mutating func nextListedExport(after index: Int) -> ClientNegotiationAction {
        if index + 1 < session.listed.count { return sendInfoForListedExport(index + 1) }
        return finishWithAbort(.list(session.listed, tlsActive: tlsActive))
    }

    // MARK: - Option errors

    mutating func handleError(_ type: NBDReplyType, serverMessage: String?, step: Step) -> ClientNegotiationAction {
        let option = step.option
        func error(_ kind: ClientNegotiationError.Kind, _ text: String) -> ClientNegotiationError {
            ClientNegotiationError(kind, text, option: option, replyType: type, serverMessage: serverMessage)
        }
        if type == .errShutdown {
            // A client receiving ERR_SHUTDOWN must soft-disconnect.
            return fail(error(.serverShutdown, "server is shutting down (\(type) to \(option))"), abort: true)
        }
        switch step {
        case .startTLS:
            if configuration.tlsPolicy == .require {
                return fail(error(.tlsUnavailable, "server refused STARTTLS with \(type), and TLS is required"), abort: true)
            }
            return afterTLSDecision() // allow: continue in plaintext
        case .extendedHeaders:
            return afterExtendedHeaders() // any error: fall back to structured replies
        case .structuredReply:
            return afterReplyMode() // any error: simple replies
        case .listMetaContext:
            session.availableMetaContexts = []
            return afterListMetaContext()
        case .setMetaContext:
            // A failed SET selects nothing; block status is then unavailable.
            session.metaContexts = []
            return sendFinalOption()
        case .list:
            if type == .errTLSRequired {
                return fail(error(.tlsRequiredByServer, "server requires TLS before listing exports (use nbds://)"), abort: true)
            }
            return fail(error(.optionFailed, "server refused to list exports with \(type)"), abort: true)
        case .listInfo(let index):
            session.listed[index].infoError = infoError(type, name: session.listed[index].name, error: error)
            return nextListedExport(after: index)
        case .go, .info:
            if type == .errUnsupported && step == .go {
                if session.replyMode == .extended {
                    return violation("server refused NBD_OPT_GO with ERR_UNSUP after accepting extended headers")
                }
                return sendExportName()
            }
            return fail(infoError(type, name: configuration.exportName, error: error), abort: true)
        }
    }

    func infoError(_ type: NBDReplyType, name: String,
                   error: (ClientNegotiationError.Kind, String) -> ClientNegotiationError) -> ClientNegotiationError {
        let quoted = "'\(echo(name))'"
        switch type {
        case .errUnknown: return error(.exportNotFound, "export \(quoted) not found")
        case .errTLSRequired: return error(.tlsRequiredByServer, "server requires TLS for export \(quoted) (use nbds://)")
        case .errUnsupported: return error(.unsupported, "server does not support NBD_OPT_INFO")
        case .errPolicy: return error(.optionFailed, "server refused export \(quoted) by policy")
        default: return error(.optionFailed, "server refused export \(quoted) with \(type)")
        }
    }

    // MARK: - Helpers

    func exportProblem(size: UInt64, flags: TransmissionFlags) -> String? {
        // Sizes ≥ 2^63 turn negative in signed code (CVE-2023-5215).
        if size >= 1 << 63 { return "export size \(size) is 2^63 or more" }
        if !flags.contains(.hasFlags) { return "transmission flags 0x\(String(flags.rawValue, radix: 16)) lack HAS_FLAGS" }
        return nil
    }

    mutating func finishWithAbort(_ outcome: ClientNegotiationOutcome) -> ClientNegotiationAction {
        state = .finished
        return .finish(outcome, send: Self.optionBytes(.abort, []))
    }

    mutating func fail(_ error: ClientNegotiationError, abort: Bool) -> ClientNegotiationAction {
        // ABORT only makes sense once options may be sent (fixed newstyle, not mid-TLS).
        let canAbort: Bool
        switch state {
        case .awaitingReplyHeader, .awaitingReplyPayload: canAbort = abort && handshake == .fixedNewstyle
        default: canAbort = false
        }
        state = .finished
        return .fail(error, send: canAbort ? pendingPrefix + Self.optionBytes(.abort, []) : [])
    }

    mutating func violation(_ text: String) -> ClientNegotiationAction {
        fail(ClientNegotiationError(.protocolViolation, "server broke the NBD handshake: \(text)"), abort: false)
    }

    func echo(_ name: String) -> String { NBDString.truncatedForEcho(name) }

    func message(of error: any Error) -> String {
        (error as? NBDProtocolError)?.message ?? "\(error)"
    }

    static func optionBytes(_ option: NBDOption, _ payload: [UInt8]) -> [UInt8] {
        var writer = ByteWriter(capacity: OptionHeader.wireSize + payload.count)
        OptionHeader(option: option, length: UInt32(payload.count)).encode(into: &writer)
        writer.append(bytes: payload)
        return writer.bytes
    }
}
