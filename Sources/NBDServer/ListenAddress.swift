/// Where the server accepts connections.
public enum ListenAddress: Sendable, Hashable, CustomStringConvertible {
    /// TCP on every address `host` resolves to (`nil`: all local addresses, IPv4 and IPv6).
    /// Port 0 picks a free port (see `NBDServer.boundAddresses`).
    case tcp(host: String?, port: UInt16)
    /// A Unix-domain stream socket at `path` (removed again on shutdown).
    case unix(path: String)
    /// An already listening socket handed over by the caller (systemd socket activation).
    case inherited(fd: Int32)

    public var description: String {
        switch self {
        case let .tcp(host, port):
            guard let host else { return "*:\(port)" }
            return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case let .unix(path): return "unix:\(path)"
        case let .inherited(fd): return "inherited fd \(fd)"
        }
    }
}
