#if canImport(Glibc)
import Glibc
#endif
import NBDProtocol
import NBDTLS

/// Carries out a `ClientNegotiationStateMachine`'s actions on a socket. Makes no protocol
/// decisions: it reads exactly what the machine asks for (so nothing after the STARTTLS ACK is
/// ever read in plaintext), writes what it says, and swaps in the TLS stream when told.
struct ClientHandshakeDriver {
    let socket: SocketStream
    let configuration: NBDClientConfiguration

    /// Runs the handshake to completion. On success returns the stream to continue on (the TLS
    /// session when TLS came up) and the outcome. On failure the socket is closed.
    func run(mode: ClientNegotiationConfiguration.Mode) throws -> (stream: any ByteStream, outcome: ClientNegotiationOutcome) {
        var machine = ClientNegotiationStateMachine(configuration: configuration.negotiation(mode: mode))
        var stream: any ByteStream = socket
        Self.setTimeout(socket.fd, seconds: configuration.handshakeTimeout)
        var action = machine.start()
        do {
            while true {
                switch action {
                case .receive(let count):
                    action = machine.received(try Self.read(count, from: stream, machine: machine))
                case .send(let bytes, let count):
                    try stream.write(bytes)
                    action = machine.received(try Self.read(count, from: stream, machine: machine))
                case .startTLS:
                    guard let provider = configuration.tlsProvider else {
                        throw NBDClientError(.tls, "server accepted STARTTLS but no TLS provider is configured")
                    }
                    do {
                        stream = try provider.startTLS(on: socket, hostname: configuration.tlsHostname)
                    } catch let error as NBDClientError {
                        throw error
                    } catch {
                        throw NBDClientError(.tls, "TLS handshake failed: \(error)")
                    }
                    action = machine.tlsEstablished()
                case .finish(let outcome, let bytes):
                    if !bytes.isEmpty { try? stream.write(bytes) }
                    // Transmission may legitimately wait long for replies: no timeout there.
                    Self.setTimeout(socket.fd, seconds: 0)
                    return (stream, outcome)
                case .fail(let error, let bytes):
                    if !bytes.isEmpty { try? stream.write(bytes) }
                    throw Self.clientError(error)
                }
            }
        } catch {
            stream.close()
            socket.close()
            throw error
        }
    }

    static func read(_ count: Int, from stream: any ByteStream, machine: ClientNegotiationStateMachine) throws -> [UInt8] {
        do {
            return try stream.readExactly(count: count)
        } catch let error as StreamError where error.code == .endOfStream {
            throw clientError(machine.connectionClosed())
        } catch let error as StreamError where error.code == .timedOut {
            throw NBDClientError(.negotiationFailed, "server did not answer the handshake in time (\(error.message))")
        } catch let error as StreamError {
            throw NBDClientError(error.code == .tls ? .tls : .disconnected, "connection failed during the handshake: \(error.message)")
        }
    }

    /// SO_RCVTIMEO/SO_SNDTIMEO on the socket (0 clears them).
    static func setTimeout(_ fd: Int32, seconds: Double) {
        let whole = seconds.rounded(.down)
        var value = timeval(tv_sec: Int(whole), tv_usec: Int((seconds - whole) * 1_000_000))
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
    }

    static func clientError(_ error: ClientNegotiationError) -> NBDClientError {
        let code: NBDClientError.Code
        switch error.kind {
        case .tlsUnavailable, .tlsRequiredByServer: code = .tls
        case .protocolViolation: code = .protocolViolation
        case .connectionClosed: code = .disconnected
        default: code = .negotiationFailed
        }
        return NBDClientError(code, error.message, serverMessage: error.serverMessage)
    }
}
