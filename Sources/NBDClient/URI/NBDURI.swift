import NBDProtocol

/// An NBD URI as libnbd reads it (doc/uri.md in the NBD project):
///
///     nbd://[user@]host[:port]/export[?query]        TCP, TLS off
///     nbds://[user@]host[:port]/export[?query]       TCP, TLS required
///     nbd+unix:///export?socket=PATH                  Unix socket, TLS off
///     nbds+unix:///export?socket=PATH                 Unix socket, TLS required
///
/// Parse with `NBDURI(_:)`; the parser lives in `NBDURI+Parsing.swift`.
public struct NBDURI: Sendable, Hashable {
    /// Where to connect.
    public enum Transport: Sendable, Hashable {
        /// TCP to `host` (a DNS name, an IPv4 literal or an IPv6 literal without brackets).
        case tcp(host: String, port: UInt16)
        /// A Unix-domain socket; a path starting with NUL names a Linux abstract socket.
        case unix(path: String)
    }

    /// The default NBD port registered with IANA.
    public static let defaultPort: UInt16 = 10809

    public var transport: Transport
    /// Export name: the path without its first `/`, percent-decoded (`""` = default export).
    public var exportName: String
    /// `nbds*` schemes require TLS; `nbd*` schemes leave it off (libnbd's reading).
    public var tlsPolicy: ClientTLSPolicy
    /// `user@` in the authority: the TLS-PSK identity.
    public var user: String?
    /// `tls-certificates=DIR`: a directory in QEMU's layout (ca-cert.pem, client-cert.pem, …).
    public var tlsCertificates: String?
    /// `tls-psk-file=FILE`: a psktool key file (`identity:hexkey` lines).
    public var tlsPSKFile: String?
    /// `tls-verify-peer=BOOL`; `nil` means the default (verify).
    public var tlsVerifyPeer: Bool?
    /// `tls-hostname=NAME`: the name to check the server certificate against.
    public var tlsHostname: String?

    public init(transport: Transport, exportName: String = "", tlsPolicy: ClientTLSPolicy = .disable,
                user: String? = nil, tlsCertificates: String? = nil, tlsPSKFile: String? = nil,
                tlsVerifyPeer: Bool? = nil, tlsHostname: String? = nil) {
        self.transport = transport
        self.exportName = exportName
        self.tlsPolicy = tlsPolicy
        self.user = user
        self.tlsCertificates = tlsCertificates
        self.tlsPSKFile = tlsPSKFile
        self.tlsVerifyPeer = tlsVerifyPeer
        self.tlsHostname = tlsHostname
    }

    /// The host name a certificate should be checked against: `tls-hostname`, else the TCP
    /// host; `nil` for Unix sockets without `tls-hostname`.
    public var certificateHostname: String? {
        if let tlsHostname { return tlsHostname }
        if case let .tcp(host, _) = transport { return host }
        return nil
    }
}

extension NBDURI: CustomStringConvertible {
    /// A canonical spelling of the URI (percent-encoded where needed).
    public var description: String {
        let tls = tlsPolicy == .require
        var out: String
        var query: [String] = []
        switch transport {
        case let .tcp(host, port):
            out = tls ? "nbds://" : "nbd://"
            if let user { out += URIPercentEncoding.encode(user, allowing: .userinfo) + "@" }
            out += host.contains(":") ? "[\(host)]" : URIPercentEncoding.encode(host, allowing: .host)
            if port != NBDURI.defaultPort { out += ":\(port)" }
        case let .unix(path):
            out = tls ? "nbds+unix://" : "nbd+unix://"
            if let user { out += URIPercentEncoding.encode(user, allowing: .userinfo) + "@" }
            query.append("socket=" + URIPercentEncoding.encode(path, allowing: .queryValue))
        }
        out += "/" + URIPercentEncoding.encode(exportName, allowing: .path)
        if let tlsCertificates { query.append("tls-certificates=" + URIPercentEncoding.encode(tlsCertificates, allowing: .queryValue)) }
        if let tlsPSKFile { query.append("tls-psk-file=" + URIPercentEncoding.encode(tlsPSKFile, allowing: .queryValue)) }
        if let tlsVerifyPeer { query.append("tls-verify-peer=\(tlsVerifyPeer)") }
        if let tlsHostname { query.append("tls-hostname=" + URIPercentEncoding.encode(tlsHostname, allowing: .queryValue)) }
        if !query.isEmpty { out += "?" + query.joined(separator: "&") }
        return out
    }
}
