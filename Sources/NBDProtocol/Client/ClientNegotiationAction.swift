/// What the client handshake driver must do next. The driver only carries these out; every
/// protocol decision lives in `ClientNegotiationStateMachine`.
public enum ClientNegotiationAction: Sendable, Hashable {
    /// Read exactly `count` bytes and pass them to `received(_:)`.
    case receive(count: Int)
    /// Write `bytes`, then read exactly `thenReceive` bytes and pass them to `received(_:)`.
    case send([UInt8], thenReceive: Int)
    /// Run the TLS handshake on the socket (nothing more may be read in plaintext), then call
    /// `tlsEstablished()`. If the handshake fails, close: there is no fallback on this connection.
    case startTLS
    /// The handshake is over: write `send` (e.g. `NBD_OPT_ABORT`) if non-empty, then either
    /// enter transmission (`.transmission`) or close (`.info`, `.list`).
    case finish(ClientNegotiationOutcome, send: [UInt8])
    /// Give up: write `send` best-effort (e.g. `NBD_OPT_ABORT`), close, report the error.
    case fail(ClientNegotiationError, send: [UInt8])
}

/// What a finished handshake produced.
public enum ClientNegotiationOutcome: Sendable, Hashable {
    /// GO or EXPORT_NAME succeeded: the connection is in transmission.
    case transmission(NegotiatedExport)
    /// INFO succeeded; the connection is being closed with ABORT.
    case info(NegotiatedExport)
    /// LIST (and INFO per export) done; the connection is being closed with ABORT.
    case list([ListedExport], tlsActive: Bool)
}
