import Foundation
import GemmaModel
import GemmaTokenizer
import ModelFormats

/// What opening a source yields: the model, its tokenizer, the embedding pipeline after it, and the
/// sentence-transformers layout when there is one (prompts, max_seq_length).
struct LoadedModel {
    var model: any EncoderModel
    var tokenizer: GemmaTokenizer
    var pipeline: EmbeddingPipeline
    var layout: SentenceTransformersLayout?
}

/// How each kind of source is opened, in one place: a new file format is a case of `ModelSource` and a case here.
extension ModelSource {
    func load(precision: WeightPrecision, registry: ModelRegistry) throws -> LoadedModel {
        switch self {
        case .gguf(let url):
            let gguf = try GGUFFile(url: url)
            let model = try registry.load(gguf: gguf, precision: precision)
            // EmbeddingGemma converted by llama.cpp (`gemma-embedding`) carries its Dense layers.
            let dense = try GGUFDenseLayers.load(gguf, inputDimension: model.hiddenSize)
            return LoadedModel(model: model, tokenizer: try GemmaTokenizer.load(gguf: gguf),
                               pipeline: Self.meanPooling(model, dense: dense), layout: nil)
        case .sentenceTransformers(let directory):
            let layout = try SentenceTransformersLayout.load(directory: directory)
            return LoadedModel(model: try registry.load(directory: layout.transformerDirectory, precision: precision),
                               tokenizer: try GemmaTokenizer.load(directory: layout.transformerDirectory),
                               pipeline: layout.pipeline, layout: layout)
        case .huggingFace(let directory):
            let model = try registry.load(directory: directory, precision: precision)
            return LoadedModel(model: model, tokenizer: try GemmaTokenizer.load(directory: directory),
                               pipeline: Self.meanPooling(model, dense: []), layout: nil)
        }
    }

    /// The tokenizer alone (the `tokenize` command, tokenizer benchmarks): the one the model would load.
    public func loadTokenizer() throws -> GemmaTokenizer {
        switch self {
        case .gguf(let url): return try GemmaTokenizer.load(gguf: try GGUFFile(url: url))
        case .huggingFace(let directory): return try GemmaTokenizer.load(directory: directory)
        case .sentenceTransformers(let directory):
            return try GemmaTokenizer.load(directory: try SentenceTransformersLayout.load(directory: directory).transformerDirectory)
        }
    }

    /// A source without a pipeline of its own: mean pooling and normalization (then any Dense layers it carries).
    private static func meanPooling(_ model: any EncoderModel, dense: [DenseLayer]) -> EmbeddingPipeline {
        EmbeddingPipeline(pooling: PoolingConfig(modes: [.mean], dimension: model.hiddenSize), dense: dense, normalize: true)
    }
}
