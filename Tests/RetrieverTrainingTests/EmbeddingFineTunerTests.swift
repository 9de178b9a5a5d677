import EncoderKernels
import Foundation
import GemmaEncoder
import GemmaModel
import GemmaTraining
import ModelFormats
import RetrieverTraining
import TaskHeads
import TestSupport
import XCTest

/// The bi-encoder loop on the tiny Gemma 3 checkpoint: the gradient cache gives the uncached gradients,
/// batches hold no text twice, training learns a retrieval task, and the sentence-transformers directory it
/// writes loads back (our loader) with the trained embeddings.
final class EmbeddingFineTunerTests: XCTestCase {
    func tinyModel() throws -> TrainableGemma {
        let dir = fixturesDirectory.appendingPathComponent("tiny/gemma3")
        let config = try GemmaConfig.load(dir.appendingPathComponent("config.json"))
        return try TrainableGemma(config: config, weights: try SafetensorsWeights(url: dir.appendingPathComponent("model.safetensors")))
    }

    /// Mean pooling over the 64-wide states, a Dense layer to 32 with a bias, normalization.
    func pipeline() -> TrainablePipeline {
        var g = SeededGenerator(seed: 77)
        let dense = DenseLayer(weight: FloatBuffer((0..<(32 * 64)).map { _ in g.normal() * 0.15 }),
                               bias: FloatBuffer((0..<32).map { _ in g.normal() * 0.1 }), inputDimension: 64, outputDimension: 32,
                               activation: .identity)
        return try! TrainablePipeline(EmbeddingPipeline(pooling: PoolingConfig(modes: [.mean], dimension: 64), dense: [dense],
                                                        normalize: true))
    }

    /// A retrieval task of random token texts: a query is a random subset of its document's tokens; each row
    /// also has a random hard negative. Token ids 10..<300 of the tiny vocabulary, `<bos>` first.
    func task(rows: Int, seed: UInt64, negatives: Int = 1) -> ContrastiveExamples {
        var g = SeededGenerator(seed: seed)
        var texts: [EncoderInput] = [], raw: [String] = []
        func add(_ ids: [Int32]) -> Int {
            texts.append(EncoderInput(ids: [2] + ids))
            raw.append(ids.map(String.init).joined(separator: " "))
            return texts.count - 1
        }
        var triplets: [(anchor: Int, positive: Int, negatives: [Int])] = []
        for _ in 0..<rows {
            let document = (0..<12).map { _ in Int32(10 + g.next() % 290) }
            let query = document.filter { _ in g.next() % 2 == 0 }.prefix(5)
            let negs = (0..<negatives).map { _ in add((0..<12).map { _ in Int32(10 + g.next() % 290) }) }
            let anchor = add(Array(query.isEmpty ? document.prefix(2) : query))
            triplets.append((anchor, add(document), negs))
        }
        return ContrastiveExamples(texts: texts, raw: raw, rows: .triplets(triplets))
    }

    func options(_ configure: (inout EmbeddingTrainingOptions) -> Void = { _ in }) -> EmbeddingTrainingOptions {
        var o = EmbeddingTrainingOptions()
        o.encoder.batchSize = 8
        o.encoder.encoderLearningRate = 2e-3
        o.encoder.epochs = 3
        o.encoder.seed = 3
        o.loss.scale = 20
        configure(&o)
        return o
    }

    func gradients(_ o: EmbeddingTrainingOptions, batch: [Int], examples: ContrastiveExamples) throws -> (Double, [[Float]]) {
        let tuner = try EmbeddingFineTuner(model: try tinyModel(), pipeline: pipeline(), options: o, threads: 2)
        let (loss, _) = try tuner.gradients(batch, examples: examples, step: 0)
        return (loss, (tuner.model.trainedParameters + tuner.pipeline.parameters).map { $0.gradient!.array })
    }

    /// GradCache's promise: mini-batches of 3 texts give the gradients of the whole 24-text batch at once, for
    /// the multiple-negatives loss (symmetric and Matryoshka too) and CoSENT, with clipping off so a scale
    /// error would show. Tolerance 1e-4 of each tensor's largest gradient (f32 sums in another order).
    func testGradientCacheGivesTheUncachedGradients() throws {
        let examples = task(rows: 8, seed: 1)
        let batch = Array(0..<8)
        var scoredRows: [(first: Int, second: Int, score: Double)] = []
        for i in 0..<6 { scoredRows.append((first: 2 * i, second: 2 * i + 1, score: Double(i % 3) / 2)) }
        let scored = ContrastiveExamples(texts: examples.texts, raw: examples.raw, rows: .scored(scoredRows))
        let losses: [(String, ContrastiveLoss, ContrastiveExamples, [Int])] = [
            ("mnrl", ContrastiveLoss(), examples, batch),
            ("symmetric matryoshka", ContrastiveLoss(symmetric: true, matryoshkaDimensions: [32, 16, 8]), examples, batch),
            ("cosent", ContrastiveLoss(kind: .cosent), scored, Array(0..<6)),
        ]
        for (name, loss, data, rows) in losses {
            let whole = try gradients(options { $0.loss = loss; $0.encoder.clipNorm = 0 }, batch: rows, examples: data)
            let cached = try gradients(options { $0.loss = loss; $0.encoder.clipNorm = 0; $0.miniBatchSize = 3 }, batch: rows, examples: data)
            XCTAssertEqual(whole.0, cached.0, accuracy: 1e-5 * whole.0, name)
            XCTAssertEqual(whole.1.count, cached.1.count)
            for (a, b) in zip(whole.1, cached.1) {
                let scale = a.map { abs($0) }.max()!
                XCTAssertGreaterThan(scale, 0, name)
                XCTAssertLessThanOrEqual(maxAbsDiff(a, b), 1e-4 * scale, name)
            }
        }
    }

    func testBatchesHoldNoTextTwice() throws {
        // Rows sharing positives and negatives: a batch may not take two of them.
        var examples = task(rows: 20, seed: 4)
        guard case var .triplets(rows) = examples.rows else { return XCTFail() }
        for i in stride(from: 1, to: 20, by: 3) { rows[i].positive = rows[i - 1].positive }
        for i in stride(from: 2, to: 20, by: 4) { rows[i].negatives = rows[0].negatives }
        examples.rows = .triplets(rows)
        let tuner = try EmbeddingFineTuner(model: try tinyModel(), pipeline: pipeline(), options: options(), threads: 2)
        for epoch in 1...3 {
            let batches = tuner.batches(examples, epoch: epoch)
            XCTAssertEqual(batches.flatMap { $0 }.sorted(), Array(0..<20), "every row once an epoch")
            for batch in batches {
                XCTAssertLessThanOrEqual(batch.count, 8)
                let texts = batch.flatMap { [rows[$0].anchor, rows[$0].positive] + rows[$0].negatives }.map { examples.raw[$0] }
                XCTAssertEqual(Set(texts).count, texts.count, "batch \(batch)")
            }
        }
        XCTAssertNotEqual(tuner.batches(examples, epoch: 1), tuner.batches(examples, epoch: 2), "each epoch reshuffles")
    }

    /// Held-out queries find their documents better after training than before (top-1 among all held-out
    /// documents), and the validation loss falls.
    func testTrainingLearnsRetrieval() throws {
        let train = task(rows: 256, seed: 10), valid = task(rows: 24, seed: 11)
        let tuner = try EmbeddingFineTuner(model: try tinyModel(), pipeline: pipeline(),
                                           options: options {
                                               $0.encoder.dropout = EncoderDropout(attention: 0.1, residual: 0.1)
                                               $0.encoder.epochs = 6
                                               $0.encoder.patience = 6
                                           },
                                           threads: 2)
        func top1() throws -> Double {
            guard case let .triplets(rows) = valid.rows else { return 0 }
            let q = try tuner.embed(rows.map { valid.texts[$0.anchor] }), d = try tuner.embed(rows.map { valid.texts[$0.positive] })
            let w = tuner.pipeline.outputDimension
            var hits = 0
            for i in rows.indices {
                let scores = rows.indices.map { j in (0..<w).reduce(Float(0)) { $0 + q[i * w + $1] * d[j * w + $1] } }
                if scores.indices.max(by: { scores[$0] < scores[$1] }) == i { hits += 1 }
            }
            return Double(hits) / Double(rows.count)
        }
        let before = try top1(), lossBefore = try tuner.evaluate(valid)
        let result = try tuner.run(train: train, valid: valid)
        let after = try top1()
        XCTAssertLessThan(result.epochs.last!.validLoss!, lossBefore)
        XCTAssertGreaterThan(after, before + 0.2, "top-1 before \(before), after \(after); epochs \(result.epochs)")
    }

    /// The bi-encoder's optimizer decays by layer as the head fine-tuner's does (one step of a run from the same
    /// start, AdamW's first step being linear in the rate): layer i's weights move by 0.5^(L − i) of the
    /// undecayed run's step, the embeddings by 0.5^(L + 1), the final norm and the Dense layer by 1
    /// (`layerDecayMismatches`).
    func testLayerDecayScalesTheBiEncodersStep() throws {
        let train = task(rows: 8, seed: 5)
        func stepped(_ decay: Float?) throws -> [ParameterStep] {
            let model = try tinyModel(), p = pipeline()
            let tuner = try EmbeddingFineTuner(model: model, pipeline: p, options: options {
                $0.encoder.epochs = 1
                $0.encoder.trainEmbeddings = true
                $0.encoder.layerDecay = decay
            }, threads: 2)
            let parameters = model.trainedParameters.map { ($0.name, $0) } + p.parameters.map { ("dense." + $0.name, $0) }
            let before = parameters.map { $0.1.value.array }
            _ = try tuner.run(train: train, valid: nil)
            return zip(parameters, before).map { named, b in
                ParameterStep(name: named.0, moved: zip(named.1.value.array, b).map { $0 - $1 }, largest: b.map(abs).max()!)
            }
        }
        let plain = try stepped(nil), half = try stepped(0.5)
        let layers = try tinyModel().config.numLayers
        let check = layerDecayMismatches(plain: plain, decayed: half, decay: 0.5, layers: layers)
        XCTAssertEqual(check.mismatches, [])
        XCTAssertEqual(check.depths, layers + 2, "every depth checked")
        XCTAssertTrue(plain.contains { $0.name.hasPrefix("dense.") }, "the Dense layer trains at the full rate")
    }

    /// The directory written loads as a sentence-transformers model (our loader) whose embeddings are the
    /// trained pipeline's, prompts included; its files are the ones sentence-transformers reads.
    func testExportLoadsBackWithTheTrainedEmbeddings() throws {
        let dir = try temporaryDirectory("st-export")
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = try tinyEncoderDirectory(in: dir)
        let encoder = try TextEncoder(directory: source)
        let p = pipeline()
        let tuner = try EmbeddingFineTuner(model: try encoder.source.loadTrainable(), pipeline: p, options: options(), threads: 2)
        _ = try tuner.run(train: task(rows: 16, seed: 2), valid: nil)
        let out = dir.appendingPathComponent("bi-encoder")
        try SentenceTransformersExport.write(
            model: tuner.model, pipeline: p,
            settings: .init(attention: .bidirectional, tokenizerDirectory: source, baseModelName: "tiny",
                            prompts: ["query": "find: ", "document": "doc: "], maxSequenceLength: 128), to: out)
        for file in ["modules.json", "config_sentence_transformers.json", "sentence_bert_config.json", "config.json", "model.safetensors",
                     "tokenizer.json", "1_Pooling/config.json", "2_Dense/config.json", "2_Dense/model.safetensors"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent(file).path), file)
        }
        var isDirectory: ObjCBool = false
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("3_Normalize").path, isDirectory: &isDirectory))
        let loaded = try TextEncoder(directory: out)
        XCTAssertTrue(loaded.isSentenceTransformer)
        XCTAssertEqual(loaded.prompts["query"], "find: ")
        XCTAssertEqual(loaded.maxSequenceLength, 128)
        XCTAssertEqual(loaded.pipeline.dense.count, 1)
        XCTAssertTrue(loaded.pipeline.normalize)
        let texts = ["the cat sat", "a dog ran in the sun"]
        let inputs = loaded.tokenize(texts, prompt: "find: ")
        let ours = try tuner.embed(inputs)
        let theirs = try loaded.embed(inputs)
        for (i, v) in theirs.enumerated() {
            XCTAssertGreaterThan(cosine(v, Array(ours[(i * 32)..<((i + 1) * 32)])), 0.99999)
        }
        let base = try encoder.embed(inputs)
        XCTAssertNotEqual(base[0].count, theirs[0].count, "the Dense layer changed the dimension")
    }
}
