import Foundation
import Logging
import NBDProtocol
import NBDTLS

extension ClientConnection {
    /// Carries out the negotiation state machine's actions: reads exactly what it asks for
    /// (never past a STARTTLS option), sends what it says, runs TLS when told to.
    /// Returns the session on `.enterTransmission`, nil when the connection is to be closed.
    func negotiate() -> NegotiatedSession? {
        var machine = ServerNegotiationStateMachine(configuration: server.negotiationConfiguration)
        var pending = machine.start()[...]
        var currentOption: OptionHeader?
        var startedTLS = false
        var enteredTransmission = false
        defer {
            // A plaintext client turned away from TLS (and that never tried STARTTLS, whose
            // outcome is counted on its own) counts as one refusal, however many options it tried.
            if machine.refusedWithoutTLS && !startedTLS && !enteredTransmission {
                server.metrics.tlsRefused(.plaintextToTLSOnlyExport)
            }
        }
        do {
            while let action = pending.popFirst() {
                switch action {
                case let .send(bytes):
                    try stream.write(bytes)
                case .readClientFlags:
                    let bytes = try stream.readExactly(count: 4)
                    let flags = bytes.reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
                    pending += machine.receivedClientFlags(flags)
                case .readNextOption:
                    let header = try OptionHeader(decoding: try stream.readExactly(count: OptionHeader.wireSize))
                    currentOption = header
                    logger.debug("option \(header.option) (\(header.length) bytes)")
                    pending += machine.receivedOptionHeader(option: header.option, length: header.length)
                case let .readOptionPayload(length):
                    guard let header = currentOption else { return nil }
                    let payload = try stream.readExactly(count: Int(length))
                    pending += machine.receivedOption(option: header.option, payload: payload)
                case .startTLS:
                    startedTLS = true
                    pending += runTLSHandshake(&machine)
                case let .enterTransmission(session):
                    enteredTransmission = true
                    return session
                case let .close(reason):
                    logger.info("closing during negotiation: \(reason)")
                    return nil
                }
            }
        } catch {
            logger.info("negotiation ended: \(error)")
        }
        return nil
    }

    private func runTLSHandshake(_ machine: inout ServerNegotiationStateMachine) -> [ServerNegotiationAction] {
        guard let provider = server.configuration.tlsProvider else {
            return machine.tlsHandshakeFailed(reason: "no TLS credentials configured")
        }
        do {
            let outcome = try provider.acceptHandshake(on: socket, peerAddress: peer)
            replaceStream(outcome.stream)
            if let refusal = outcome.refusal {
                server.metrics.tlsRefused(.dnNotAuthorized)
                logger.warning("TLS peer \(outcome.peerIdentity ?? "?") not authorised: \(refusal)")
            } else {
                server.metrics.tlsSucceeded()
                logger.debug("TLS established\(outcome.peerIdentity.map { " with \($0)" } ?? "")")
            }
            return machine.tlsHandshakeSucceeded(peerIdentity: outcome.peerIdentity, authorizationRefusal: outcome.refusal)
        } catch {
            // The provider has closed the socket (after sending an alert).
            markSocketClosed()
            server.metrics.tlsRefused((error as? TLSError)?.refusalReason)
            logger.warning("TLS handshake failed: \(error)")
            return machine.tlsHandshakeFailed(reason: String(describing: error))
        }
    }
}
