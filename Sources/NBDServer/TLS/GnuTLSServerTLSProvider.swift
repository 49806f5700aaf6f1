import NBDTLS
#if canImport(Glibc)
import Glibc
#endif

/// The server engine's TLS seam implemented with GnuTLS: one shared credentials context for
/// all handshakes; `reloadCredentials` (SIGHUP) swaps in a freshly loaded context for new
/// connections while sessions already running keep theirs.
public final class GnuTLSServerTLSProvider: ServerTLSProvider, @unchecked Sendable {
    public let configuration: TLSServerConfiguration
    private var context: TLSServerContext
    private var mutex = pthread_mutex_t()

    /// Loads the credentials now, so a bad directory fails at startup with a clear message.
    public init(_ configuration: TLSServerConfiguration) throws {
        self.configuration = configuration
        context = try TLSServerContext(configuration)
        pthread_mutex_init(&mutex, nil)
    }

    deinit { pthread_mutex_destroy(&mutex) }

    public func acceptHandshake(on socket: SocketStream, peerAddress: String) throws -> ServerTLSOutcome {
        // The engine logs failures with the peer address; the TLSError says why.
        let outcome = try currentContext().accept(on: socket)
        return ServerTLSOutcome(stream: outcome.session, peerIdentity: outcome.peerIdentity, refusal: outcome.refusal)
    }

    public func reloadCredentials() throws {
        let fresh = try TLSServerContext(configuration)
        pthread_mutex_lock(&mutex)
        context = fresh
        pthread_mutex_unlock(&mutex)
    }

    private func currentContext() -> TLSServerContext {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return context
    }
}
