/// One entry of tokenizer.json's `added_tokens`.
struct AddedToken: Sendable {
    let id: Int32
    let content: String
    let special: Bool
    let normalized: Bool
    let lstrip: Bool
    let rstrip: Bool
    let singleWord: Bool
}

/// A piece of input: either plain text (a byte range) or an added token that matched there.
enum Piece {
    case text(Range<Int>)
    case token(Int32)
}

/// Finds added tokens in text the way HF's `AddedVocabulary` does: leftmost-longest matches (its
/// Aho-Corasick `MatchKind::LeftmostLongest`), then `single_word` / `lstrip` / `rstrip` adjustments.
struct AddedTokenSplitter: Sendable {
    private struct Node {
        var children: [(byte: UInt8, node: Int32)] = []
        var token: Int32 = -1  // index into `tokens` of a token ending here
    }
    private var nodes = [Node()]
    private var tokens: [AddedToken] = []
    /// Bytes that start some token: lets the scan skip everything else with one load.
    private var isFirstByte = [Bool](repeating: false, count: 256)

    var isEmpty: Bool { tokens.isEmpty }

    init(_ list: [AddedToken], content: (AddedToken) -> [UInt8]) {
        for t in list {
            let bytes = content(t)
            guard !bytes.isEmpty else { continue }
            var n = 0
            for b in bytes {
                if let c = nodes[n].children.first(where: { $0.byte == b }) {
                    n = Int(c.node)
                } else {
                    nodes.append(Node())
                    nodes[n].children.append((b, Int32(nodes.count - 1)))
                    n = nodes.count - 1
                }
            }
            if nodes[n].token < 0 {
                nodes[n].token = Int32(tokens.count)
                tokens.append(t)
            }
            isFirstByte[Int(bytes[0])] = true
        }
    }

    /// Longest token starting at `i`: (token index, end).
    private func longestMatch(_ s: UnsafeBufferPointer<UInt8>, at i: Int, end: Int) -> (Int, Int)? {
        var n = 0
        var best: (Int, Int)?
        var j = i
        while j < end {
            let b = s[j]
            guard let c = nodes[n].children.first(where: { $0.byte == b }) else { break }
            n = Int(c.node)
            j += 1
            if nodes[n].token >= 0 { best = (Int(nodes[n].token), j) }
        }
        return best
    }

    /// Splits `s[range]` into text pieces and added tokens, appending to `out`.
    func split(_ s: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, into out: inout [Piece]) {
        var textStart = range.lowerBound
        var i = range.lowerBound
        let end = range.upperBound
        while i < end {
            guard isFirstByte[Int(s[i])], let (k, matchEnd) = longestMatch(s, at: i, end: end) else {
                i += 1
                continue
            }
            let t = tokens[k]
            if t.singleWord, (i > range.lowerBound && isWordChar(before: i, in: s, from: range.lowerBound))
                || (matchEnd < end && isWordChar(at: matchEnd, in: s)) {
                i += 1
                continue
            }
            var start = i, stop = matchEnd
            if t.lstrip {
                while start > textStart, let w = whitespaceBefore(start, in: s, from: textStart) { start = w }
            }
            if t.rstrip {
                while stop < end, let w = whitespaceAfter(stop, in: s, end: end) { stop = w }
            }
            if start > textStart { out.append(.text(textStart..<start)) }
            out.append(.token(t.id))
            textStart = stop
            i = stop
        }
        if textStart < end { out.append(.text(textStart..<end)) }
    }

    // MARK: Character classes for lstrip / rstrip / single_word (Rust's char::is_whitespace / is_alphanumeric)

    private func scalarBefore(_ i: Int, in s: UnsafeBufferPointer<UInt8>, from lo: Int) -> (Unicode.Scalar, Int)? {
        var j = i - 1
        while j > lo, s[j] & 0xC0 == 0x80 { j -= 1 }
        guard j >= lo else { return nil }
        let (v, _) = decodeScalar(s, at: j)
        return Unicode.Scalar(v).map { ($0, j) }
    }

    private func whitespaceBefore(_ i: Int, in s: UnsafeBufferPointer<UInt8>, from lo: Int) -> Int? {
        guard let (c, j) = scalarBefore(i, in: s, from: lo), c.properties.isWhitespace else { return nil }
        return j
    }

    private func whitespaceAfter(_ i: Int, in s: UnsafeBufferPointer<UInt8>, end: Int) -> Int? {
        let (v, len) = decodeScalar(s, at: i)
        guard let c = Unicode.Scalar(v), c.properties.isWhitespace, i + len <= end else { return nil }
        return i + len
    }

    private func isWord(_ c: Unicode.Scalar) -> Bool {
        c == "_" || c.properties.isAlphabetic || c.properties.numericType != nil
    }

    private func isWordChar(before i: Int, in s: UnsafeBufferPointer<UInt8>, from lo: Int) -> Bool {
        guard let (c, _) = scalarBefore(i, in: s, from: lo) else { return false }
        return isWord(c)
    }

    private func isWordChar(at i: Int, in s: UnsafeBufferPointer<UInt8>) -> Bool {
        let (v, _) = decodeScalar(s, at: i)
        return Unicode.Scalar(v).map(isWord) ?? false
    }
}
