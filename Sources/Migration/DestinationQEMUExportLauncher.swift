import Foundation
import QMP

/// Arrangement A (docs/migration.md §2): the destination QEMU itself serves its still
/// inactive disk node over NBD with `nbd-server-start` + `block-export-add`. The reference
/// that libvirt uses; here mainly for comparisons. The destination's node must have the
/// source node's name.
public struct DestinationQEMUExportLauncher: MigrationExportLauncher {
    public init() {}

    public var name: String { "destination QEMU (nbd-server-start)" }

    public func start(disk: MigrationPlan.Disk, port: Int, context: MigrationExportContext) throws -> any MigrationExport {
        let qmp = context.destination
        let server = DestinationQEMUNBDServer.shared(for: qmp)
        try server.startIfNeeded(host: context.plan.host, port: port, credentialsID: context.destinationCredentialsID)
        do {
            try qmp.execute("block-export-add", [
                "type": "nbd", "id": .string("swiftnbd-export-\(disk.sourceNode)"), "node-name": .string(disk.sourceNode),
                "name": .string(disk.exportName), "writable": true,
            ])
        } catch {
            throw MigrationError(.exportFailed, "block-export-add \(disk.sourceNode) on the destination: \(error)", phase: .exporting)
        }
        return StoppableExport(host: context.plan.host, port: server.port ?? port, exportName: disk.exportName) {
            try server.release()
        }
    }
}

/// QEMU runs at most one NBD server; all exports of a migration share it, so it is started
/// with the first export and stopped with the last.
final class DestinationQEMUNBDServer: @unchecked Sendable {
    private static let registryLock = NSLock()
    nonisolated(unsafe) private static var registry: [ObjectIdentifier: DestinationQEMUNBDServer] = [:]

    static func shared(for qmp: QMPClient) -> DestinationQEMUNBDServer {
        registryLock.withLock {
            if let existing = registry[ObjectIdentifier(qmp)] { return existing }
            let server = DestinationQEMUNBDServer(qmp: qmp)
            registry[ObjectIdentifier(qmp)] = server
            return server
        }
    }

    let qmp: QMPClient
    private(set) var port: Int?
    private var users = 0
    private let lock = NSLock()

    private init(qmp: QMPClient) { self.qmp = qmp }

    func startIfNeeded(host: String, port: Int, credentialsID: String) throws {
        try lock.withLock {
            if self.port == nil {
                do {
                    try qmp.execute("nbd-server-start", [
                        "addr": ["type": "inet", "data": ["host": .string(host), "port": .string(String(port))]],
                        "tls-creds": .string(credentialsID),
                    ])
                } catch {
                    throw MigrationError(.exportFailed, "nbd-server-start on the destination: \(error)", phase: .exporting)
                }
                self.port = port
            }
            users += 1
        }
    }

    func release() throws {
        try lock.withLock {
            users -= 1
            guard users == 0, port != nil else { return }
            port = nil
            DestinationQEMUNBDServer.registryLock.withLock { DestinationQEMUNBDServer.registry[ObjectIdentifier(qmp)] = nil }
            do {
                try qmp.execute("nbd-server-stop")
            } catch {
                throw MigrationError(.exportFailed, "nbd-server-stop on the destination: \(error)", phase: .stoppingExports)
            }
        }
    }
}
