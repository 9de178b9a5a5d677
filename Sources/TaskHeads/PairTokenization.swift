import GemmaEncoder
import GemmaTokenizer

extension TextEncoder {
    /// A pair tokenized for the cross-encoder. When it exceeds `maxLength` tokens the document is cut first
    /// (at a token boundary of the document alone, then re-tokenized in place); only a query that does not fit
    /// by itself loses its end as well.
    public func tokenizePair(query: String, document: String, template: PairTemplate, maxLength: Int) -> EncoderInput {
        Self.tokenizePair(query: query, document: document, template: template, maxLength: maxLength, with: tokenizer)
    }

    /// `tokenizePair` with any tokenizer (fine-tuning a GGUF source trains with the tokenizer it exports).
    public static func tokenizePair(query: String, document: String, template: PairTemplate, maxLength: Int,
                                    with tokenizer: GemmaTokenizer) -> EncoderInput {
        let full = tokenizer.encode(template.render(query: query, document: document))
        guard full.count > maxLength else { return EncoderInput(ids: full) }
        let withoutDocument = tokenizer.encode(template.render(query: query, document: "")).count
        var budget = maxLength > withoutDocument ? maxLength - withoutDocument : 0   // no overflow near Int.min
        let documentIds = tokenizer.encode(document, addSpecialTokens: false)
        // Tokens can merge across the cut: re-tokenize, and shrink the budget by any overshoot.
        for _ in 0..<4 where budget > 0 {
            let cut = tokenizer.decode(Array(documentIds.prefix(budget)))
            let ids = tokenizer.encode(template.render(query: query, document: cut))
            if ids.count <= maxLength { return EncoderInput(ids: ids, truncated: true) }
            budget -= ids.count - maxLength
        }
        let cut = tokenizer.encode(template.render(query: query, document: ""), maxLength: maxLength)
        return EncoderInput(ids: cut.ids, truncated: true)
    }
}
