/// A fixed-capacity least-recently-used map with O(1) lookup, insertion and eviction.
///
/// The recency index of `SliceCache`: whatever it maps, inserting into a full map always
/// succeeds by evicting the least recently used entry.
///
/// Not thread-safe: its owner guards it with its own lock.
struct LRUCache<Key: Hashable, Value> {
    /// Nodes live in parallel arrays, linked by index; `nil` marks the ends of the list.
    private struct Node {
        var key: Key
        var value: Value
        var newer: Int?
        var older: Int?
    }

    let capacity: Int
    private var nodes: [Node] = []
    private var index: [Key: Int] = [:]
    private var freeSlots: [Int] = []
    private var newest: Int?
    private var oldest: Int?
    private(set) var hits: UInt64 = 0
    private(set) var misses: UInt64 = 0
    private(set) var evictions: UInt64 = 0

    /// - Parameter capacity: entries kept at most (at least 1).
    init(capacity: Int) {
        self.capacity = max(1, capacity)
        index.reserveCapacity(min(self.capacity, 1 << 16))
    }

    var count: Int { index.count }

    /// The value for `key`, made the most recently used.
    mutating func value(for key: Key) -> Value? {
        guard let slot = index[key] else {
            misses &+= 1
            return nil
        }
        hits &+= 1
        moveToFront(slot)
        return nodes[slot].value
    }

    /// Whether `key` is cached, without changing its recency or the counters.
    func contains(_ key: Key) -> Bool { index[key] != nil }

    /// The value for `key` without changing its recency or the counters.
    func peek(_ key: Key) -> Value? { index[key].map { nodes[$0].value } }

    /// Changes a cached value in place (no effect when `key` is not cached). Returns whether it was.
    @discardableResult
    mutating func update(_ key: Key, _ change: (inout Value) -> Void) -> Bool {
        guard let slot = index[key] else { return false }
        change(&nodes[slot].value)
        return true
    }

    /// Inserts or replaces `key`, evicting the least recently used entry when full. Returns
    /// the evicted entry (so an owner can reuse what it held).
    @discardableResult
    mutating func insert(_ key: Key, _ value: Value) -> (key: Key, value: Value)? {
        if let slot = index[key] {
            nodes[slot].value = value
            moveToFront(slot)
            return nil
        }
        var evicted: (key: Key, value: Value)?
        if index.count >= capacity, let victim = oldest {
            unlink(victim)
            index[nodes[victim].key] = nil
            freeSlots.append(victim)
            evictions &+= 1
            evicted = (nodes[victim].key, nodes[victim].value)
        }
        let node = Node(key: key, value: value, newer: nil, older: nil)
        let slot: Int
        if let reused = freeSlots.popLast() {
            nodes[reused] = node
            slot = reused
        } else {
            nodes.append(node)
            slot = nodes.count - 1
        }
        index[key] = slot
        linkAtFront(slot)
        return evicted
    }

    /// Whether the next `insert` of a new key will evict an entry.
    var isFull: Bool { index.count >= capacity }

    /// Drops `key` if cached; returns its value.
    @discardableResult
    mutating func remove(_ key: Key) -> Value? {
        guard let slot = index.removeValue(forKey: key) else { return nil }
        unlink(slot)
        freeSlots.append(slot)
        return nodes[slot].value
    }

    private mutating func moveToFront(_ slot: Int) {
        guard newest != slot else { return }
        unlink(slot)
        linkAtFront(slot)
    }

    private mutating func linkAtFront(_ slot: Int) {
        nodes[slot].older = newest
        nodes[slot].newer = nil
        if let head = newest { nodes[head].newer = slot }
        newest = slot
        if oldest == nil { oldest = slot }
    }

    private mutating func unlink(_ slot: Int) {
        let newer = nodes[slot].newer, older = nodes[slot].older
        if let newer { nodes[newer].older = older } else { newest = older }
        if let older { nodes[older].newer = newer } else { oldest = newer }
        nodes[slot].newer = nil
        nodes[slot].older = nil
    }
}
