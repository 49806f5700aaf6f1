#if canImport(Glibc)
import Glibc
#endif
import BlockDevices
import NBDClient

/// Copies one device to another with a pool of worker threads, each with one reusable buffer.
///
/// The planner maps the source in large windows (one BLOCK_STATUS or SEEK_DATA round per
/// window) and hands out work: zero runs (skipped when the destination already reads as zero,
/// otherwise WRITE_ZEROES/punch-hole) and data pieces of at most `requestSize` bytes. A data
/// piece that turns out to be all zeroes is treated as a zero run. The first error of any
/// request stops the copy and is reported; nothing is ever silently dropped (CVE-2022-0485).
final class BlockCopier: @unchecked Sendable {
    let source: any BlockDevice
    let destination: any BlockDevice
    let destinationIsZero: Bool
    let size: UInt64
    let requestSize: Int
    let workers: Int
    let sparse: Bool
    let progress: CopyProgress
    let statistics: CopyStatistics
    /// Set for local file destinations (see `PageCacheDropper`).
    var pageCache: PageCacheDropper?

    private let lock = ConditionLock()
    private let planner: CopyPlanner
    private var firstError: Error?
    private var running = 0

    init(source: any BlockDevice, destination: any BlockDevice, destinationIsZero: Bool, size: UInt64,
         requestSize: Int, workers: Int, sparse: Bool, progress: CopyProgress,
         statistics: CopyStatistics = CopyStatistics(), extentMap: CopyExtentMap? = nil) {
        self.source = source
        self.destination = destination
        self.destinationIsZero = destinationIsZero
        self.size = size
        self.requestSize = requestSize
        self.workers = max(1, workers)
        self.sparse = sparse
        self.progress = progress
        self.statistics = statistics
        planner = CopyPlanner(source: source, size: size, requestSize: requestSize, sparse: sparse, extentMap: extentMap) {
            statistics.addSkipped($0)
            progress.add($0)
        }
    }

    func run() throws {
        lock.withLock { running = workers }
        for _ in 0..<workers {
            try spawnThread { [self] in
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: requestSize, alignment: 4096)
                defer { buffer.deallocate() }
                work(buffer)
                lock.withLock {
                    running -= 1
                    lock.broadcast()
                }
            }
        }
        try lock.withLock {
            while running > 0 { lock.wait() }
            if let firstError { throw firstError }
        }
    }

    private func work(_ buffer: UnsafeMutableRawBufferPointer) {
        var previous: (offset: UInt64, length: UInt64)?
        while true {
            let item: CopyPlanner.Work?
            do { item = try next() } catch {
                fail(error)
                return
            }
            guard let item else { return }
            do {
                switch item {
                case .zero(let offset, let length):
                    try zero(offset: offset, length: length)
                    progress.add(length)
                case .data(let offset, let length):
                    let piece = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<length])
                    try source.read(into: piece, at: offset)
                    statistics.addRead(UInt64(length))
                    if sparse && Self.isAllZero(UnsafeRawBufferPointer(piece)) {
                        try zero(offset: offset, length: UInt64(length))
                    } else {
                        try destination.write(UnsafeRawBufferPointer(piece), at: offset, fua: false)
                        statistics.addWritten(UInt64(length))
                        if let pageCache {
                            pageCache.written((offset, UInt64(length)), previous: previous)
                            previous = (offset, UInt64(length))
                        }
                    }
                    progress.add(UInt64(length))
                }
            } catch {
                fail(error)
                return
            }
        }
    }

    private func zero(offset: UInt64, length: UInt64) throws {
        statistics.addZeroed(length)
        if destinationIsZero { return }
        try destination.writeZeroes(offset: offset, length: length, mayTrim: true, fastOnly: false, fua: false)
    }

    private func fail(_ error: Error) {
        lock.withLock { if firstError == nil { firstError = error } }
    }

    private func next() throws -> CopyPlanner.Work? {
        if lock.withLock({ firstError != nil }) { return nil }
        return try planner.next()
    }

    static func isAllZero(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let base = bytes.baseAddress else { return true }
        let words = bytes.count / 8
        let p = base.assumingMemoryBound(to: UInt64.self)
        var i = 0
        while i < words {
            if p[i] != 0 { return false }
            i += 1
        }
        for j in (words * 8)..<bytes.count where bytes[j] != 0 { return false }
        return true
    }
}

/// Compares two devices range by range with the same worker pool shape (`--verify`).
final class CopyVerifier: @unchecked Sendable {
    private let lock = ConditionLock()
    private var cursor: UInt64 = 0
    private var mismatch: Error?
    private var running = 0

    static func verify(_ a: any BlockDevice, _ b: any BlockDevice, size: UInt64, requestSize: Int, workers: Int) throws {
        try CopyVerifier().run(a, b, size: size, requestSize: requestSize, workers: max(1, workers))
    }

    private func run(_ a: any BlockDevice, _ b: any BlockDevice, size: UInt64, requestSize: Int, workers: Int) throws {
        running = workers
        for _ in 0..<workers {
            try spawnThread { [self] in
                let left = UnsafeMutableRawBufferPointer.allocate(byteCount: requestSize, alignment: 4096)
                let right = UnsafeMutableRawBufferPointer.allocate(byteCount: requestSize, alignment: 4096)
                defer { left.deallocate(); right.deallocate() }
                while let (offset, length) = next(size: size, requestSize: requestSize) {
                    do {
                        let l = UnsafeMutableRawBufferPointer(rebasing: left[0..<length])
                        let r = UnsafeMutableRawBufferPointer(rebasing: right[0..<length])
                        try a.read(into: l, at: offset)
                        try b.read(into: r, at: offset)
                        if memcmp(l.baseAddress!, r.baseAddress!, length) != 0 {
                            throw CopyFailure("verification failed: contents differ in \(offset)..<\(offset + UInt64(length))")
                        }
                    } catch {
                        lock.withLock { if mismatch == nil { mismatch = error } }
                        break
                    }
                }
                lock.withLock { running -= 1; lock.broadcast() }
            }
        }
        try lock.withLock {
            while running > 0 { lock.wait() }
            if let mismatch { throw mismatch }
        }
    }

    private func next(size: UInt64, requestSize: Int) -> (UInt64, Int)? {
        lock.withLock {
            guard mismatch == nil, cursor < size else { return nil }
            let n = Int(min(UInt64(requestSize), size - cursor))
            defer { cursor += UInt64(n) }
            return (cursor, n)
        }
    }
}
