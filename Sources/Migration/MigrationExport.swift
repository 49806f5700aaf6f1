import QMP

/// An NBD export of one destination image, reachable by the source's mirror.
public protocol MigrationExport: AnyObject, Sendable {
    var host: String { get }
    var port: Int { get }
    var exportName: String { get }
    /// Stops serving: flush, close the image, release its lock. After this returns nothing
    /// of the export touches the image any more (docs/migration.md §3.1, step 8). Idempotent.
    func stop() throws
    /// Diagnostics for error messages (e.g. a child's log).
    var log: String { get }
}

/// Who serves the destination images during the mirror.
public protocol MigrationExportLauncher: Sendable {
    /// A short name for reports ("swiftnbd (in-process)", "qemu-nbd", "destination QEMU").
    var name: String { get }
    func start(disk: MigrationPlan.Disk, port: Int, context: MigrationExportContext) throws -> any MigrationExport
}

/// What a launcher may need besides the disk: the plan (host, TLS directory, authorized DNs)
/// and, for arrangement A, the destination QEMU and the id of its server-side TLS object.
public struct MigrationExportContext: Sendable {
    public let plan: MigrationPlan
    public let destination: QMPClient
    public let destinationCredentialsID: String
}
