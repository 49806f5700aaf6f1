import Testing
@testable import NBDProtocol

@Suite("Server negotiation: STARTTLS")
struct ServerSTARTTLSTests {
    @Test("structured replies negotiated before STARTTLS are forgotten")
    func structuredRepliesForgotten() throws {
        let driver = runTable(Fixtures.configuration(.on), [
            (.option(.structuredReply), [.reply(.ack), .readNext]),
            (.option(.extendedHeaders), [.reply(.ack), .readNext]),
            (.option(.startTLS), [.reply(.ack), .startTLS]),
            (.tlsSucceeds, [.readNext]),
            (.option(.go, goPayload("disk")), [.info(.export), .info(.blockSize), .reply(.ack), .transmission]),
        ])
        let session = try #require(driver.session)
        #expect(session.replyForm == .simple)
        #expect(!session.transmissionFlags.contains(.sendDF))
        #expect(session.tlsActive)
        #expect(session.peerIdentity == "CN=client")
    }

    @Test("meta contexts selected before STARTTLS are forgotten")
    func metaContextsForgotten() throws {
        let driver = runTable(Fixtures.configuration(.on), [
            (.option(.structuredReply), [.reply(.ack), .readNext]),
            (.option(.setMetaContext, metaPayload("disk", ["base:allocation"])), [.context("base:allocation"), .reply(.ack), .readNext]),
            (.option(.startTLS), [.reply(.ack), .startTLS]),
            (.tlsSucceeds, [.readNext]),
            (.option(.structuredReply), [.reply(.ack), .readNext]),
            (.option(.go, goPayload("disk")), [.info(.export), .info(.blockSize), .reply(.ack), .transmission]),
        ])
        let session = try #require(driver.session)
        #expect(session.replyForm == .structured)
        #expect(session.metaContexts.isEmpty)
    }

    @Test("client flags survive STARTTLS, so EXPORT_NAME still honours C_NO_ZEROES")
    func clientFlagsSurvive() {
        runTable(Fixtures.configuration(.on), [
            (.option(.startTLS), [.reply(.ack), .startTLS]),
            (.tlsSucceeds, [.readNext]),
            (.option(.exportName, utf8("secret")), [.exportNameReply(bytes: 10), .transmission]),
        ])
    }

    @Test("STARTTLS with data is invalid in every mode")
    func startTLSWithData() {
        for mode in [ServerTLSMode.off, .on, .require] {
            runTable(Fixtures.configuration(mode), [
                (.option(.startTLS, [0]), [.reply(.errInvalid), .readNext]),
            ])
        }
    }

    @Test("a second STARTTLS after TLS is up is invalid and TLS stays on")
    func secondStartTLS() throws {
        let driver = runTable(Fixtures.configuration(.require), [
            (.option(.startTLS), [.reply(.ack), .startTLS]),
            (.tlsSucceeds, [.readNext]),
            (.option(.startTLS), [.reply(.errInvalid), .readNext]),
            (.option(.go, goPayload("secret")), [.info(.export), .info(.blockSize), .reply(.ack), .transmission]),
        ])
        #expect(try #require(driver.session).tlsActive)
    }

    @Test("with TLS off STARTTLS gets ERR_POLICY, or ERR_UNSUP without TLS support")
    func tlsOff() {
        runTable(Fixtures.configuration(.off), [(.option(.startTLS), [.reply(.errPolicy), .readNext])])
        runTable(Fixtures.configuration(.off, tlsSupported: false), [(.option(.startTLS), [.reply(.errUnsupported), .readNext])])
    }

    @Test("with TLS off a TLS-only export is unknown, never ERR_TLS_REQD")
    func tlsOffHidesTLSOnlyExport() {
        runTable(Fixtures.configuration(.off), [
            (.option(.list), [.server("disk"), .reply(.ack), .readNext]),
            (.option(.go, goPayload("secret")), [.reply(.errUnknown), .readNext]),
            (.option(.exportName, utf8("secret")), [.close]),
        ])
    }

    @Test("require mode refuses every option but STARTTLS and ABORT before TLS")
    func requireMatrix() {
        let refused: [(NBDOption, [UInt8])] = [
            (.list, []), (.info, goPayload("disk")), (.go, goPayload("disk")), (.structuredReply, []),
            (.extendedHeaders, []), (.listMetaContext, metaPayload("disk", [])),
            (.setMetaContext, metaPayload("disk", [])), (.peekExport, []), (NBDOption(rawValue: 1000), []),
        ]
        for (option, payload) in refused {
            runTable(Fixtures.configuration(.require), [(.option(option, payload), [.reply(.errTLSRequired), .readNext])])
        }
        runTable(Fixtures.configuration(.require), [(.option(.abort), [.reply(.ack), .close])])
        runTable(Fixtures.configuration(.require), [(.option(.exportName, utf8("disk")), [.close])])
    }

    @Test("require mode serves everything normally after TLS")
    func requireAfterTLS() {
        runTable(Fixtures.configuration(.require), [
            (.option(.startTLS), [.reply(.ack), .startTLS]),
            (.tlsSucceeds, [.readNext]),
            (.option(.list), [.server("disk"), .server("secret"), .reply(.ack), .readNext]),
            (.option(.info, goPayload("nope")), [.reply(.errUnknown), .readNext]),
            (.option(NBDOption(rawValue: 1000)), [.reply(.errUnsupported), .readNext]),
            (.option(.exportName, utf8("disk")), [.exportNameReply(bytes: 10), .transmission]),
        ])
    }

    @Test("in on mode a TLS-only export needs TLS: INFO/GO get ERR_TLS_REQD, meta contexts ERR_POLICY, EXPORT_NAME closes")
    func selectiveTLS() {
        runTable(Fixtures.configuration(.on), [
            (.option(.info, goPayload("secret")), [.reply(.errTLSRequired), .readNext]),
            (.option(.go, goPayload("secret")), [.reply(.errTLSRequired), .readNext]),
            (.option(.info, goPayload("disk")), [.info(.export), .info(.blockSize), .reply(.ack), .readNext]),
            (.option(.structuredReply), [.reply(.ack), .readNext]),
            (.option(.setMetaContext, metaPayload("secret", ["base:allocation"])), [.reply(.errPolicy), .readNext]),
            (.option(.exportName, utf8("secret")), [.close]),
        ])
    }

    @Test("a failed TLS handshake closes the connection")
    func handshakeFails() {
        runTable(Fixtures.configuration(.on), [
            (.option(.startTLS), [.reply(.ack), .startTLS]),
            (.tlsFails, [.close]),
        ])
    }

    @Test("an unauthorised TLS peer gets ERR_POLICY for every option until it aborts")
    func unauthorisedPeer() {
        runTable(Fixtures.configuration(.require), [
            (.option(.startTLS), [.reply(.ack), .startTLS]),
            (.tlsRefused("not on the list"), [.readNext]),
            (.option(.go, goPayload("disk")), [.reply(.errPolicy), .readNext]),
            (.option(.list), [.reply(.errPolicy), .readNext]),
            (.option(.abort), [.reply(.ack), .close]),
        ])
    }

    @Test("the STARTTLS ACK is the last thing sent before the handshake")
    func ackThenStartTLS() throws {
        var driver = NegotiationDriver(Fixtures.configuration(.require))
        _ = driver.machine.receivedOptionHeader(option: .startTLS, length: 0)
        let actions = driver.machine.receivedOption(option: .startTLS, payload: [])
        #expect(actions.count == 2)
        #expect(actions.last == .startTLS)
        guard case .send(let bytes) = actions.first else { Issue.record("no ACK"); return }
        #expect(bytes == OptionReply.ack(.startTLS).bytes)
        #expect(bytes.count == 20)
    }
}
