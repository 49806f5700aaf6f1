import Foundation

/// The NBD server that exports the destination image to the source's mirror (arrangement B1):
/// `swiftnbd serve`, or qemu-nbd as the reference.
enum MigrationExportServer: String, CaseIterable, Sendable, CustomStringConvertible {
    case swiftnbd
    case qemuNBD = "qemu-nbd"

    var description: String { rawValue }

    var isAvailable: Bool {
        switch self {
        case .swiftnbd: return FileManager.default.isExecutableFile(atPath: Peers.swiftnbd)
        case .qemuNBD: return Peers.available("qemu-nbd")
        }
    }

    /// Starts the server exporting `image` as "vda" on 127.0.0.1:`port`, requiring TLS with
    /// client-certificate verification against `pki` when given, plaintext otherwise.
    /// `exitOnDisconnect` (swiftnbd only): the server exits by itself once the mirror's
    /// connection closes, instead of waiting for SIGTERM.
    func start(image: String, port: Int, pki: String?, exitOnDisconnect: Bool = false,
               qemu: QEMUGeneration = .debian) throws -> ServerProcess {
        let args: [String]
        switch self {
        case .swiftnbd:
            args = [Peers.swiftnbd, "serve", "--bind", "127.0.0.1", "--port", String(port), "--name", "vda"]
                + (pki.map { ["--tls", "require", "--tls-certificates", $0] } ?? ["--tls", "off"])
                + (exitOnDisconnect ? ["--exit-on-disconnect"] : [])
                + [image]
        case .qemuNBD:
            args = [qemu.nbd]
                + (pki.map { ["--object", "tls-creds-x509,id=tls0,dir=\($0),endpoint=server,verify-peer=on", "--tls-creds", "tls0"] } ?? [])
                + ["-f", "raw", "--cache=writeback", "-b", "127.0.0.1", "-p", String(port), "-x", "vda", "-t", "-e", "4", image]
        }
        return try withUnblockedSignals { try ServerProcess(args, listener: .tcp(host: "127.0.0.1", port: port)) }
    }
}
