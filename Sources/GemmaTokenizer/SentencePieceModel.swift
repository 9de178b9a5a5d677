/// llama.cpp's SentencePiece tokenizer (`tokenizer.ggml.model = "llama"`, `llm_tokenizer_spm_session`):
/// start from UTF-8 characters, repeatedly merge the adjacent pair whose concatenation is the
/// highest-scoring vocabulary entry (ties: leftmost), then emit each symbol as its token, or as `<0xXX>`
/// byte tokens when the symbol is not in the vocabulary.
struct SentencePieceModel: TokenModel {
    let pieces: TokenTextTable
    let scores: [Float]
    /// Byte → id of `<0xXX>`, or -1.
    let byteIds: [Int32]
    let unkId: Int32?

    private struct Bigram {
        var score: Float
        var left: Int32
        var size: Int32

        /// llama.cpp's priority: higher score first, then the smaller left index.
        func before(_ o: Bigram) -> Bool { score > o.score || (score == o.score && left < o.left) }
    }

    func tokenize(_ word: UnsafeBufferPointer<UInt8>, into out: inout [Int32]) {
        if word.isEmpty { return }
        // Symbols: byte start/length plus linked-list neighbours.
        var start: [Int32] = [], len: [Int32] = [], prev: [Int32] = [], next: [Int32] = []
        var i = 0
        while i < word.count {
            let l = min(utf8Length(word[i]), word.count - i)
            prev.append(Int32(start.count - 1))
            start.append(Int32(i))
            len.append(Int32(l))
            i += l
            next.append(i == word.count ? -1 : Int32(start.count))
        }
        var heap: [Bigram] = []
        func tryAdd(_ left: Int32, _ right: Int32) {
            guard left >= 0, right >= 0 else { return }
            let a = UnsafeBufferPointer(rebasing: word[Int(start[Int(left)])..<Int(start[Int(left)] + len[Int(left)])])
            let b = UnsafeBufferPointer(rebasing: word[Int(start[Int(right)])..<Int(start[Int(right)] + len[Int(right)])])
            guard let id = pieces.lookup(a, b) else { return }
            push(&heap, Bigram(score: scores[Int(id)], left: left, size: Int32(a.count + b.count)))
        }
        for k in 1..<max(1, start.count) { tryAdd(Int32(k - 1), Int32(k)) }
        while let top = pop(&heap) {
            let l = Int(top.left)
            let r = Int(next[l])
            // Stale when either side was merged since (sizes only grow, so the size check is exact).
            guard r >= 0, len[l] > 0, len[r] > 0, len[l] + len[r] == top.size else { continue }
            len[l] += len[r]
            len[r] = 0
            next[l] = next[r]
            if next[r] >= 0 { prev[Int(next[r])] = Int32(l) }
            tryAdd(prev[l], Int32(l))
            tryAdd(Int32(l), next[l])
        }
        var s: Int32 = 0
        while s >= 0 {
            let k = Int(s)
            let piece = UnsafeBufferPointer(rebasing: word[Int(start[k])..<Int(start[k] + len[k])])
            if let id = pieces.lookup(piece, UnsafeBufferPointer(start: nil, count: 0)) {
                out.append(id)
            } else {
                for b in piece {
                    let id = byteIds[Int(b)]
                    if id >= 0 { out.append(id) } else if let unkId { out.append(unkId) }
                }
            }
            s = next[k]
        }
    }

    private func utf8Length(_ lead: UInt8) -> Int {
        // llama.cpp's unicode_len_utf8: continuation bytes count as 1.
        switch lead >> 4 {
        case 0xC, 0xD: 2
        case 0xE: 3
        case 0xF: 4
        default: 1
        }
    }

    private func push(_ h: inout [Bigram], _ x: Bigram) {
        h.append(x)
        var i = h.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            guard x.before(h[p]) else { break }
            h[i] = h[p]
            i = p
        }
        h[i] = x
    }

    private func pop(_ h: inout [Bigram]) -> Bigram? {
        guard let last = h.popLast() else { return nil }
        if h.isEmpty { return last }
        let top = h[0]
        var i = 0
        while true {
            var c = 2 * i + 1
            if c >= h.count { break }
            if c + 1 < h.count, h[c + 1].before(h[c]) { c += 1 }
            guard h[c].before(last) else { break }
            h[i] = h[c]
            i = c
        }
        h[i] = last
        return top
    }
}
