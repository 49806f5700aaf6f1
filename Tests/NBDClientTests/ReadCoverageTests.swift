import Testing
@testable import NBDClient

@Suite("READ coverage tracking")
struct ReadCoverageTests {
    /// Inserts and reports whether the range was accepted.
    static func add(_ c: inout ReadCoverage, _ r: Range<UInt64>) -> Bool { c.insert(r) }

    @Test("disjoint ranges in any order add up and touching ones merge")
    func disjoint() {
        var c = ReadCoverage()
        var accepted: [Bool] = []
        for r in [100..<200, 0..<100, 300..<400, 200..<300] as [Range<UInt64>] { accepted.append(Self.add(&c, r)) }
        #expect(accepted == [true, true, true, true])
        #expect(c.covered == 400)
        #expect(c.ranges == [0..<400])
    }

    @Test("overlapping ranges are refused and change nothing", arguments: [
        50..<150, 0..<1, 199..<201, 0..<1000, 120..<130,
    ] as [Range<UInt64>])
    func overlaps(range: Range<UInt64>) {
        var c = ReadCoverage()
        let first = Self.add(&c, 0..<100), second = Self.add(&c, 120..<200)
        #expect(first && second)
        let overlapping = Self.add(&c, range)
        #expect(!overlapping)
        #expect(c.covered == 180)
    }

    @Test("an empty range is refused")
    func empty() {
        var c = ReadCoverage()
        let accepted = Self.add(&c, 5..<5)
        #expect(!accepted)
    }
}
