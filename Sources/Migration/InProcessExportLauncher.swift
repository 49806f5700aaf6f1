import BlockDevices
import Foundation
import Logging
import NBDServer
import NBDTLS
import Qcow2

/// Serves each destination image from an `NBDServer` inside this process (the default of
/// `swiftnbd migrate`): raw or qcow2 image, writable, TLS required, client certificates verified
/// against the plan's CA (optionally limited to `tlsAuthorizedDNs`).
public struct InProcessExportLauncher: MigrationExportLauncher {
    public let logger: Logger
    /// Metadata cache sizes for qcow2 destination images.
    public let qcow2Cache: Qcow2CacheOptions

    public init(logger: Logger = Logger(label: "swiftnbd.migrate.export"), qcow2Cache: Qcow2CacheOptions = .default) {
        self.logger = logger
        self.qcow2Cache = qcow2Cache
    }

    public var name: String { "swiftnbd (in-process)" }

    public func start(disk: MigrationPlan.Disk, port: Int, context: MigrationExportContext) throws -> any MigrationExport {
        let plan = context.plan
        guard let port16 = UInt16(exactly: port) else {
            throw MigrationError(.exportFailed, "port \(port) is out of range", phase: .exporting)
        }
        let provider: GnuTLSServerTLSProvider
        do {
            provider = try GnuTLSServerTLSProvider(TLSServerConfiguration(
                credentials: .x509(directory: plan.tlsDirectory), verifyPeer: true,
                authorizedDNs: try DNAuthorizationList(parsing: plan.tlsAuthorizedDNs)))
        } catch {
            throw MigrationError(.exportFailed, "TLS credentials in \(plan.tlsDirectory): \(error)", phase: .exporting)
        }
        let device: any BlockDevice
        do {
            // Takes QEMU-compatible image locks: a second writer cannot open the image while
            // we serve it (docs/migration.md §5), and they are released on close.
            switch disk.destinationFormat {
            case .raw: device = try RawFileDevice(path: disk.destinationImage, readOnly: false)
            case .qcow2: device = try Qcow2Image(path: disk.destinationImage, readOnly: false, cache: qcow2Cache)
            }
        } catch {
            throw MigrationError(.exportFailed, "cannot open \(disk.destinationImage): \(error)", phase: .exporting)
        }
        let configuration = ServerConfiguration(
            listenAddresses: [.tcp(host: plan.host, port: port16)],
            exports: [ExportConfiguration(name: disk.exportName, description: "migration target for \(disk.sourceNode)", device: device)],
            tlsMode: .require, tlsProvider: provider)
        let server: NBDServer
        do {
            server = try NBDServer(configuration: configuration, logger: logger)
            try server.start()
        } catch {
            try? device.close()
            throw MigrationError(.exportFailed, "export \(disk.exportName) on \(plan.host):\(port): \(error)", phase: .exporting)
        }
        // Graceful shutdown: stop accepting, finish requests in flight, flush and close the
        // image (dropping its locks), then return.
        return StoppableExport(host: plan.host, port: Int(server.boundPorts.first ?? port16), exportName: disk.exportName,
                               stopOnRelease: true) {
            server.shutdown()
            server.waitUntilStopped()
        }
    }
}
