import Foundation

/// A `pre_tokenizer` stage: cuts a normalized segment into words, each tokenized by the model on its own.
protocol PreTokenizer: Sendable {
    /// Appends the word ranges of `text[range]` to `words`, in order, without empty ranges.
    func split(_ text: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, into words: inout [Range<Int>])
}

/// `{"type": "Split", "pattern": {"String": p}, "behavior": ...}` with HF's `SplitDelimiterBehavior`.
struct SplitPreTokenizer: PreTokenizer {
    enum Behavior: String { case removed = "Removed", isolated = "Isolated", mergedWithPrevious = "MergedWithPrevious",
                            mergedWithNext = "MergedWithNext", contiguous = "Contiguous" }
    let pattern: [UInt8]
    let behavior: Behavior

    func split(_ text: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, into words: inout [Range<Int>]) {
        // Matches of the pattern, left to right, non-overlapping.
        var matches: [Range<Int>] = []
        let m = pattern.count
        var i = range.lowerBound
        while i + m <= range.upperBound {
            if text[i] == pattern[0], memcmp(text.baseAddress! + i, pattern, m) == 0 {
                matches.append(i..<(i + m))
                i += m
            } else {
                i += 1
            }
        }
        if matches.isEmpty {
            if !range.isEmpty { words.append(range) }
            return
        }
        if behavior == .contiguous {
            // Adjacent matches form one delimiter piece; afterwards this behaves like `isolated`.
            var merged: [Range<Int>] = []
            for r in matches {
                if let last = merged.last, last.upperBound == r.lowerBound {
                    merged[merged.count - 1] = last.lowerBound..<r.upperBound
                } else {
                    merged.append(r)
                }
            }
            matches = merged
        }
        var pieces: [Range<Int>] = []
        var pending = range.lowerBound  // start of the not-yet-emitted text
        func emit(_ r: Range<Int>) { if !r.isEmpty { pieces.append(r) } }
        for match in matches {
            switch behavior {
            case .removed:
                emit(pending..<match.lowerBound)
                pending = match.upperBound
            case .isolated:
                emit(pending..<match.lowerBound)
                emit(match)
                pending = match.upperBound
            case .mergedWithPrevious:
                emit(pending..<match.upperBound)
                pending = match.upperBound
            case .mergedWithNext:
                emit(pending..<match.lowerBound)
                pending = match.lowerBound
            case .contiguous:
                emit(pending..<match.lowerBound)
                pending = match.upperBound
                emit(match)
            }
        }
        emit(pending..<range.upperBound)
        words.append(contentsOf: pieces)
    }
}

/// `{"type": "Sequence", "pretokenizers": [...]}`: each stage splits the words of the previous one.
struct SequencePreTokenizer: PreTokenizer {
    let stages: [any PreTokenizer]

    func split(_ text: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, into words: inout [Range<Int>]) {
        var current = [range]
        for stage in stages {
            var next: [Range<Int>] = []
            for r in current { stage.split(text, r, into: &next) }
            current = next
        }
        words.append(contentsOf: current)
    }
}

enum PreTokenizerFactory {
    static func make(_ json: JSON?, path: String, fields: JSONFields) throws(TokenizerError) -> (any PreTokenizer)? {
        guard let json, !json.isNull else { return nil }
        let type = try fields.string(json["type"], path + ".type")
        switch type {
        case "Split":
            let pattern = try fields.stringPattern(json["pattern"], path + ".pattern")
            let behaviorName = try fields.string(json["behavior"], path + ".behavior")
            guard let behavior = SplitPreTokenizer.Behavior(rawValue: behaviorName) else {
                throw .unsupportedType(file: fields.file, field: path + ".behavior", type: behaviorName)
            }
            guard try !fields.bool(json["invert"], path + ".invert", default: false) else {
                throw .unsupportedType(file: fields.file, field: path + ".invert", type: "true")
            }
            guard !pattern.isEmpty else {
                throw .invalidValue(file: fields.file, field: path + ".pattern", message: "empty pattern")
            }
            return SplitPreTokenizer(pattern: Array(pattern.utf8), behavior: behavior)
        case "Sequence":
            return SequencePreTokenizer(stages: try fields.stages(json, "pretokenizers", path) { item, itemPath throws(TokenizerError) in
                try make(item, path: itemPath, fields: fields)
            })
        default:
            throw .unsupportedType(file: fields.file, field: path + ".type", type: type)
        }
    }
}
