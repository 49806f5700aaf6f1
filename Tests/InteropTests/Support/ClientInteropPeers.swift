import Foundation

/// NBD servers the client interop tests talk to, each on its own Unix socket.
enum ClientInteropPeers {
    /// Servers start with signals unblocked (see `withUnblockedSignals`) so SIGTERM stops them cleanly.
    /// `qemu-nbd` in the foreground, persistent (`-t`) so the readiness probe does not use up
    /// its only connection, sharable by 8 clients (multi-conn).
    static func qemuNBD(_ arguments: [String], in dir: TempDir, export: String = "disk",
                        qemu: QEMUGeneration = .debian) throws -> (server: ServerProcess, uri: String) {
        let socket = dir.file("qemu-\(UUID().uuidString.prefix(6)).sock")
        let server = try withUnblockedSignals { try ServerProcess([qemu.nbd, "-t", "-e", "8", "-k", socket, "-x", export] + arguments,
                                       listener: .unix(path: socket)) }
        return (server, "nbd+unix:///\(export)?socket=\(socket)")
    }

    /// `nbdkit` in the foreground (`-f`).
    static func nbdkit(_ arguments: [String], in dir: TempDir) throws -> (server: ServerProcess, uri: String) {
        let socket = dir.file("kit-\(UUID().uuidString.prefix(6)).sock")
        let server = try withUnblockedSignals { try ServerProcess(["nbdkit", "-f", "-U", socket] + arguments, listener: .unix(path: socket)) }
        return (server, "nbd+unix:///?socket=\(socket)")
    }

    /// `qemu-storage-daemon` exporting `image` (format `format`) as NBD export `export`.
    static func storageDaemon(image: String, format: String, in dir: TempDir, export: String = "disk",
                              description: String? = nil, writable: Bool = true,
                              qemu: QEMUGeneration = .debian) throws -> (server: ServerProcess, uri: String) {
        let socket = dir.file("qsd-\(UUID().uuidString.prefix(6)).sock")
        var exportArg = "type=nbd,id=exp0,node-name=fmt0,name=\(export),writable=\(writable ? "on" : "off")"
        if let description { exportArg += ",description=\(description)" }
        let server = try withUnblockedSignals { try ServerProcess([
            qemu.storageDaemon,
            "--blockdev", "driver=file,node-name=file0,filename=\(image)",
            "--blockdev", "driver=\(format),node-name=fmt0,file=file0",
            "--nbd-server", "addr.type=unix,addr.path=\(socket)",
            "--export", exportArg,
        ], listener: .unix(path: socket)) }
        return (server, "nbd+unix:///\(export)?socket=\(socket)")
    }

    static func swiftnbd(_ arguments: [String], timeout: Double = 120) throws -> RunResult {
        try run([Peers.swiftnbd] + arguments, timeout: timeout)
    }
}
