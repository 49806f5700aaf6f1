/// What to migrate and how: the input of `MigrationOrchestrator`.
public struct MigrationPlan: Sendable {
    /// One disk: the source's block node that the guest uses, and the destination image that
    /// the destination QEMU has opened (inactive) and that the export writes into.
    public struct Disk: Sendable, Equatable {
        /// Source node name (e.g. `vda-format`). In arrangement A also the destination's node.
        public var sourceNode: String
        /// Path of the destination image, for exports outside the destination QEMU.
        public var destinationImage: String
        /// How the export opens the destination image: the mirror writes guest data, so a
        /// qcow2 image is written through the qcow2 driver, never as container bytes.
        public var destinationFormat: ImageFormat
        /// NBD export name; defaults to the node name.
        public var exportName: String

        public enum ImageFormat: String, Sendable, CaseIterable {
            case raw, qcow2
        }

        public init(sourceNode: String, destinationImage: String, destinationFormat: ImageFormat = .raw,
                    exportName: String? = nil) {
            self.sourceNode = sourceNode
            self.destinationImage = destinationImage
            self.destinationFormat = destinationFormat
            self.exportName = exportName ?? sourceNode
        }

        // QEMU limits node names to 31 characters, so ours carry a short hash of the source
        // node instead of its (possibly long) name.
        var jobID: String { "swiftnbd-mirror-\(tag)" }
        var storageNode: String { "swnbd-mig-\(tag)-nbd" }
        var formatNode: String { "swnbd-mig-\(tag)-raw" }

        /// 32-bit FNV-1a of the source node name, as 8 hex digits.
        private var tag: String {
            var hash: UInt32 = 0x811C_9DC5
            for byte in sourceNode.utf8 { hash = (hash ^ UInt32(byte)) &* 0x0100_0193 }
            let hex = String(hash, radix: 16)
            return String(repeating: "0", count: 8 - hex.count) + hex
        }
    }

    /// The QEMU `tls-creds-x509` objects: an existing object id, or a directory from which
    /// the orchestrator creates one (and deletes it afterwards).
    public enum QEMUCredentials: Sendable, Equatable {
        case existing(id: String)
        case directory(String)
    }

    public var disks: [Disk]
    /// Address the source uses to reach the NBD exports and the incoming migration listener.
    public var host: String = "127.0.0.1"
    /// NBD ports, one per disk in order; nil picks free ports.
    public var nbdPorts: [Int]?
    /// Migration listener port on the destination; nil picks a free one.
    public var migrationPort: Int?
    /// x509 directory (QEMU layout) for the NBD exports SwiftNBD serves.
    public var tlsDirectory: String
    /// Client-certificate DNs allowed by the export (`--tls-authz`); empty allows any valid certificate.
    public var tlsAuthorizedDNs: [String] = []
    public var sourceCredentials: QEMUCredentials
    public var destinationCredentials: QEMUCredentials
    public var tunables = MigrationTunables()
    /// Time limit for each waiting phase (mirror to READY, RAM to pre-switchover, ...).
    public var phaseTimeout: Double = 600
    /// Send `cont` to the destination at the end (after the exports are stopped). In
    /// post-copy the destination is resumed as soon as post-copy starts, so the guest runs
    /// there while the rest of RAM follows.
    public var resumeDestination = true
    /// Where the source connects for the migration stream, when not the destination's
    /// listener itself (a tunnel or relay that forwards to `host`:`migrationPort`). Post-copy
    /// recovery reconnects through it too.
    public var migrationConnectAddress: (host: String, port: Int)?
    /// How many times a post-copy whose stream broke is recovered before giving up.
    public var postcopyRecoveryAttempts = 3
    /// Seconds between progress snapshots (and convergence checks).
    public var progressInterval: Double = 1

    public init(disks: [Disk], tlsDirectory: String, sourceCredentials: QEMUCredentials? = nil,
                destinationCredentials: QEMUCredentials? = nil) {
        self.disks = disks
        self.tlsDirectory = tlsDirectory
        self.sourceCredentials = sourceCredentials ?? .directory(tlsDirectory)
        self.destinationCredentials = destinationCredentials ?? .directory(tlsDirectory)
    }

    func validate() throws {
        guard !disks.isEmpty else { throw MigrationError(.invalidPlan, "no disk to migrate", phase: .preflight) }
        guard Set(disks.map(\.sourceNode)).count == disks.count else {
            throw MigrationError(.invalidPlan, "a source node is listed twice", phase: .preflight)
        }
        if let ports = nbdPorts, ports.count != disks.count {
            throw MigrationError(.invalidPlan, "\(ports.count) NBD ports for \(disks.count) disks", phase: .preflight)
        }
        if let postcopy = tunables.postcopyAfterIterations, postcopy < 1 {
            throw MigrationError(.invalidPlan, "post-copy needs at least one pre-copy iteration", phase: .preflight)
        }
        if tunables.postcopyAfterIterations != nil && tunables.multifdChannels != nil {
            throw MigrationError(.invalidPlan, "QEMU does not combine post-copy with multifd", phase: .preflight)
        }
        if tunables.convergePolicy == .postcopy && tunables.multifdChannels != nil {
            throw MigrationError(.invalidPlan, "--converge postcopy needs post-copy, which QEMU does not combine with multifd", phase: .preflight)
        }
        if tunables.multifdCompression != nil && tunables.multifdChannels == nil {
            throw MigrationError(.invalidPlan, "multifd compression needs multifd channels", phase: .preflight)
        }
        if postcopyRecoveryAttempts < 0 {
            throw MigrationError(.invalidPlan, "post-copy recovery attempts must not be negative", phase: .preflight)
        }
        if let channels = tunables.multifdChannels, !(1...255).contains(channels) {
            throw MigrationError(.invalidPlan, "multifd channels must be 1...255", phase: .preflight)
        }
    }

    /// The migration URI, with IPv6 hosts in brackets.
    func migrationURI(port: Int) -> String {
        Self.tcpURI(host: host, port: port)
    }

    static func tcpURI(host: String, port: Int) -> String {
        host.contains(":") ? "tcp:[\(host)]:\(port)" : "tcp:\(host):\(port)"
    }

    /// Whether post-copy may be started (by `--postcopy-after` or the converge policy).
    var mayUsePostcopy: Bool {
        tunables.postcopyAfterIterations != nil || tunables.convergePolicy == .postcopy
    }
}

/// Knobs passed to QEMU's migration (not to the mirror).
public struct MigrationTunables: Sendable, Equatable {
    /// `max-bandwidth`, bytes per second, for the RAM migration stream.
    public var maxBandwidth: Int64?
    /// `downtime-limit`, milliseconds.
    public var downtimeLimitMilliseconds: Int64?
    /// The `auto-converge` capability (throttles vCPUs when RAM does not converge).
    public var autoConverge = false
    /// Switch to post-copy once this many RAM dirty-sync iterations have run.
    public var postcopyAfterIterations: Int?
    /// Number of multifd channels (enables the `multifd` capability on both sides).
    public var multifdChannels: Int?
    /// Mirror job speed limit, bytes per second (`speed` of blockdev-mirror); nil = unlimited.
    public var mirrorSpeed: Int64?
    /// What to do when pre-copy does not converge.
    public var convergePolicy = MigrationConvergePolicy.wait
    /// `max-postcopy-bandwidth`, bytes per second, for the pages pushed during post-copy
    /// (QEMU's default, 0, is unlimited).
    public var postcopyBandwidth: Int64?
    /// Enables the `xbzrle` capability with this cache size in bytes (delta-compresses
    /// pages that are re-sent).
    public var xbzrleCacheSize: Int64?
    /// `multifd-compression` (`zlib`, `zstd`), on both sides; needs `multifdChannels`.
    public var multifdCompression: String?

    public init() {}
}
