import Foundation
import GemmaEncoder

extension BenchCommand {
    /// `bench --tokenizer-only`: load time, throughput (one thread, one text at a time, best of three) and the
    /// time of one 200,000-character word. A word without spaces is BPE's worst case: every merge happens
    /// inside it, so a quadratic merge loop would show here first (the figure is a benchmark's, not a unit
    /// test's: a wall-clock bound in a test fails on a busy machine, not on a slow tokenizer).
    func benchTokenizer(_ texts: [String], _ add: (String, String) -> Void) throws {
        var tokenizer: GemmaTokenizer!
        let load = try seconds { tokenizer = try model.source().loadTokenizer() }
        add("tokenizer_load_s", String(format: "%.3f", load))
        var best = Double.infinity, tokens = 0
        for _ in 0..<3 {
            var n = 0
            best = min(best, seconds { for t in texts { n += tokenizer.encode(t).count } })
            tokens = n
        }
        add("tokens", "\(tokens)")
        add("tokenizer_tokens_per_s", String(format: "%.0f", Double(tokens) / best))
        add("tokenizer_texts_per_s", String(format: "%.0f", Double(texts.count) / best))

        let word = String(repeating: "ab", count: 50_000) + String(repeating: "日本", count: 50_000)
        var wordBest = Double.infinity, wordTokens = 0
        for _ in 0..<3 {
            wordBest = min(wordBest, seconds { wordTokens = tokenizer.encode(word).count })
        }
        add("tokenizer_long_word_chars", "\(word.count)")
        add("tokenizer_long_word_tokens", "\(wordTokens)")
        add("tokenizer_long_word_s", String(format: "%.3f", wordBest))
    }
}
