/// The tokenization model: turns one pre-tokenized word (UTF-8 bytes) into ids.
protocol TokenModel: Sendable {
    func tokenize(_ word: UnsafeBufferPointer<UInt8>, into out: inout [Int32])
}

/// HF `tokenizers`' BPE model (`"type": "BPE"`): split into characters (with byte fallback / unk), then
/// repeatedly apply the lowest-ranked merge, leftmost first, exactly as `Word::merge_all` does — with a
/// heap over a linked list of symbols, so a long word costs O(n log n).
struct BPEModel: TokenModel {
    /// Unicode scalar → id of the single-character token, -1 if none (flat table: one load per char).
    let charIds: [Int32]
    /// Byte → id of `<0xXX>`, or -1; only consulted when `byteFallback`.
    let byteIds: [Int32]
    let byteFallback: Bool
    let unkId: Int32?
    let fuseUnk: Bool
    /// (left, right) → rank << 32 | merged id.
    let merges: PairTable
    /// Whole-word lookup for `ignore_merges` (nil when merges are never skipped).
    let wholeWords: TokenTextTable?

    func tokenize(_ word: UnsafeBufferPointer<UInt8>, into out: inout [Int32]) {
        if word.isEmpty { return }
        if let wholeWords, let id = wholeWords.lookup(word, UnsafeBufferPointer(start: nil, count: 0)) {
            out.append(id)
            return
        }
        // At most one symbol per byte.
        withUnsafeTemporaryAllocation(of: Int32.self, capacity: word.count * 3) { buf in
            let ids = buf.baseAddress!
            let prev = ids + word.count
            let next = prev + word.count
            let n = initialSymbols(word, ids)
            // A word of characters the vocabulary lacks, with neither an unknown token nor byte fallback,
            // yields no symbol (as in `tokenizers`); the walk below would start at an unset link.
            guard n > 0 else { return }
            for i in 0..<n {
                prev[i] = Int32(i - 1)
                next[i] = i + 1 < n ? Int32(i + 1) : -1
            }
            if n > 1 { mergeAll(ids, prev, next, n) }
            var i: Int32 = 0
            while i >= 0 {
                out.append(ids[Int(i)])
                i = next[Int(i)]
            }
        }
    }

    /// Characters → ids, mirroring `BPE::merge_word` (including where pending unks are flushed).
    private func initialSymbols(_ word: UnsafeBufferPointer<UInt8>, _ ids: UnsafeMutablePointer<Int32>) -> Int {
        var n = 0
        var pendingUnk = false
        var i = 0
        let count = word.count
        while i < count {
            let (scalar, len) = decodeScalar(word, at: i)
            let id = scalar < charIds.count ? charIds[Int(scalar)] : -1
            if id >= 0 {
                if pendingUnk { ids[n] = unkId!; n += 1; pendingUnk = false }
                ids[n] = id; n += 1
            } else {
                if byteFallback, (i..<(i + len)).allSatisfy({ byteIds[Int(word[$0])] >= 0 }) {
                    // HF adds the byte tokens without flushing a pending unk first.
                    for k in i..<(i + len) { ids[n] = byteIds[Int(word[k])]; n += 1 }
                } else if let unkId {
                    if pendingUnk, !fuseUnk { ids[n] = unkId; n += 1 }
                    pendingUnk = true
                }
            }
            i += len
        }
        if pendingUnk { ids[n] = unkId!; n += 1 }
        return n
    }

    private func mergeAll(_ ids: UnsafeMutablePointer<Int32>, _ prev: UnsafeMutablePointer<Int32>,
                          _ next: UnsafeMutablePointer<Int32>, _ n: Int) {
        // Heap entries: rank << 32 | position; the min is the lowest rank, then the leftmost position.
        var heap = MinHeap(capacity: n)
        for i in 0..<(n - 1) {
            if let v = merges.get(ids[i], ids[i + 1]) { heap.append(v & ~0xFFFF_FFFF | UInt64(i)) }
        }
        heap.heapify()
        while let top = heap.pop() {
            let pos = Int(top & 0xFFFF_FFFF)
            let rank = top >> 32
            let nx = Int(next[pos])
            // Stale entries: the left symbol was absorbed, has no right neighbour any more, or the pair
            // at this position changed (a different pair never has the same rank).
            guard ids[pos] >= 0, nx >= 0, let v = merges.get(ids[pos], ids[nx]), v >> 32 == rank else { continue }
            ids[pos] = Int32(truncatingIfNeeded: v)
            ids[nx] = -1
            let after = next[nx]
            next[pos] = after
            if after >= 0 { prev[Int(after)] = Int32(pos) }
            let before = prev[pos]
            if before >= 0, let p = merges.get(ids[Int(before)], ids[pos]) {
                heap.push(p & ~0xFFFF_FFFF | UInt64(before))
            }
            if after >= 0, let p = merges.get(ids[pos], ids[Int(after)]) {
                heap.push(p & ~0xFFFF_FFFF | UInt64(pos))
            }
        }
    }
}

/// Decodes the scalar starting at `i` (input is valid UTF-8: it comes from a Swift String).
@inline(__always)
func decodeScalar(_ s: UnsafeBufferPointer<UInt8>, at i: Int) -> (UInt32, Int) {
    let b0 = UInt32(s[i])
    if b0 < 0x80 { return (b0, 1) }
    if b0 < 0xE0 { return ((b0 & 0x1F) << 6 | UInt32(s[i + 1] & 0x3F), 2) }
    if b0 < 0xF0 {
        return ((b0 & 0x0F) << 12 | UInt32(s[i + 1] & 0x3F) << 6 | UInt32(s[i + 2] & 0x3F), 3)
    }
    return ((b0 & 0x07) << 18 | UInt32(s[i + 1] & 0x3F) << 12 | UInt32(s[i + 2] & 0x3F) << 6
            | UInt32(s[i + 3] & 0x3F), 4)
}

/// Binary min-heap of UInt64 keys.
struct MinHeap {
    private var a: [UInt64]

    init(capacity: Int) {
        a = []
        a.reserveCapacity(capacity)
    }

    /// Appends without restoring the heap property; call `heapify()` before popping.
    mutating func append(_ x: UInt64) { a.append(x) }

    mutating func heapify() {
        var i = a.count / 2 - 1
        while i >= 0 { siftDown(i); i -= 1 }
    }

    mutating func push(_ x: UInt64) {
        a.append(x)
        var i = a.count - 1
        a.withUnsafeMutableBufferPointer { h in
            while i > 0 {
                let p = (i - 1) >> 1
                if h[p] <= x { break }
                h[i] = h[p]
                i = p
            }
            h[i] = x
        }
    }

    mutating func pop() -> UInt64? {
        guard let last = a.popLast() else { return nil }
        if a.isEmpty { return last }
        let top = a[0]
        a[0] = last
        siftDown(0)
        return top
    }

    private mutating func siftDown(_ start: Int) {
        a.withUnsafeMutableBufferPointer { h in
            let n = h.count
            var i = start
            let x = h[i]
            while true {
                var c = 2 * i + 1
                if c >= n { break }
                if c + 1 < n, h[c + 1] < h[c] { c += 1 }
                if x <= h[c] { break }
                h[i] = h[c]
                i = c
            }
            h[i] = x
        }
    }
}
