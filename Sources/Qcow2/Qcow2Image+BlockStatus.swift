import BlockDevices

extension Qcow2Image {
    /// Most runs examined per call; the caller asks again for the rest.
    static let maxStatusRuns = 1 << 16

    /// `base:allocation` as qemu-nbd 7.2 reports it (docs/qcow2-driver.md, "Block status"): data or
    /// compressed anywhere in the chain → 0 (data over a hole in the host file → zero); zero
    /// flag/bit, or nothing in any layer → hole|zero.
    public func extents(offset: UInt64, length: UInt64) throws -> [Extent] {
        try checkRange(offset, min(length, size - min(offset, size)))
        return try walkStatus(offset: offset, length: min(length, size - offset)).map {
            Extent(length: $0.length, flags: $0.flags)
        }.mergedExtents()
    }

    /// `qemu:allocation-depth`: 0 unallocated everywhere, 1 this image (zero clusters included), 2…
    public func allocationDepth(offset: UInt64, length: UInt64) throws -> [DepthExtent]? {
        try checkRange(offset, min(length, size - min(offset, size)))
        return try walkStatus(offset: offset, length: min(length, size - offset)).map {
            DepthExtent(length: $0.length, depth: $0.depth)
        }.mergedDepths()
    }

    private func walkStatus(offset: UInt64, length: UInt64) throws -> [ChainStatus] {
        guard length > 0 else { throw BlockDeviceError(.invalidArgument, "qcow2: block status of an empty range") }
        var runs: [ChainStatus] = []
        var cursor = offset
        let end = offset + length
        while cursor < end && runs.count < Self.maxStatusRuns {
            let run = try chainStatus(offset: cursor, length: end - cursor)
            runs.append(run)
            cursor += run.length
        }
        return runs
    }

    /// ChainLayer: status of the run at `offset`, asking the backing chain for unallocated parts.
    func chainStatus(offset: UInt64, length: UInt64) throws -> ChainStatus {
        let run = try lookup(offset)
        let n = min(run.length, length)
        switch run.mapping {
        case .data(let host):
            // Like QEMU, look through to the host file: a hole in it (or a cluster reaching
            // past its end) reads as zeroes, so it is reported as allocated-but-zero.
            let stored = file.storedRun(offset: host, length: n)
            return ChainStatus(length: stored.length, flags: stored.stored ? [] : [.zero], depth: 1)
        case .compressed:
            return ChainStatus(length: n, flags: [], depth: 1)
        case .zero:
            return ChainStatus(length: n, flags: [.hole, .zero], depth: 1)
        case .unallocated:
            guard let backing else { return ChainStatus(length: n, flags: [.hole, .zero], depth: 0) }
            guard offset < backing.size else {
                // qemu-nbd 7.2 attributes the zeroes past a shorter backing file's end to that
                // backing file (allocation depth 2), while base:allocation says hole+zero.
                return ChainStatus(length: n, flags: [.hole, .zero], depth: 2)
            }
            var below = try backing.chainStatus(offset: offset, length: min(n, backing.size - offset))
            below.depth = below.depth == 0 ? 0 : below.depth + 1
            return below
        }
    }
}

extension Array where Element == Extent {
    func mergedExtents() -> [Extent] {
        var out: [Extent] = []
        for e in self {
            if let last = out.last, last.flags == e.flags { out[out.count - 1].length += e.length } else { out.append(e) }
        }
        return out
    }
}

extension Array where Element == DepthExtent {
    func mergedDepths() -> [DepthExtent] {
        var out: [DepthExtent] = []
        for e in self {
            if let last = out.last, last.depth == e.depth { out[out.count - 1].length += e.length } else { out.append(e) }
        }
        return out
    }
}
