/// Why a migration did not complete. `phase` says how far it got, so the caller knows what
/// the abort path had to undo; `cleanup` lists what went wrong while undoing it, if anything.
public struct MigrationError: Error, Sendable, CustomStringConvertible {
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        public static let invalidPlan = Code(rawValue: "invalid plan")
        public static let preflightFailed = Code(rawValue: "preflight check failed")
        public static let exportFailed = Code(rawValue: "NBD export failed")
        public static let mirrorFailed = Code(rawValue: "disk mirror failed")
        public static let migrationFailed = Code(rawValue: "migration failed")
        public static let timedOut = Code(rawValue: "timed out")
        public static let interrupted = Code(rawValue: "interrupted")
        public static let resumeFailed = Code(rawValue: "destination did not resume")
        public static let notConverging = Code(rawValue: "RAM not converging")
        /// The post-copy stream broke and could not be recovered: the VM is paused on both sides.
        public static let postcopyPaused = Code(rawValue: "post-copy paused")
    }

    public var code: Code
    public var message: String
    public var phase: MigrationPhase
    public var cleanup: [String]
    /// The measured figures when RAM did not converge (abort by policy, or a time-out in pre-copy).
    public var diagnosis: MigrationConvergenceDiagnosis?

    public init(_ code: Code, _ message: String, phase: MigrationPhase, cleanup: [String] = []) {
        self.code = code
        self.message = message
        self.phase = phase
        self.cleanup = cleanup
    }

    public var description: String {
        var text = "\(code) during \(phase): \(message)"
        if !cleanup.isEmpty { text += "\ncleanup problems:\n  " + cleanup.joined(separator: "\n  ") }
        return text
    }
}

/// The steps of the safe sequence (docs/migration.md §3.1), in order.
public enum MigrationPhase: Int, Sendable, Comparable, CustomStringConvertible {
    case preflight, exporting, preparingDestination, mirroring, migrating, finalSync, switchover, postcopy, stoppingExports, resuming, done

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }

    public var description: String {
        switch self {
        case .preflight: return "preflight"
        case .exporting: return "starting the NBD exports"
        case .preparingDestination: return "preparing the destination"
        case .mirroring: return "mirroring the disks"
        case .migrating: return "migrating RAM"
        case .finalSync: return "final disk sync at pre-switchover"
        case .switchover: return "switchover"
        case .postcopy: return "post-copy"
        case .stoppingExports: return "stopping the NBD exports"
        case .resuming: return "resuming the destination"
        case .done: return "done"
        }
    }
}
