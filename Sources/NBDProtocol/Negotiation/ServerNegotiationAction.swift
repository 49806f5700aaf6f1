/// What the server engine must do next, in order. Produced by `ServerNegotiationStateMachine`.
public enum ServerNegotiationAction: Hashable, Sendable {
    /// Write these bytes to the peer (one unit).
    case send([UInt8])
    /// Read the 4-byte client flags, then call `receivedClientFlags`.
    case readClientFlags
    /// Read a 16-byte option header, decode it (`OptionHeader`), then call `receivedOptionHeader`.
    /// A header that fails to decode (wrong magic) means: close the connection.
    case readNextOption
    /// Read exactly `length` bytes of option data, then call `receivedOption`. The length was
    /// already checked against the configured maximum.
    case readOptionPayload(length: UInt32)
    /// All preceding sends are done (the STARTTLS ACK went out in plaintext): run the TLS
    /// handshake now, having read nothing past the STARTTLS option, then call
    /// `tlsHandshakeSucceeded` or `tlsHandshakeFailed`.
    case startTLS
    /// Negotiation is over: switch to the transmission phase with this session.
    case enterTransmission(NegotiatedSession)
    /// Close the connection (after performing preceding sends; shut TLS down first if active).
    case close(reason: String)
}
