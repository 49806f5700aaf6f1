import Testing
@testable import NBDProtocol

@Suite("Server negotiation: greeting and client flags")
struct ServerGreetingTests {
    @Test("the server greets with FIXED_NEWSTYLE and NO_ZEROES, then reads client flags")
    func greeting() throws {
        var machine = ServerNegotiationStateMachine(configuration: Fixtures.configuration(.off))
        let actions = machine.start()
        #expect(steps(actions) == [.greeting, .readClientFlags])
        guard case .send(let bytes) = actions.first else { Issue.record("no greeting"); return }
        #expect(try NewstyleGreeting(decoding: bytes).handshakeFlags == [.fixedNewstyle, .noZeroes])
    }

    @Test("client flags with unknown bits close the connection")
    func unknownClientFlags() {
        var machine = ServerNegotiationStateMachine(configuration: Fixtures.configuration(.off))
        _ = machine.start()
        #expect(steps(machine.receivedClientFlags(UInt32(0x5))) == [.close])
        #expect(machine.isFinished)
    }

    @Test("a non-fixed-newstyle client is closed when TLS is required")
    func nonFixedInRequireMode() {
        var machine = ServerNegotiationStateMachine(configuration: Fixtures.configuration(.require))
        _ = machine.start()
        #expect(steps(machine.receivedClientFlags(UInt32(0))) == [.close])
    }

    @Test("a non-fixed-newstyle client may only use EXPORT_NAME")
    func nonFixedClient() {
        runTable(Fixtures.configuration(.off), clientFlags: [], [
            (.option(.list), [.close]),
        ])
        let driver = runTable(Fixtures.configuration(.off), clientFlags: [], [
            (.option(.exportName, utf8("disk")), [.exportNameReply(bytes: 134), .transmission]),
        ])
        #expect(driver.session?.exportName == "disk")
    }

    @Test("events out of order close instead of trapping")
    func outOfOrder() {
        var machine = ServerNegotiationStateMachine(configuration: Fixtures.configuration(.off))
        #expect(steps(machine.receivedOption(option: .go, payload: [])) == [.close])
        var second = ServerNegotiationStateMachine(configuration: Fixtures.configuration(.off))
        _ = second.start()
        #expect(steps(second.tlsHandshakeSucceeded(peerIdentity: nil)) == [.close])
    }

    @Test("option data that does not match its header closes")
    func mismatchedPayload() {
        var driver = NegotiationDriver(Fixtures.configuration(.off))
        #expect(steps(driver.machine.receivedOptionHeader(option: .list, length: 4)) == [.readPayload(4)])
        #expect(steps(driver.machine.receivedOption(option: .list, payload: [1])) == [.close])
    }

    @Test("an option longer than the limit closes before its data is read")
    func oversizeOption() {
        var driver = NegotiationDriver(Fixtures.configuration(.off))
        #expect(steps(driver.machine.receivedOptionHeader(option: .go, length: 0xffff_ffff)) == [.close])
    }

    @Test("more options than the limit close the connection")
    func tooManyOptions() {
        var config = Fixtures.configuration(.off)
        config.maximumOptions = 3
        runTable(config, [
            (.option(.list), [.server("disk"), .reply(.ack), .readNext]),
            (.option(.list), [.server("disk"), .reply(.ack), .readNext]),
            (.option(NBDOption(rawValue: 77)), [.reply(.errUnsupported), .readNext]),
            (.option(.list), [.close]),
        ])
    }
}

@Suite("Server negotiation: options")
struct ServerOptionTests {
    @Test("EXPORT_NAME answers 134 bytes without C_NO_ZEROES and 10 with it")
    func exportName() throws {
        let padded = runTable(Fixtures.configuration(.off), clientFlags: [.fixedNewstyle], [
            (.option(.exportName, utf8("disk")), [.exportNameReply(bytes: 134), .transmission]),
        ])
        let session = try #require(padded.session)
        #expect(session.transmissionFlags.contains(.hasFlags))
        #expect(!session.transmissionFlags.contains(.sendDF))
        #expect(!session.clientRequestedBlockSizes)
        runTable(Fixtures.configuration(.off), [
            (.option(.exportName, utf8("")), [.exportNameReply(bytes: 10), .transmission]),
        ])
    }

    @Test("EXPORT_NAME for an unknown export, a bad name or after extended headers closes")
    func exportNameRefusals() {
        runTable(Fixtures.configuration(.off), [(.option(.exportName, utf8("nope")), [.close])])
        runTable(Fixtures.configuration(.off), [(.option(.exportName, [0x61, 0]), [.close])])
        runTable(Fixtures.configuration(.off), [
            (.option(.extendedHeaders), [.reply(.ack), .readNext]),
            (.option(.exportName, utf8("disk")), [.close]),
        ])
    }

    @Test("ABORT is acknowledged, then the connection closes, even with data")
    func abort() {
        runTable(Fixtures.configuration(.off), [(.option(.abort, [1, 2]), [.reply(.ack), .close])])
    }

    @Test("LIST names every plaintext-visible export and rejects data")
    func list() {
        runTable(Fixtures.configuration(.on), [
            (.option(.list), [.server("disk"), .reply(.ack), .readNext]),
            (.option(.list, [0]), [.reply(.errInvalid), .readNext]),
            (.option(.startTLS), [.reply(.ack), .startTLS]),
            (.tlsSucceeds, [.readNext]),
            (.option(.list), [.server("disk"), .server("secret"), .reply(.ack), .readNext]),
        ])
    }

    @Test("GO sends EXPORT and BLOCK_SIZE always, NAME and DESCRIPTION when asked, then ACK")
    func go() throws {
        let driver = runTable(Fixtures.configuration(.off), [
            (.option(.go, goPayload("", [.name, .description, .blockSize])),
             [.info(.export), .info(.name), .info(.description), .info(.blockSize), .reply(.ack), .transmission]),
        ])
        let session = try #require(driver.session)
        #expect(session.exportName == "disk")
        #expect(session.clientRequestedBlockSizes)
        #expect(session.replyForm == .simple)
        #expect(session.metaContexts.isEmpty)
    }

    @Test("INFO answers like GO and keeps negotiating")
    func info() {
        runTable(Fixtures.configuration(.off), [
            (.option(.info, goPayload("disk")), [.info(.export), .info(.blockSize), .reply(.ack), .readNext]),
            (.option(.go, goPayload("disk")), [.info(.export), .info(.blockSize), .reply(.ack), .transmission]),
        ])
    }

    @Test("INFO/GO for an unknown export or with malformed data get errors and negotiation continues")
    func infoErrors() {
        let hugeName = be(UInt32(0xffff_ffff)) + be(UInt16(0))
        let innerTooLong = be(UInt32(100)) + utf8("disk") + be(UInt16(0))
        let trailing = goPayload("disk") + [0]
        runTable(Fixtures.configuration(.off), [
            (.option(.go, goPayload("nope")), [.reply(.errUnknown), .readNext]),
            (.option(.go, hugeName), [.reply(.errInvalid), .readNext]),
            (.option(.go, be(UInt32(0xffff_fffe)) + be(UInt16(0))), [.reply(.errInvalid), .readNext]),
            (.option(.info, innerTooLong), [.reply(.errInvalid), .readNext]),
            (.option(.go, trailing), [.reply(.errInvalid), .readNext]),
            (.option(.go, goPayload("disk", [NBDInfoType(rawValue: 999)])), [.info(.export), .info(.blockSize), .reply(.ack), .transmission]),
        ])
    }

    @Test("a GO error message echoing a 4096-byte name stays short")
    func longNameEcho() throws {
        var driver = NegotiationDriver(Fixtures.configuration(.off))
        _ = driver.send(.go, goPayload(String(repeating: "x", count: 4096)))
        guard case .send(let bytes) = driver.log.last(where: { if case .send = $0 { true } else { false } }) else {
            Issue.record("no reply"); return
        }
        let header = try OptionReplyHeader(decoding: Array(bytes.prefix(20)))
        #expect(header.replyType == .errUnknown)
        #expect(header.length < 256)
    }

    @Test("structured replies are acknowledged once; a repeat is invalid")
    func structuredReplies() throws {
        let driver = runTable(Fixtures.configuration(.off), [
            (.option(.structuredReply), [.reply(.ack), .readNext]),
            (.option(.structuredReply), [.reply(.errInvalid), .readNext]),
            (.option(.structuredReply, [1]), [.reply(.errInvalid), .readNext]),
            (.option(.go, goPayload("disk")), [.info(.export), .info(.blockSize), .reply(.ack), .transmission]),
        ])
        let session = try #require(driver.session)
        #expect(session.replyForm == .structured)
        #expect(session.transmissionFlags.contains(.sendDF))
    }

    @Test("structured replies after extended headers get ERR_EXT_HEADER_REQD")
    func structuredAfterExtended() throws {
        let driver = runTable(Fixtures.configuration(.off), [
            (.option(.extendedHeaders), [.reply(.ack), .readNext]),
            (.option(.structuredReply), [.reply(.errExtendedHeaderRequired), .readNext]),
            (.option(.extendedHeaders), [.reply(.errInvalid), .readNext]),
            (.option(.go, goPayload("disk")), [.info(.export), .info(.blockSize), .reply(.ack), .transmission]),
        ])
        let session = try #require(driver.session)
        #expect(session.replyForm == .extended)
        #expect(session.requestForm == .extended)
        #expect(session.transmissionFlags.contains(.sendDF))
    }

    @Test("disabled structured replies and extended headers get ERR_UNSUP")
    func disabledFeatures() {
        var config = Fixtures.configuration(.off)
        config.allowsStructuredReplies = false
        config.allowsExtendedHeaders = false
        runTable(config, [
            (.option(.structuredReply), [.reply(.errUnsupported), .readNext]),
            (.option(.extendedHeaders), [.reply(.errUnsupported), .readNext]),
        ])
    }

    @Test("unknown options and PEEK_EXPORT get ERR_UNSUP")
    func unknownOptions() {
        runTable(Fixtures.configuration(.off), [
            (.option(.peekExport), [.reply(.errUnsupported), .readNext]),
            (.option(NBDOption(rawValue: 0xffff_ffff), [1, 2, 3]), [.reply(.errUnsupported), .readNext]),
        ])
    }
}

@Suite("Server negotiation: meta contexts")
struct ServerMetaContextTests {
    @Test("SET_META_CONTEXT before structured replies is invalid")
    func setBeforeStructured() {
        runTable(Fixtures.configuration(.off), [
            (.option(.setMetaContext, metaPayload("disk", ["base:allocation"])), [.reply(.errInvalid), .readNext]),
        ])
    }

    @Test("LIST_META_CONTEXT with no queries lists everything the export offers")
    func listAll() {
        runTable(Fixtures.configuration(.off), [
            (.option(.structuredReply), [.reply(.ack), .readNext]),
            (.option(.listMetaContext, metaPayload("disk", [])),
             [.context("base:allocation"), .context("qemu:allocation-depth"), .reply(.ack), .readNext]),
            (.option(.listMetaContext, metaPayload("disk", ["base:", "x-unknown:thing", "nocolon"])),
             [.context("base:allocation"), .reply(.ack), .readNext]),
        ])
    }

    @Test("SET selects base:allocation with a unique id bound to the export")
    func setAndGo() throws {
        let driver = runTable(Fixtures.configuration(.off), [
            (.option(.structuredReply), [.reply(.ack), .readNext]),
            (.option(.setMetaContext, metaPayload("disk", ["base:allocation", "qemu:allocation-depth", "base:allocation", "base:", "other:x"])),
             [.context("base:allocation"), .context("qemu:allocation-depth"), .reply(.ack), .readNext]),
            (.option(.go, goPayload("disk")), [.info(.export), .info(.blockSize), .reply(.ack), .transmission]),
        ])
        let session = try #require(driver.session)
        #expect(Set(session.metaContexts.values) == [.baseAllocation, .allocationDepth])
        #expect(Set(session.metaContexts.keys).count == 2)
        #expect(session.contextID(for: .baseAllocation) != nil)
    }

    @Test("meta contexts are dropped when GO names another export")
    func droppedOnOtherExport() throws {
        var config = Fixtures.configuration(.off)
        config.exports.append(ExportDescriptor(name: "other", size: 512))
        let driver = runTable(config, [
            (.option(.structuredReply), [.reply(.ack), .readNext]),
            (.option(.setMetaContext, metaPayload("disk", ["base:allocation"])), [.context("base:allocation"), .reply(.ack), .readNext]),
            (.option(.go, goPayload("other")), [.info(.export), .info(.blockSize), .reply(.ack), .transmission]),
        ])
        #expect(try #require(driver.session).metaContexts.isEmpty)
    }

    @Test("the default name and the canonical name select the same export for meta contexts")
    func defaultNameBinding() throws {
        let driver = runTable(Fixtures.configuration(.off), [
            (.option(.structuredReply), [.reply(.ack), .readNext]),
            (.option(.setMetaContext, metaPayload("", ["base:allocation"])), [.context("base:allocation"), .reply(.ack), .readNext]),
            (.option(.go, goPayload("disk")), [.info(.export), .info(.blockSize), .reply(.ack), .transmission]),
        ])
        #expect(try #require(driver.session).metaContexts.values.contains(.baseAllocation))
    }

    @Test("a later SET replaces the selection, even when it fails")
    func setReplaces() throws {
        let driver = runTable(Fixtures.configuration(.off), [
            (.option(.structuredReply), [.reply(.ack), .readNext]),
            (.option(.setMetaContext, metaPayload("disk", ["base:allocation"])), [.context("base:allocation"), .reply(.ack), .readNext]),
            (.option(.setMetaContext, metaPayload("nope", ["base:allocation"])), [.reply(.errUnknown), .readNext]),
            (.option(.go, goPayload("disk")), [.info(.export), .info(.blockSize), .reply(.ack), .transmission]),
        ])
        #expect(try #require(driver.session).metaContexts.isEmpty)
    }

    @Test("malformed meta-context data is invalid")
    func malformed() {
        let hugeCount = be(UInt32(4)) + utf8("disk") + be(UInt32(0xffff_ffff))
        runTable(Fixtures.configuration(.off), [
            (.option(.structuredReply), [.reply(.ack), .readNext]),
            (.option(.setMetaContext, hugeCount), [.reply(.errInvalid), .readNext]),
            (.option(.listMetaContext, metaPayload("disk", []) + [0]), [.reply(.errInvalid), .readNext]),
        ])
    }

    @Test("allocation depth is only offered by exports that have it")
    func depthOnlyWhenOffered() {
        var config = Fixtures.configuration(.off)
        config.exports = [ExportDescriptor(name: "plain", size: 512)]
        config.defaultExportName = "plain"
        runTable(config, [
            (.option(.structuredReply), [.reply(.ack), .readNext]),
            (.option(.setMetaContext, metaPayload("", ["qemu:allocation-depth"])), [.reply(.ack), .readNext]),
            (.option(.listMetaContext, metaPayload("", ["qemu:"])), [.reply(.ack), .readNext]),
        ])
    }
}

@Suite("Server negotiation: shutdown")
struct ServerShutdownTests {
    @Test("while the server shuts down options get ERR_SHUTDOWN and ABORT still closes politely")
    func shutdown() {
        var driver = NegotiationDriver(Fixtures.configuration(.off))
        #expect(driver.send(.structuredReply) == [.reply(.ack), .readNext])
        #expect(driver.machine.serverIsShuttingDown().isEmpty)
        #expect(driver.send(.go, goPayload("disk")) == [.reply(.errShutdown), .readNext])
        #expect(driver.send(.list) == [.reply(.errShutdown), .readNext])
        #expect(driver.send(.abort) == [.reply(.ack), .close])
    }

    @Test("EXPORT_NAME during shutdown closes")
    func exportNameDuringShutdown() {
        var driver = NegotiationDriver(Fixtures.configuration(.off))
        _ = driver.machine.serverIsShuttingDown()
        #expect(driver.send(.exportName, utf8("disk")) == [.close])
    }
}
