/// An asynchronous QMP event such as `BLOCK_JOB_READY` or `MIGRATION`.
public struct QMPEvent: Sendable, Equatable, CustomStringConvertible {
    public var name: String
    /// The event's `data` member; `.object([:])` when QEMU sent none.
    public var data: QMPValue
    /// QEMU's timestamp (seconds since the epoch), when present.
    public var timestamp: Double?

    public init(name: String, data: QMPValue = .object([:]), timestamp: Double? = nil) {
        self.name = name
        self.data = data
        self.timestamp = timestamp
    }

    public var description: String { "\(name) \(data)" }
}
