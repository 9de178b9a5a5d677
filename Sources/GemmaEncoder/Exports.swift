// The encoder API hands out the model's and tokenizer's own types (AttentionMode, TokenizedText).
@_exported import GemmaModel
@_exported import GemmaTokenizer
