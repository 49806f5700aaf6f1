import ArgumentParser
import NBDServer
import NBDTLS

/// `swiftnbd serve` TLS flags, included in `ServeCommand` as an `@OptionGroup`.
struct TLSServerOptions: ParsableArguments {
    /// off: plaintext only; on: TLS offered (exports may be TLS-only); require: nothing but
    /// STARTTLS and ABORT before TLS.
    enum Mode: String, ExpressibleByArgument, CaseIterable, Sendable {
        case off, on, require
    }

    @Option(name: .customLong("tls"), help: "TLS mode: off, on (offered) or require. Default: require when credentials are given, else off.")
    var mode: Mode?

    @Option(name: .customLong("tls-certificates"), help: "x509 directory in QEMU's layout (ca-cert.pem, server-cert.pem, server-key.pem, optional ca-crl.pem, dh-params.pem).")
    var certificates: String?

    @Option(name: .customLong("tls-psk"), help: "psktool key file (identity:hexkey per line).")
    var pskFile: String?

    @Flag(name: .customLong("no-tls-verify-peer"), help: "Do not request and verify client certificates (x509).")
    var noVerifyPeer = false

    @Option(name: .customLong("tls-authz"), help: "Client certificate DN allowed to connect, e.g. 'CN=laptop,O=Example' (either attribute order; repeatable).")
    var authorizedDNs: [String] = []

    @Option(name: .customLong("tls-priority"), help: "GnuTLS priority string (default NORMAL; PSK adds PSK key exchanges with AES-GCM first).")
    var priority: String?

    @Option(name: .customLong("tls-handshake-timeout"), help: "Seconds a client may take to finish the TLS handshake.")
    var handshakeTimeout: Double = 10

    /// The mode in force: explicit, else require when credentials are configured.
    var effectiveMode: Mode {
        mode ?? ((certificates != nil || pskFile != nil) ? .require : .off)
    }

    func validate() throws {
        if certificates != nil && pskFile != nil {
            throw ValidationError("give either --tls-certificates or --tls-psk, not both")
        }
        if effectiveMode != .off && certificates == nil && pskFile == nil {
            throw ValidationError("--tls \(effectiveMode.rawValue) needs credentials: --tls-certificates DIR or --tls-psk FILE")
        }
        if !authorizedDNs.isEmpty {
            if pskFile != nil { throw ValidationError("--tls-authz checks client certificates; it cannot be used with --tls-psk") }
            if noVerifyPeer { throw ValidationError("--tls-authz needs verified client certificates; drop --no-tls-verify-peer") }
            for dn in authorizedDNs {
                do { _ = try DistinguishedName(parsing: dn) } catch let error as TLSError { throw ValidationError("--tls-authz: \(error.message)") }
            }
        }
        if !(handshakeTimeout > 0 && handshakeTimeout <= 3600) {
            throw ValidationError("--tls-handshake-timeout must be between 0 and 3600 seconds")
        }
    }

    /// The library configuration, or nil when TLS is off.
    func configuration() throws -> TLSServerConfiguration? {
        guard effectiveMode != .off else { return nil }
        let credentials: TLSServerConfiguration.Credentials
        if let pskFile { credentials = .psk(keyFile: pskFile) } else { credentials = .x509(directory: certificates!) }
        return TLSServerConfiguration(credentials: credentials, verifyPeer: !noVerifyPeer,
                                      authorizedDNs: try DNAuthorizationList(parsing: authorizedDNs),
                                      priority: priority, handshakeTimeout: handshakeTimeout)
    }

    /// Loads the credentials (failing at startup with a clear message), or nil when TLS is off.
    func makeProvider() throws -> GnuTLSServerTLSProvider? {
        do {
            guard let configuration = try configuration() else { return nil }
            return try GnuTLSServerTLSProvider(configuration)
        } catch var error as TLSError {
            // Not a ValidationError: a bad credential file is not a usage mistake.
            error.message = "TLS: \(error.message)"
            throw error
        }
    }
}
