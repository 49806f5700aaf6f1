import Foundation

/// An export whose `stop()` runs a given action exactly once, however often and from
/// however many threads it is called (abort paths may stop an export twice).
final class StoppableExport: MigrationExport, @unchecked Sendable {
    let host: String
    let port: Int
    let exportName: String
    var log: String { "" }
    private let action: () throws -> Void
    private let stopOnRelease: Bool
    private let lock = NSLock()
    private var stopped = false

    /// - Parameter stopOnRelease: also stop when the last reference goes away, for exports
    ///   that would otherwise keep serving (and holding the image) in this process.
    init(host: String, port: Int, exportName: String, stopOnRelease: Bool = false, stop action: @escaping () throws -> Void) {
        self.host = host
        self.port = port
        self.exportName = exportName
        self.stopOnRelease = stopOnRelease
        self.action = action
    }

    func stop() throws {
        let first = lock.withLock { () -> Bool in
            defer { stopped = true }
            return !stopped
        }
        if first { try action() }
    }

    deinit {
        if stopOnRelease { try? stop() }
    }
}
