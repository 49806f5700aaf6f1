import NBDProtocol
import NBDTLS
#if canImport(Glibc)
import Glibc
#endif

/// The client engine's TLS step implemented with GnuTLS: credentials loaded once (from a
/// `TLSClientConfiguration` or an `nbds://` URI), then one handshake per connection right
/// after the server's STARTTLS ACK. Failures come out as `NBDClientError(.tls)` whose
/// message says why ("server certificate is not trusted: signed by an unknown CA").
public final class GnuTLSClientTLSProvider: ClientTLSProvider, @unchecked Sendable {
    public let context: TLSClientContext

    public init(_ configuration: TLSClientConfiguration) throws {
        do { context = try TLSClientContext(configuration) } catch let error as TLSError {
            throw NBDClientError(.tls, "TLS credentials: \(error.message)")
        }
    }

    /// Credentials as libnbd reads them from a URI: `tls-psk-file` (with the `user@` name,
    /// else `$LOGNAME`) wins over `tls-certificates`; without either, the system CA store.
    public convenience init(uri: NBDURI) throws {
        try self.init(Self.configuration(for: uri))
    }

    public static func configuration(for uri: NBDURI) throws -> TLSClientConfiguration {
        let credentials: TLSClientConfiguration.Credentials
        if let pskFile = uri.tlsPSKFile {
            guard let user = uri.user ?? Self.loginName() else {
                throw NBDClientError(.invalidURI, "tls-psk-file needs a user name: write nbds://USER@host/…")
            }
            credentials = .psk(keyFile: pskFile, username: user)
        } else {
            credentials = .x509(directory: uri.tlsCertificates)
        }
        return TLSClientConfiguration(credentials: credentials, verifyPeer: uri.tlsVerifyPeer ?? true,
                                      hostnameOverride: uri.tlsHostname)
    }

    /// Runs the handshake on `socket`; `hostname` is the connect host (nil for Unix sockets).
    /// The returned stream treats an EOF or alert on its first read as the server rejecting
    /// our client certificate (how TLS 1.3 reports it).
    public func startTLS(on socket: SocketStream, hostname: String?) throws -> any ByteStream {
        do {
            return ClientTLSStream(try context.connect(on: socket, hostname: hostname))
        } catch let error as TLSError {
            throw NBDClientError(.tls, error.message)
        }
    }

    private static func loginName() -> String? {
        if let name = getenv("LOGNAME"), name.pointee != 0 { return String(cString: name) }
        if let name = getlogin() { return String(cString: name) }
        return nil
    }
}
