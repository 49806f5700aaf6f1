import Testing
import TestSupport
@testable import Qcow2

/// The metadata caches' LRU map against a plain reference (an array in recency order).
@Suite("LRU cache")
struct LRUCacheTests {
    @Test("random operations agree with a reference model", arguments: [1, 2, 3, 7, 64] as [Int])
    func matchesModel(capacity: Int) {
        var rng = SplitMix64(seed: UInt64(capacity) &* 7919)
        var cache = LRUCache<Int, Int>(capacity: capacity)
        var model: [(key: Int, value: Int)] = []  // most recent last
        for step in 0..<5_000 {
            let key = Int(rng.next() % UInt64(capacity * 3 + 1))
            switch rng.next() % 4 {
            case 0, 1:
                let got = cache.value(for: key)
                if let i = model.firstIndex(where: { $0.key == key }) {
                    #expect(got == model[i].value, "step \(step)")
                    model.append(model.remove(at: i))
                } else {
                    #expect(got == nil, "step \(step)")
                }
            case 2:
                cache.insert(key, step)
                model.removeAll { $0.key == key }
                if model.count >= capacity { model.removeFirst() }
                model.append((key, step))
            default:
                cache.remove(key)
                model.removeAll { $0.key == key }
            }
            #expect(cache.count == model.count)
            #expect(cache.count <= capacity)
        }
        for (key, value) in model { #expect(cache.contains(key) && cache.value(for: key) == value) }
    }

    @Test("a full cache evicts the least recently used entry, not the one just used")
    func evictionOrder() {
        var cache = LRUCache<String, Int>(capacity: 2)
        cache.insert("a", 1)
        cache.insert("b", 2)
        _ = cache.value(for: "a")
        cache.insert("c", 3)
        #expect(cache.contains("a") && cache.contains("c") && !cache.contains("b"))
        #expect(cache.evictions == 1)
    }
}
