/// Answers one option for `ServerNegotiationStateMachine`: applies the TLS policy gate, then
/// dispatches to the per-option rules. Mutates only its copy of the phase; the state machine
/// keeps the result when the connection stays in option haggling.
struct OptionHandler {
    enum Next: Hashable, Sendable {
        case nextOption
        case startTLS
        case transmission(NegotiatedSession)
        case close(String)
    }

    struct Outcome: Hashable, Sendable {
        var actions: [ServerNegotiationAction]
        var next: Next
    }

    let configuration: ServerNegotiationConfiguration
    var phase: ServerOptionPhase
    let shuttingDown: Bool
    /// Set when this option was refused only because TLS is not active (ERR_TLS_REQD, or the
    /// close/ERR_POLICY that stands in for it), so the engine can count such clients.
    private(set) var refusedWithoutTLS = false

    init(configuration: ServerNegotiationConfiguration, phase: ServerOptionPhase, shuttingDown: Bool = false) {
        self.configuration = configuration
        self.phase = phase
        self.shuttingDown = shuttingDown
    }

    mutating func handle(option: NBDOption, payload: [UInt8]) -> Outcome {
        // A non-fixed-newstyle client knows no option replies: only EXPORT_NAME makes sense.
        if !phase.isFixedNewstyle && option != .exportName {
            return Outcome(actions: [], next: .close("\(option) from a client that is not fixed newstyle"))
        }
        if shuttingDown {
            switch option {
            case .abort: return abort()
            case .exportName: return Outcome(actions: [], next: .close("EXPORT_NAME while the server shuts down"))
            default: return reply(error: .errShutdown, option, "server is shutting down")
            }
        }
        if let refusal = phase.authorizationRefusal {
            switch option {
            case .abort: return abort()
            case .exportName: return Outcome(actions: [], next: .close("EXPORT_NAME from an unauthorised TLS peer"))
            default: return reply(error: .errPolicy, option, refusal)
            }
        }
        if configuration.tlsMode == .require && !phase.tlsActive {
            switch option {
            case .startTLS, .abort: break
            case .exportName:
                refusedWithoutTLS = true
                return Outcome(actions: [], next: .close("EXPORT_NAME before STARTTLS while TLS is required"))
            default:
                refusedWithoutTLS = true
                return reply(error: .errTLSRequired, option, "TLS is required; send NBD_OPT_STARTTLS first")
            }
        }
        switch option {
        case .exportName: return exportName(payload)
        case .abort: return abort()
        case .list: return list(payload)
        case .startTLS: return startTLS(payload)
        case .info, .go: return infoOrGo(option, payload)
        case .structuredReply: return structuredReply(payload)
        case .extendedHeaders: return extendedHeaders(payload)
        case .listMetaContext, .setMetaContext: return metaContext(option, payload)
        default: return reply(error: .errUnsupported, option, "\(option) is not supported")
        }
    }

    // MARK: Helpers

    /// An option refused while decoding its payload.
    private struct Refusal: Error { let outcome: Outcome }

    /// Decodes an option's payload, or gives the NBD_REP_ERR_INVALID reply saying why not.
    private func decode<Payload>(_ option: NBDOption, _ body: () throws -> Payload) -> Result<Payload, Refusal> {
        do {
            return .success(try body())
        } catch let error as NBDProtocolError {
            return .failure(Refusal(outcome: reply(error: .errInvalid, option, "malformed \(option) data: \(error.message)")))
        } catch {
            return .failure(Refusal(outcome: reply(error: .errInvalid, option, "malformed \(option) data")))
        }
    }

    private func reply(error type: NBDReplyType, _ option: NBDOption, _ message: String) -> Outcome {
        Outcome(actions: [.send(OptionReply.error(type, for: option, message: message).bytes)], next: .nextOption)
    }

    private func ack(_ option: NBDOption) -> Outcome {
        Outcome(actions: [.send(OptionReply.ack(option).bytes)], next: .nextOption)
    }

    private func echo(_ name: String) -> String { "'\(NBDString.truncatedForEcho(name))'" }

    private enum Lookup {
        case found(ExportDescriptor)
        case unknown
        case needsTLS
    }

    /// Resolves a client-supplied export name under the TLS policy of this phase.
    private func lookUp(_ name: String) -> Lookup {
        guard let export = configuration.export(named: name) else { return .unknown }
        if export.tlsOnly && !phase.tlsActive {
            // With TLS off a TLS-only export can never be served, and ERR_TLS_REQD is forbidden.
            return configuration.tlsMode == .off ? .unknown : .needsTLS
        }
        return .found(export)
    }

    private func session(for export: ExportDescriptor, requestedBlockSizes: Bool) -> NegotiatedSession {
        var contexts: [UInt32: NBDMetaContext] = [:]
        if let selection = phase.metaSelection, selection.exportName == export.name {
            for context in selection.contexts { contexts[context.contextID] = context }
        }
        return NegotiatedSession(export: export, structuredReplies: phase.structuredReplies,
                                 extendedHeaders: phase.extendedHeaders, metaContexts: contexts,
                                 clientRequestedBlockSizes: requestedBlockSizes,
                                 transmissionFlags: export.advertisedFlags(structuredOrExtended: phase.structuredOrExtended),
                                 clientFlags: phase.clientFlags, tlsActive: phase.tlsActive,
                                 peerIdentity: phase.peerIdentity)
    }

    // MARK: Options

    /// NBD_OPT_EXPORT_NAME: no error reply exists, so every refusal closes.
    private mutating func exportName(_ payload: [UInt8]) -> Outcome {
        if phase.extendedHeaders {
            return Outcome(actions: [], next: .close("EXPORT_NAME after extended headers were negotiated"))
        }
        let name: String
        do {
            name = try ExportNameOptionPayload(decoding: payload).exportName
        } catch {
            return Outcome(actions: [], next: .close("malformed EXPORT_NAME: \(error)"))
        }
        switch lookUp(name) {
        case .unknown:
            return Outcome(actions: [], next: .close("EXPORT_NAME for unknown export \(echo(name))"))
        case .needsTLS:
            refusedWithoutTLS = true
            return Outcome(actions: [], next: .close("EXPORT_NAME for TLS-only export \(echo(name)) without TLS"))
        case .found(let export):
            let session = session(for: export, requestedBlockSizes: false)
            let reply = ExportNameReply(exportSize: export.size, transmissionFlags: session.transmissionFlags,
                                        includesZeroPadding: !phase.clientFlags.contains(.noZeroes))
            return Outcome(actions: [.send(reply.bytes)], next: .transmission(session))
        }
    }

    /// NBD_OPT_ABORT: data is ignored; ACK (the client may already be gone) and close.
    private func abort() -> Outcome {
        Outcome(actions: [.send(OptionReply.ack(.abort).bytes)], next: .close("client sent NBD_OPT_ABORT"))
    }

    /// NBD_OPT_LIST: one SERVER reply per visible export, then ACK.
    private func list(_ payload: [UInt8]) -> Outcome {
        guard payload.isEmpty else { return reply(error: .errInvalid, .list, "NBD_OPT_LIST takes no data") }
        var actions: [ServerNegotiationAction] = []
        for export in configuration.exports where !export.tlsOnly || phase.tlsActive {
            guard let reply = try? OptionReply.with(.server, for: .list,
                                                    payload: ServerReplyPayload(exportName: export.name, description: export.description))
            else { continue } // a name/description we could not legally send is skipped, not sent broken
            actions.append(.send(reply.bytes))
        }
        actions.append(.send(OptionReply.ack(.list).bytes))
        return Outcome(actions: actions, next: .nextOption)
    }

    /// NBD_OPT_STARTTLS: the policy matrix of docs/protocol.md §3.4.
    private func startTLS(_ payload: [UInt8]) -> Outcome {
        if phase.tlsActive { return reply(error: .errInvalid, .startTLS, "TLS is already active") }
        guard payload.isEmpty else { return reply(error: .errInvalid, .startTLS, "NBD_OPT_STARTTLS takes no data") }
        if configuration.tlsMode == .off {
            return configuration.tlsSupported
                ? reply(error: .errPolicy, .startTLS, "TLS is disabled on this server")
                : reply(error: .errUnsupported, .startTLS, "this server has no TLS support")
        }
        return Outcome(actions: [.send(OptionReply.ack(.startTLS).bytes)], next: .startTLS)
    }

    /// NBD_OPT_INFO / NBD_OPT_GO: always NBD_INFO_EXPORT and NBD_INFO_BLOCK_SIZE (like QEMU);
    /// NAME and DESCRIPTION when asked; GO then enters transmission.
    private mutating func infoOrGo(_ option: NBDOption, _ payload: [UInt8]) -> Outcome {
        let request: InfoRequestPayload
        switch decode(option, { try InfoRequestPayload(decoding: payload) }) {
        case .failure(let refusal): return refusal.outcome
        case .success(let decoded): request = decoded
        }
        let export: ExportDescriptor
        switch lookUp(request.exportName) {
        case .unknown: return reply(error: .errUnknown, option, "export \(echo(request.exportName)) not found")
        case .needsTLS:
            refusedWithoutTLS = true
            return reply(error: .errTLSRequired, option, "export \(echo(request.exportName)) requires TLS")
        case .found(let found): export = found
        }
        let asked = Set(request.requestedInfo)
        let session = session(for: export, requestedBlockSizes: option == .go && asked.contains(.blockSize))
        var infos: [InfoReplyPayload] = [.export(size: export.size, flags: session.transmissionFlags)]
        if asked.contains(.name) { infos.append(.name(export.name)) }
        if asked.contains(.description) { infos.append(.description(export.description)) }
        infos.append(.blockSize(export.blockSizes))
        var actions: [ServerNegotiationAction] = []
        for info in infos {
            guard let reply = try? OptionReply.with(.info, for: option, payload: info) else { continue }
            actions.append(.send(reply.bytes))
        }
        actions.append(.send(OptionReply.ack(option).bytes))
        guard option == .go else { return Outcome(actions: actions, next: .nextOption) }
        return Outcome(actions: actions, next: .transmission(session))
    }

    private mutating func structuredReply(_ payload: [UInt8]) -> Outcome {
        guard payload.isEmpty else { return reply(error: .errInvalid, .structuredReply, "NBD_OPT_STRUCTURED_REPLY takes no data") }
        if phase.extendedHeaders {
            return reply(error: .errExtendedHeaderRequired, .structuredReply, "extended headers are already negotiated")
        }
        if phase.structuredReplies {
            return reply(error: .errInvalid, .structuredReply, "structured replies are already negotiated")
        }
        guard configuration.allowsStructuredReplies else {
            return reply(error: .errUnsupported, .structuredReply, "structured replies are disabled")
        }
        phase.structuredReplies = true
        return ack(.structuredReply)
    }

    private mutating func extendedHeaders(_ payload: [UInt8]) -> Outcome {
        guard payload.isEmpty else { return reply(error: .errInvalid, .extendedHeaders, "NBD_OPT_EXTENDED_HEADERS takes no data") }
        if phase.extendedHeaders {
            return reply(error: .errInvalid, .extendedHeaders, "extended headers are already negotiated")
        }
        guard configuration.allowsExtendedHeaders else {
            return reply(error: .errUnsupported, .extendedHeaders, "extended headers are disabled")
        }
        phase.extendedHeaders = true
        return ack(.extendedHeaders)
    }

    /// NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT. SET replaces the selection even
    /// when it fails, so every failure path of SET clears it first.
    private mutating func metaContext(_ option: NBDOption, _ payload: [UInt8]) -> Outcome {
        let isSet = option == .setMetaContext
        if isSet { phase.metaSelection = nil }
        if isSet && !phase.structuredOrExtended {
            return reply(error: .errInvalid, option, "negotiate structured replies or extended headers first")
        }
        let request: MetaContextRequestPayload
        switch decode(option, { try MetaContextRequestPayload(decoding: payload) }) {
        case .failure(let refusal): return refusal.outcome
        case .success(let decoded): request = decoded
        }
        let export: ExportDescriptor
        switch lookUp(request.exportName) {
        case .unknown: return reply(error: .errUnknown, option, "export \(echo(request.exportName)) not found")
        case .needsTLS:
            // ERR_TLS_REQD is reserved for INFO/GO in selective mode (docs/protocol.md §3.4).
            refusedWithoutTLS = true
            return reply(error: .errPolicy, option, "export \(echo(request.exportName)) requires TLS")
        case .found(let found): export = found
        }
        let contexts = MetaContextQueryResolver(export: export)
            .contexts(for: request.queries, listing: !isSet)
        var actions: [ServerNegotiationAction] = []
        for context in contexts {
            let payload = MetaContextReplyPayload(contextID: isSet ? context.contextID : 0, name: context.name)
            guard let reply = try? OptionReply.with(.metaContext, for: option, payload: payload) else { continue }
            actions.append(.send(reply.bytes))
        }
        actions.append(.send(OptionReply.ack(option).bytes))
        if isSet {
            phase.metaSelection = .init(exportName: export.name, contexts: contexts)
        }
        return Outcome(actions: actions, next: .nextOption)
    }
}
