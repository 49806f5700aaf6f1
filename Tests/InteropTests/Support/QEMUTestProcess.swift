import Foundation
import QMP

/// What the migration tests' QEMU processes have in common: two monitor sockets, the TLS
/// object, a disk as block nodes, starting the process with its QMP connection, stopping it.
enum QEMUTestProcess {
    /// Two QMP monitors: the test's, and one for `swiftnbd migrate` (QEMU serves one client
    /// per monitor socket).
    static func monitors(_ qmpPath: String, _ commandQMPPath: String) -> [String] {
        ["-qmp", "unix:\(qmpPath),server=on,wait=off", "-qmp", "unix:\(commandQMPPath),server=on,wait=off"]
    }

    /// Object `tls0`; a server endpoint also verifies its clients' certificates.
    static func tlsObject(dir: String, endpoint: String) -> [String] {
        ["-object", "tls-creds-x509,id=tls0,dir=\(dir),endpoint=\(endpoint)" + (endpoint == "server" ? ",verify-peer=on" : "")]
    }

    /// The image at `path` as nodes `ID-storage` and `ID-format`, and a virtio-blk device `ID`.
    static func disk(_ path: String, format: String, id: String, bootindex: Int? = nil) -> [String] {
        ["-blockdev", "driver=file,filename=\(path),node-name=\(id)-storage,cache.direct=off",
         "-blockdev", "driver=\(format),file=\(id)-storage,node-name=\(id)-format",
         "-device", "virtio-blk-pci,drive=\(id)-format,id=\(id)" + (bootindex.map { ",bootindex=\($0)" } ?? "")]
    }

    /// Starts `arguments` and connects to its monitor at `qmpPath`; if that fails, the process
    /// is stopped and the error carries QEMU's log.
    static func start(name: String, _ arguments: [String], qmpPath: String) throws -> (ServerProcess, QMPClient) {
        // No readiness probe: QEMU's monitor serves one client at a time, and a probe that
        // connects and leaves can get in the way of the real connection. The client retries.
        let process = try withUnblockedSignals { try ServerProcess(arguments, listener: nil) }
        do {
            return (process, try QMPClient(unixPath: qmpPath, timeout: 20))
        } catch {
            process.stop(grace: 5)
            throw MigrationTestFailure("\(name): \(error)\nqemu log:\n\(process.log)")
        }
    }

    /// Asks QEMU to quit, then stops the process by PID.
    static func shutdown(_ process: ServerProcess, _ qmp: QMPClient) {
        _ = try? qmp.execute("quit", timeout: 5)
        qmp.close()
        if process.waitForExit(timeout: 10) == nil { process.stop(grace: 5) }
    }
}
