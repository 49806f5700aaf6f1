import Testing
import NBDProtocol

@Suite("Client negotiation state machine")
struct ClientNegotiationStateMachineTests {
    typealias S = ServerBytes

    /// Answers GO with a complete, valid export.
    static func answerGo(_ c: inout Conversation, size: UInt64 = 1 << 20, flags: TransmissionFlags = S.defaultFlags, option: NBDOption = .go) {
        c.reply(S.info(.export(size: size, flags: flags), for: option))
        c.reply(S.info(.blockSize(NBDBlockSizes(minimum: 1, preferred: 4096, maximumPayload: 1 << 25)), for: option))
        c.reply(S.info(.name("disk"), for: option))
        c.reply(S.info(.description("a test disk"), for: option))
        c.reply(S.reply(option, .ack))
    }

    @Test("a modern server gets extended headers, base:allocation and GO, in that order")
    func happyPathExtended() throws {
        var c = Conversation(ClientNegotiationConfiguration(exportName: "disk"))
        #expect(c.lastAction == .receive(count: 16))
        c.greet()
        #expect(c.sentOptions == [.extendedHeaders])
        #expect(c.sentBytes.first?.prefix(4) == [0, 0, 0, 3], "client flags FIXED_NEWSTYLE|NO_ZEROES go out with the first option")
        c.reply(S.reply(.extendedHeaders, .ack))
        #expect(c.sentOptions.last == .setMetaContext)
        c.reply(S.metaContext(7, "base:allocation"))
        c.reply(S.reply(.setMetaContext, .ack))
        #expect(c.sentOptions.last == .go)
        Self.answerGo(&c)
        let export = try #require(c.export)
        guard case .transmission = c.outcome else { Issue.record("expected transmission"); return }
        #expect(export.size == 1 << 20)
        #expect(export.replyMode == .extended)
        #expect(export.metaContextID("base:allocation") == 7)
        #expect(export.canonicalName == "disk")
        #expect(export.description == "a test disk")
        #expect(export.blockSizes?.maximumPayload == 1 << 25)
        #expect(export.tlsActive == false)
        #expect(c.sentOptions == [.extendedHeaders, .setMetaContext, .go])
    }

    @Test("refused extended headers fall back to structured replies")
    func fallbackToStructured() throws {
        var c = Conversation(ClientNegotiationConfiguration())
        c.greet()
        c.reply(S.reply(.extendedHeaders, .errUnsupported))
        #expect(c.sentOptions.last == .structuredReply)
        c.reply(S.reply(.structuredReply, .ack))
        c.reply(S.reply(.setMetaContext, .ack)) // no context selected
        Self.answerGo(&c)
        let export = try #require(c.export)
        #expect(export.replyMode == .structured)
        #expect(export.metaContexts.isEmpty)
    }

    @Test("a server refusing both reply options gets simple replies and no SET_META_CONTEXT")
    func fallbackToSimple() throws {
        var c = Conversation(ClientNegotiationConfiguration())
        c.greet()
        c.reply(S.reply(.extendedHeaders, .errInvalid, Array("no".utf8)))
        c.reply(S.reply(.structuredReply, .errPolicy))
        #expect(c.sentOptions.last == .go)
        Self.answerGo(&c)
        #expect(try #require(c.export).replyMode == .simple)
        #expect(c.sentOptions == [.extendedHeaders, .structuredReply, .go])
    }

    @Test("GO refused with ERR_UNSUP falls back to EXPORT_NAME without zero padding")
    func exportNameFallback() throws {
        var c = Conversation(ClientNegotiationConfiguration(exportName: "old", requestExtendedHeaders: false, requestStructuredReplies: false))
        c.greet()
        c.reply(S.reply(.go, .errUnsupported))
        #expect(c.sentOptions.last == .exportName)
        guard case .send(_, let count) = c.lastAction else { Issue.record("expected send"); return }
        #expect(count == 10)
        c.feed(ExportNameReply(exportSize: 4096, transmissionFlags: S.defaultFlags, includesZeroPadding: false).bytes)
        let export = try #require(c.export)
        #expect(export.usedExportNameFallback)
        #expect(export.size == 4096)
    }

    @Test("EXPORT_NAME reads 134 bytes when the server did not offer NO_ZEROES")
    func exportNamePadding() {
        var c = Conversation(ClientNegotiationConfiguration(requestExtendedHeaders: false, requestStructuredReplies: false))
        c.greet([.fixedNewstyle])
        #expect(c.sentBytes.first?.prefix(4) == [0, 0, 0, 1])
        c.reply(S.reply(.go, .errUnsupported))
        guard case .send(_, let count) = c.lastAction else { Issue.record("expected send"); return }
        #expect(count == 134)
    }

    @Test("GO refused with ERR_UNSUP after extended headers is a protocol violation")
    func noFallbackAfterExtendedHeaders() {
        var c = Conversation(ClientNegotiationConfiguration(metaContexts: []))
        c.greet()
        c.reply(S.reply(.extendedHeaders, .ack))
        c.reply(S.reply(.go, .errUnsupported))
        #expect(c.failure?.kind == .protocolViolation)
    }

    @Test("a non-fixed newstyle server gets EXPORT_NAME straight away")
    func nonFixedNewstyle() throws {
        var c = Conversation(ClientNegotiationConfiguration(exportName: "x"))
        c.greet([])
        #expect(c.sentOptions == [.exportName])
        #expect(c.sentBytes.first?.prefix(4) == [0, 0, 0, 0])
        c.feed(ExportNameReply(exportSize: 512, transmissionFlags: [.hasFlags], includesZeroPadding: true).bytes)
        #expect(try #require(c.export).handshake == .newstyle)
    }

    @Test("an oldstyle server works without TLS and an empty export name")
    func oldstyle() throws {
        var c = Conversation(ClientNegotiationConfiguration())
        let greeting = S.oldstyle(size: 8192, flags: [.hasFlags, .readOnly])
        c.feed(greeting.prefix)
        #expect(c.lastAction == .receive(count: 136))
        c.feed(greeting.rest)
        let export = try #require(c.export)
        #expect(export.handshake == .oldstyle)
        #expect(export.flags.contains(.readOnly))
        #expect(c.sentBytes.isEmpty)
    }

    @Test("an oldstyle server cannot serve a named export")
    func oldstyleNamed() {
        var c = Conversation(ClientNegotiationConfiguration(exportName: "named"))
        let greeting = S.oldstyle(size: 8192, flags: [.hasFlags])
        c.feed(greeting.prefix)
        c.feed(greeting.rest)
        #expect(c.failure?.kind == .unsupported)
    }

    // MARK: TLS policy

    @Test("require refuses an oldstyle server before sending anything")
    func requireRefusesOldstyle() {
        var c = Conversation(ClientNegotiationConfiguration(tlsPolicy: .require))
        c.feed(S.oldstyle(size: 1, flags: [.hasFlags]).prefix)
        #expect(c.failure?.kind == .tlsUnavailable)
        #expect(c.failure?.message.contains("oldstyle") == true)
        #expect(c.sentBytes.isEmpty)
    }

    @Test("require refuses a server without fixed newstyle before sending an export name")
    func requireRefusesNonFixed() {
        var c = Conversation(ClientNegotiationConfiguration(exportName: "secret", tlsPolicy: .require))
        c.greet([.noZeroes])
        #expect(c.failure?.kind == .tlsUnavailable)
        #expect(c.sentOptions.isEmpty)
        #expect(!c.sentBytes.contains { String(decoding: $0, as: UTF8.self).contains("secret") })
    }

    @Test("require sends STARTTLS first and aborts when it is refused, quoting the server")
    func requireRefusedStartTLS() {
        var c = Conversation(ClientNegotiationConfiguration(exportName: "secret", tlsPolicy: .require))
        c.greet()
        #expect(c.sentOptions == [.startTLS])
        c.reply(S.reply(.startTLS, .errPolicy, Array("TLS not configured".utf8)))
        let failure = c.failure
        #expect(failure?.kind == .tlsUnavailable)
        #expect(failure?.serverMessage == "TLS not configured")
        #expect(failure?.description.contains("TLS not configured") == true)
        #expect(c.sentOptions == [.startTLS, .abort])
    }

    @Test("require treats a STARTTLS ACK with data as a failure, not as TLS")
    func startTLSAckWithData() {
        var c = Conversation(ClientNegotiationConfiguration(tlsPolicy: .require))
        c.greet()
        c.reply(S.reply(.startTLS, .ack, [1, 2, 3]))
        #expect(c.failure?.kind == .protocolViolation)
    }

    @Test("a connection closed instead of a STARTTLS reply explains that TLS is required")
    func startTLSClosed() {
        var c = Conversation(ClientNegotiationConfiguration(tlsPolicy: .require))
        c.greet()
        #expect(c.machine.connectionClosed().kind == .tlsUnavailable)
    }

    @Test("allow continues in plaintext when STARTTLS is refused")
    func allowFallsBack() throws {
        var c = Conversation(ClientNegotiationConfiguration(tlsPolicy: .allow, metaContexts: []))
        c.greet()
        c.reply(S.reply(.startTLS, .errUnsupported))
        #expect(c.sentOptions.last == .extendedHeaders)
        c.reply(S.reply(.extendedHeaders, .ack))
        Self.answerGo(&c)
        #expect(try #require(c.export).tlsActive == false)
    }

    @Test("allow on a non-fixed server continues in plaintext")
    func allowNonFixed() {
        var c = Conversation(ClientNegotiationConfiguration(tlsPolicy: .allow))
        c.greet([])
        #expect(c.sentOptions == [.exportName])
    }

    @Test("after the STARTTLS ACK nothing is read until TLS is up, and everything is renegotiated inside")
    func startTLSThenFreshSession() throws {
        var c = Conversation(ClientNegotiationConfiguration(tlsPolicy: .require))
        c.greet()
        c.reply(S.reply(.startTLS, .ack))
        #expect(c.lastAction == .startTLS)
        c.tlsUp()
        #expect(c.sentOptions == [.startTLS, .extendedHeaders])
        #expect(c.sentBytes.last?.count == 16, "no stale client flags after TLS")
        c.reply(S.reply(.extendedHeaders, .errUnsupported))
        c.reply(S.reply(.structuredReply, .ack))
        c.reply(S.metaContext(1, "base:allocation"))
        c.reply(S.reply(.setMetaContext, .ack))
        Self.answerGo(&c)
        let export = try #require(c.export)
        #expect(export.tlsActive)
        #expect(export.replyMode == .structured)
    }

    @Test("plaintext bytes handed over while TLS is starting are refused")
    func noPlaintextAfterStartTLS() {
        var c = Conversation(ClientNegotiationConfiguration(tlsPolicy: .allow))
        c.greet()
        c.reply(S.reply(.startTLS, .ack))
        c.feed(S.reply(.structuredReply, .ack).header)
        #expect(c.failure?.kind == .protocolViolation)
    }

    @Test("disable never sends STARTTLS")
    func disableSkipsStartTLS() {
        var c = Conversation(ClientNegotiationConfiguration(tlsPolicy: .disable))
        c.greet()
        #expect(!c.sentOptions.contains(.startTLS))
    }

    // MARK: Option errors

    @Test("ERR_UNKNOWN to GO names the export and carries the server's message")
    func unknownExport() {
        var c = Conversation(ClientNegotiationConfiguration(exportName: "nope", requestExtendedHeaders: false, requestStructuredReplies: false))
        c.greet()
        c.reply(S.reply(.go, .errUnknown, Array("export not found here".utf8)))
        #expect(c.failure?.kind == .exportNotFound)
        #expect(c.failure?.message.contains("'nope'") == true)
        #expect(c.failure?.serverMessage == "export not found here")
        #expect(c.sentOptions.last == .abort)
    }

    @Test("ERR_TLS_REQD to GO says TLS is needed")
    func tlsRequiredByServer() {
        var c = Conversation(ClientNegotiationConfiguration(requestExtendedHeaders: false, requestStructuredReplies: false))
        c.greet()
        c.reply(S.reply(.go, .errTLSRequired))
        #expect(c.failure?.kind == .tlsRequiredByServer)
    }

    @Test("ERR_SHUTDOWN to any option soft-disconnects")
    func shutdown() {
        var c = Conversation(ClientNegotiationConfiguration())
        c.greet()
        c.reply(S.reply(.extendedHeaders, .errShutdown))
        #expect(c.failure?.kind == .serverShutdown)
        #expect(c.sentOptions.last == .abort)
    }

    @Test("a failed SET_META_CONTEXT leaves no contexts and still reaches GO")
    func failedSetMeta() throws {
        var c = Conversation(ClientNegotiationConfiguration())
        c.greet()
        c.reply(S.reply(.extendedHeaders, .ack))
        c.reply(S.metaContext(1, "base:allocation"))
        c.reply(S.reply(.setMetaContext, .errTooBig))
        Self.answerGo(&c)
        #expect(try #require(c.export).metaContexts.isEmpty)
    }

    // MARK: Unexpected and malformed replies

    @Test("malformed or unexpected replies are protocol violations", arguments: [
        "wrong echo", "ack with data", "oversize", "oversize error", "bad magic", "unexpected type",
        "huge size", "no HAS_FLAGS", "no INFO_EXPORT", "bad block size", "short INFO_EXPORT", "duplicate context",
        "empty context name",
    ])
    func violations(kind: String) {
        var c = Conversation(ClientNegotiationConfiguration(metaContexts: ["base:allocation"]))
        c.greet()
        switch kind {
        case "wrong echo": c.reply(S.reply(.structuredReply, .ack))
        case "ack with data": c.reply(S.reply(.extendedHeaders, .ack, [0]))
        case "oversize": c.reply(S.reply(.extendedHeaders, .info, [], length: 0xffff_ffff))
        case "oversize error": c.reply(S.reply(.extendedHeaders, .errUnsupported, [], length: 4097))
        case "bad magic": c.feed([UInt8](repeating: 0x41, count: 20))
        case "unexpected type": c.reply(S.server("x", ""))
        default:
            c.reply(S.reply(.extendedHeaders, .ack))
            c.reply(S.metaContext(1, "base:allocation"))
            switch kind {
            case "duplicate context": c.reply(S.metaContext(1, "qemu:allocation-depth"))
            case "empty context name": c.reply(S.metaContext(2, ""))
            default:
                c.reply(S.reply(.setMetaContext, .ack))
                switch kind {
                case "huge size": c.reply(S.info(.export(size: 1 << 63, flags: S.defaultFlags)))
                case "no HAS_FLAGS": c.reply(S.info(.export(size: 1, flags: [.readOnly])))
                case "no INFO_EXPORT": c.reply(S.reply(.go, .ack))
                case "bad block size": c.reply(S.info(.blockSize(NBDBlockSizes(minimum: 3, preferred: 4096, maximumPayload: 1 << 20))))
                case "short INFO_EXPORT": c.reply(S.reply(.go, .info, [0, 0, 1, 2, 3]))
                default: Issue.record("unknown case \(kind)")
                }
            }
        }
        #expect(c.failure?.kind == .protocolViolation, "\(kind): \(c.lastAction)")
    }

    @Test("a greeting that is not NBD fails cleanly")
    func notNBD() {
        var c = Conversation(ClientNegotiationConfiguration())
        c.feed(Array("HTTP/1.1 200 OK\r\n\r\n".utf8.prefix(16)))
        #expect(c.failure?.kind == .protocolViolation)
    }

    @Test("unknown info types are ignored")
    func unknownInfo() throws {
        var c = Conversation(ClientNegotiationConfiguration(requestExtendedHeaders: false, requestStructuredReplies: false))
        c.greet()
        c.reply(S.info(.unknown(type: NBDInfoType(rawValue: 99), data: [1, 2, 3])))
        Self.answerGo(&c)
        #expect(c.export != nil)
    }

    @Test("a server sending endless replies to one option is cut off")
    func tooManyReplies() {
        var config = ClientNegotiationConfiguration(mode: .list)
        config.maximumRepliesPerOption = 10
        var c = Conversation(config)
        c.greet()
        for i in 0..<11 { c.reply(S.server("e\(i)", "")) }
        #expect(c.failure?.kind == .protocolViolation)
    }

    @Test("a connection closed after EXPORT_NAME reads as an unknown export")
    func closedAfterExportName() {
        var c = Conversation(ClientNegotiationConfiguration(exportName: "gone"))
        c.greet([])
        #expect(c.machine.connectionClosed().kind == .exportNotFound)
    }

    @Test("names too long to send are refused before connecting")
    func invalidConfiguration() {
        let c = Conversation(ClientNegotiationConfiguration(exportName: String(repeating: "x", count: 5000)))
        #expect(c.failure?.kind == .invalidConfiguration)
    }

    // MARK: List and info modes

    @Test("list mode lists, asks INFO for each export, records per-export errors, then aborts")
    func listMode() throws {
        var c = Conversation(ClientNegotiationConfiguration(mode: .list))
        c.greet()
        #expect(c.sentOptions == [.list])
        c.reply(S.server("a", "first"))
        c.reply(S.server("b", "second"))
        c.reply(S.reply(.list, .ack))
        #expect(c.sentOptions.last == .info)
        Self.answerGo(&c, size: 111, option: .info)
        c.reply(S.reply(.info, .errPolicy, Array("hidden".utf8)))
        guard case .list(let exports, let tls) = c.outcome else { Issue.record("expected list, got \(c.lastAction)"); return }
        #expect(!tls)
        #expect(exports.map(\.name) == ["a", "b"])
        #expect(exports[0].listDescription == "first")
        #expect(exports[0].info?.size == 111)
        #expect(exports[1].info == nil)
        #expect(exports[1].infoError?.serverMessage == "hidden")
        #expect(c.sentOptions == [.list, .info, .info, .abort])
    }

    @Test("an empty list finishes at once")
    func emptyList() {
        var c = Conversation(ClientNegotiationConfiguration(mode: .list))
        c.greet()
        c.reply(S.reply(.list, .ack))
        #expect(c.outcome == .list([], tlsActive: false))
    }

    @Test("info mode ends with INFO and ABORT, not GO")
    func infoMode() throws {
        var c = Conversation(ClientNegotiationConfiguration(mode: .info, requestExtendedHeaders: false, requestStructuredReplies: false))
        c.greet()
        Self.answerGo(&c, option: .info)
        guard case .info(let export) = c.outcome else { Issue.record("expected info"); return }
        #expect(export.size == 1 << 20)
        #expect(c.sentOptions == [.info, .abort])
    }

    @Test("LIST_META_CONTEXT results are reported when asked")
    func listMetaContexts() throws {
        var c = Conversation(ClientNegotiationConfiguration(metaContexts: ["base:allocation"], listMetaContexts: true))
        c.greet()
        c.reply(S.reply(.extendedHeaders, .ack))
        #expect(c.sentOptions.last == .listMetaContext)
        c.reply(S.metaContext(0, "base:allocation", for: .listMetaContext))
        c.reply(S.metaContext(0, "qemu:allocation-depth", for: .listMetaContext))
        c.reply(S.reply(.listMetaContext, .ack))
        c.reply(S.metaContext(3, "base:allocation"))
        c.reply(S.reply(.setMetaContext, .ack))
        Self.answerGo(&c)
        let export = try #require(c.export)
        #expect(export.availableMetaContexts == ["base:allocation", "qemu:allocation-depth"])
        #expect(export.metaContexts == [NegotiatedMetaContext(id: 3, name: "base:allocation")])
    }
}
