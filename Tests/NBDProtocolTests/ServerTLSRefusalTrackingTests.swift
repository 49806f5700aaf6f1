import Testing
@testable import NBDProtocol

/// `refusedWithoutTLS`: the state machine's record that a plaintext client was turned away
/// for lack of TLS (the server counts such clients in its metrics).
@Suite("Server negotiation: refusals for lack of TLS")
struct ServerTLSRefusalTrackingTests {
    @Test("TLS required: any option before STARTTLS marks the connection")
    func required() {
        let driver = runTable(Fixtures.configuration(.require), [
            (.option(.go, goPayload("disk")), [.reply(.errTLSRequired), .readNext]),
        ])
        #expect(driver.machine.refusedWithoutTLS)
        var exportName = NegotiationDriver(Fixtures.configuration(.require))
        #expect(exportName.send(.exportName, Array("disk".utf8)) == [.close])
        #expect(exportName.machine.refusedWithoutTLS)
    }

    @Test("TLS on: only a TLS-only export marks it (INFO/GO, META_CONTEXT, EXPORT_NAME)")
    func selective() {
        let plain = runTable(Fixtures.configuration(.on), [
            (.option(.list), [.server("disk"), .reply(.ack), .readNext]),
            (.option(.go, goPayload("disk")), [.info(.export), .info(.blockSize), .reply(.ack), .transmission]),
        ])
        #expect(!plain.machine.refusedWithoutTLS)
        let info = runTable(Fixtures.configuration(.on), [
            (.option(.info, goPayload("secret")), [.reply(.errTLSRequired), .readNext]),
        ])
        #expect(info.machine.refusedWithoutTLS)
        var meta = NegotiationDriver(Fixtures.configuration(.on))
        _ = meta.send(.structuredReply)
        #expect(meta.send(.listMetaContext, metaPayload("secret", ["base:allocation"])) == [.reply(.errPolicy), .readNext])
        #expect(meta.machine.refusedWithoutTLS)
        var exportName = NegotiationDriver(Fixtures.configuration(.on))
        #expect(exportName.send(.exportName, Array("secret".utf8)) == [.close])
        #expect(exportName.machine.refusedWithoutTLS)
    }

    @Test("a non-fixed-newstyle client while TLS is required is marked; STARTTLS and unknown exports are not")
    func others() {
        var oldClient = ServerNegotiationStateMachine(configuration: Fixtures.configuration(.require))
        _ = oldClient.start()
        #expect(oldClient.receivedClientFlags(ClientFlags([])).count == 1)
        #expect(oldClient.refusedWithoutTLS)
        let unknown = runTable(Fixtures.configuration(.on), [
            (.option(.go, goPayload("nope")), [.reply(.errUnknown), .readNext]),
            (.option(.startTLS), [.reply(.ack), .startTLS]),
        ])
        #expect(!unknown.machine.refusedWithoutTLS)
    }
}
