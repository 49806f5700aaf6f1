import BlockDevices

/// One image of a backing chain, as the image above it sees it.
protocol ChainLayer: AnyObject, Sendable {
    /// Virtual size; reads beyond it (from an overlay that is larger) return zeroes.
    var size: UInt64 { get }
    /// Reads guest bytes; the caller keeps the range inside `size`.
    func readGuest(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws
    /// Allocation status of the run starting at `offset` (at most `length` bytes, inside `size`),
    /// resolved through this layer and the ones below it.
    func chainStatus(offset: UInt64, length: UInt64) throws -> ChainStatus
    /// Drops this layer's (and lower layers') file locks when the top image closes.
    func releaseLocks()
}

/// Status of a run of guest bytes across a backing chain.
struct ChainStatus: Sendable, Equatable {
    var length: UInt64
    /// NBD `base:allocation` flags as qemu-nbd reports them (hole = not data).
    var flags: ExtentFlags
    /// `qemu:allocation-depth`: 0 nowhere, 1 the layer asked, 2 the one below it, …
    var depth: UInt32
}
