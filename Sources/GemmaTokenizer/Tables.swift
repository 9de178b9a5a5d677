import Foundation

/// Token text → id over raw UTF-8 bytes: open addressing, keys packed in one arena. Lets the hot paths
/// look up byte spans (and concatenations of two spans) without building Strings.
struct TokenTextTable: Sendable {
    private var arena: [UInt8] = []
    private var starts: [Int32] = [0]  // key k occupies arena[starts[k]..<starts[k+1]]
    private var ids: [Int32] = []
    private var slots: [Int32]         // index into ids, -1 = empty
    private let mask: Int

    init(capacity: Int) {
        var n = 16
        while n < capacity * 2 { n <<= 1 }
        slots = [Int32](repeating: -1, count: n)
        mask = n - 1
    }

    private static func hash(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> UInt64 {
        // FNV-1a, then a final mix so the low bits used for the slot are well spread.
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for x in a { h = (h ^ UInt64(x)) &* 0x100_0000_01b3 }
        for x in b { h = (h ^ UInt64(x)) &* 0x100_0000_01b3 }
        h ^= h >> 29
        h = h &* 0xbf58_476d_1ce4_e5b9
        return h ^ (h >> 32)
    }

    /// Inserts `text` → `id` unless present (first id wins, like a vocabulary with duplicates).
    mutating func insert(_ text: String, id: Int32) {
        var t = text
        t.withUTF8 { key in
            let empty = UnsafeBufferPointer<UInt8>(start: nil, count: 0)
            if lookup(key, empty) != nil { return }
            var s = Int(truncatingIfNeeded: Self.hash(key, empty)) & mask
            while slots[s] >= 0 { s = (s + 1) & mask }
            slots[s] = Int32(ids.count)
            ids.append(id)
            arena.append(contentsOf: key)
            starts.append(Int32(arena.count))
        }
    }

    /// Id of the concatenation `a + b` (pass an empty `b` for a single span).
    func lookup(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Int32? {
        let n = a.count + b.count
        var s = Int(truncatingIfNeeded: Self.hash(a, b)) & mask
        return arena.withUnsafeBufferPointer { ar -> Int32? in
            while true {
                let k = Int(slots[s])
                if k < 0 { return nil }
                let lo = Int(starts[k]), hi = Int(starts[k + 1])
                if hi - lo == n,
                   (a.isEmpty || memcmp(ar.baseAddress! + lo, a.baseAddress!, a.count) == 0),
                   (b.isEmpty || memcmp(ar.baseAddress! + lo + a.count, b.baseAddress!, b.count) == 0) {
                    return ids[k]
                }
                s = (s + 1) & mask
            }
        }
    }

    func lookup(_ text: String) -> Int32? {
        var t = text
        return t.withUTF8 { lookup($0, UnsafeBufferPointer(start: nil, count: 0)) }
    }
}

/// (left id, right id) → packed value, open addressing over UInt64 keys. Used for BPE merges
/// (value = rank << 32 | new id), where Dictionary's seeded hashing is the dominant cost. Key and value
/// share a slot so a probe touches one cache line: with half a million merges the table is far larger
/// than the caches and every lookup is a likely miss.
struct PairTable: Sendable {
    private struct Slot { var key: UInt64; var value: UInt64 }
    private var slots: [Slot]
    private let mask: Int
    private static let empty = UInt64.max

    init(capacity: Int) {
        var n = 16
        while n < capacity + capacity / 2 { n <<= 1 }  // load factor ≤ 2/3, usually about 1/2
        slots = [Slot](repeating: Slot(key: Self.empty, value: 0), count: n)
        mask = n - 1
    }

    @inline(__always) static func key(_ a: Int32, _ b: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
    }

    @inline(__always) private func slot(_ key: UInt64) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> 32) & mask
    }

    /// Inserts or overwrites: like HF's merge map built by collecting into a HashMap, the last
    /// listed merge of a duplicated pair wins.
    mutating func set(_ a: Int32, _ b: Int32, value: UInt64) {
        let k = Self.key(a, b)
        var s = slot(k)
        while slots[s].key != Self.empty {
            if slots[s].key == k { slots[s].value = value; return }
            s = (s + 1) & mask
        }
        slots[s] = Slot(key: k, value: value)
    }

    @inline(__always) func get(_ a: Int32, _ b: Int32) -> UInt64? {
        let k = Self.key(a, b)
        return slots.withUnsafeBufferPointer { t in
            var s = slot(k)
            while true {
                let x = t[s]
                if x.key == k { return x.value }
                if x.key == Self.empty { return nil }
                s = (s + 1) & mask
            }
        }
    }
}
