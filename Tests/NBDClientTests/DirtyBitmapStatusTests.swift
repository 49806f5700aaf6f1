import NBDProtocol
import Testing
import TestSupport
@testable import NBDClient

/// `DirtyBitmapStatus.combine` against a byte-by-byte model: random extent lists for the two
/// contexts (different lengths, arbitrary flag bits, zero-length extents) are expanded per
/// unit and compared with the expanded result. Seeded, so a failure names its replayable seed.
@Suite("Dirty bitmap and allocation extents combined")
struct DirtyBitmapStatusTests {
    /// Expands extents into per-unit flags (extent lengths are in units).
    static func expand(_ extents: [BlockStatusExtent]) -> [UInt64] {
        extents.flatMap { Array(repeating: $0.flags, count: Int($0.length)) }
    }

    static func randomExtents(_ rng: inout SplitMix64, units: Int) -> [BlockStatusExtent] {
        var result: [BlockStatusExtent] = []
        var left = units
        while left > 0 {
            let length = rng.next() % 5 == 0 ? 0 : Int(rng.next() % UInt64(min(left, 9))) + 1
            result.append(BlockStatusExtent(length: UInt64(length), flags: rng.next() % 8))
            left -= length
        }
        return result
    }

    @Test("matches the per-unit model for 2000 random pairs", arguments: [UInt64(1), 2, 3, 4])
    func model(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        for round in 0..<500 {
            let dirty = Self.randomExtents(&rng, units: Int(rng.next() % 40))
            let allocation = Self.randomExtents(&rng, units: Int(rng.next() % 40))
            let runs = DirtyBitmapStatus.combine(dirty: dirty, allocation: allocation)
            let d = Self.expand(dirty), a = Self.expand(allocation)
            let covered = min(d.count, a.count)
            var got: [(dirty: Bool, zero: Bool)] = []
            for run in runs { got += Array(repeating: (run.dirty, run.zero), count: Int(run.length)) }
            #expect(got.count == covered, "seed \(seed) round \(round): covers \(got.count), expected \(covered)")
            guard got.count == covered else { return }
            for unit in 0..<covered {
                let isDirty = d[unit] & 1 != 0
                let expected = (isDirty, isDirty && a[unit] & 2 != 0)
                #expect(got[unit] == expected, "seed \(seed) round \(round) unit \(unit)")
                if got[unit] != expected { return }
            }
            // Joined: no two neighbours alike, no empty runs.
            for (left, right) in zip(runs, runs.dropFirst()) {
                #expect(left.dirty != right.dirty || left.zero != right.zero, "seed \(seed) round \(round): unjoined runs")
            }
            #expect(!runs.contains { $0.length == 0 }, "seed \(seed) round \(round): empty run")
        }
    }

    @Test("an empty list on either side gives nothing")
    func empty() {
        let some = [BlockStatusExtent(length: 4096, flags: 1)]
        #expect(DirtyBitmapStatus.combine(dirty: [], allocation: some).isEmpty)
        #expect(DirtyBitmapStatus.combine(dirty: some, allocation: []).isEmpty)
    }
}
