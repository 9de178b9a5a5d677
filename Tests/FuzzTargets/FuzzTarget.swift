import Foundation

/// Every parser of outside input the project has, as a libFuzzer target (issue 22). Each target takes one
/// input's bytes through the path a user's file or request takes — the loader, then the use that follows
/// (a forward pass, a prediction, a search) — and only a crash, a trap, a leak, a hang or an answer that is
/// not the loader's own typed error counts as a finding. Errors thrown for bad input are the expected result.
///
/// The targets live in a library so `swift test` replays every minimized crash input (`FuzzRegressionTests`)
/// with the same code the fuzzer ran; the libFuzzer entry points are in `Tests/Fuzz`, built only by
/// `scripts/fuzz`.
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// A `.safetensors` file: header length, JSON header, tensor table, every tensor read as floats.
    case safetensors
    /// A `.gguf` file: header, metadata, tensor infos and quantized block sizes, then the tokenizer and the
    /// model built from it and one forward pass.
    case gguf
    /// `tokenizer.json`, then encoding and decoding a few texts.
    case tokenizer
    /// A model's `config.json` beside the tiny checkpoint, loaded and run.
    case config
    /// The sentence-transformers files (`modules.json`, pooling and Dense configs and weights,
    /// `config_sentence_transformers.json`, `sentence_bert_config.json`): the first byte picks the file.
    case stConfig = "st-config"
    /// JSON Lines rows through each reader of them: the first byte picks the reader.
    case jsonl
    /// An HTTP request body: the first byte picks the route, the rest is the body; a 5xx answer is a finding.
    case http
    /// An index directory's `manifest.json`, then opening the index and searching it.
    case manifest
    /// A head directory: the first byte picks the head (classifier or reranker) and the file (`head.json` or
    /// `head.safetensors`), then loading it on its encoder and predicting.
    case head
}

/// A finding that is not a crash: an answer the service must never give for bad input.
public struct FuzzFinding: Error, CustomStringConvertible {
    public let description: String
}
