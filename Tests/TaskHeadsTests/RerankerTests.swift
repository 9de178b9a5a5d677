import EncoderKernels
import Foundation
import GemmaEncoder
import TaskHeads
import TestSupport
import XCTest

final class RerankerTests: XCTestCase {
    var dir: URL!
    var encoder: TextEncoder!

    override func setUpWithError() throws {
        dir = try temporaryDirectory("rerank")
        encoder = try TextEncoder(directory: try tinyEncoderDirectory(in: dir))
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func testPairTemplate() throws {
        let t = try PairTemplate("q: {query} | d: {document}.")
        XCTAssertEqual(t.render(query: "a {document} b", document: "x"), "q: a {document} b | d: x.")
        XCTAssertThrowsError(try PairTemplate("only {query}"))
        XCTAssertThrowsError(try PairTemplate("{query} {document} {query}"))
        let decoded = try JSONDecoder().decode(PairTemplate.self, from: try JSONEncoder().encode(t))
        XCTAssertEqual(decoded, t)
        XCTAssertThrowsError(try JSONDecoder().decode(PairTemplate.self, from: Data(#""no placeholders""#.utf8)))
    }

    func testLongPairsLoseTheDocumentFirst() throws {
        let template = try PairTemplate("query: {query} text: {document}")
        let short = encoder.tokenizePair(query: "the cat", document: "a dog ran", template: template, maxLength: 64)
        XCTAssertEqual(short.ids, encoder.tokenizer.encode("query: the cat text: a dog ran"))
        XCTAssertFalse(short.truncated)

        let document = String(repeating: "more words here ", count: 40)
        let long = encoder.tokenizePair(query: "the cat sat", document: document, template: template, maxLength: 48)
        XCTAssertTrue(long.truncated)
        XCTAssertLessThanOrEqual(long.ids.count, 48)
        XCTAssertGreaterThanOrEqual(long.ids.count, 44, "the budget is used, not wasted")
        XCTAssertEqual(long.ids.last, encoder.tokenizer.eosTokenId)
        let text = encoder.tokenizer.decode(long.ids, skipSpecialTokens: true)
        XCTAssertTrue(text.hasPrefix("query: the cat sat text: more words here"), text)
        XCTAssertTrue(document.hasPrefix(String(text.dropFirst("query: the cat sat text: ".count))), text)
    }

    func testTrainScoreAndRank() throws {
        let rows = (0..<12).map { i in
            #"{"query": "the cat \#(i)", "positive": "a cat sat \#(i)", "negatives": ["a dog ran", "hello there", "tiny words \#(i)"]}"#
        }
        let path = dir.appendingPathComponent("pairs.jsonl")
        try rows.joined(separator: "\n").write(to: path, atomically: true, encoding: .utf8)
        var plan = RerankerTrainingPlan()
        plan.negatives = 2
        plan.options.epochs = 2
        plan.hiddenSize = 8
        plan.fuseSimilarity = true
        // Both losses, and the listwise head trained on top of the cosine (residual).
        for (loss, residual) in RankingLoss.allCases.filter({ $0 != .marginMSE }).map({ ($0, false) }) + [(.listwise, true)] {
            plan.loss = loss
            plan.residual = residual
            let head = try RerankerBuilder.train(encoder: encoder, modelName: "tiny", examples: try RerankExample.read(path: path.path),
                                                 valid: nil, plan: plan, cache: nil)
            XCTAssertEqual(head.config.task, .rerank)
            XCTAssertEqual(head.config.rankingLoss, loss)
            XCTAssertEqual(head.config.pairTemplate, PairTemplate.embeddingGemma.text)
            try head.write(to: dir.appendingPathComponent("reranker"))
            let reranker = try Reranker(head: try HeadDirectory.read(dir.appendingPathComponent("reranker")), encoder: encoder)
            let documents = ["a dog ran", "a cat sat", "hello there"]
            let scores = try reranker.scores(query: "the cat", documents: documents)
            XCTAssertEqual(scores.count, 3)
            let ranked = try reranker.rank(query: "the cat", documents: documents)
            XCTAssertEqual(Set(ranked.map(\.index)), [0, 1, 2])
            XCTAssertEqual(ranked.map(\.score), scores.sorted(by: >))
            // The same pair scores the same alone and among others.
            XCTAssertEqual(try reranker.scores(query: "the cat", documents: [documents[1]])[0], scores[1], accuracy: 1e-5)

            // Fused (the default): head score and bi-encoder cosine, recomputed here from their definitions.
            let fusion = try XCTUnwrap(head.config.fusion)
            XCTAssertEqual(fusion.validGroups, 1)
            XCTAssertEqual(fusion.residual, residual)
            let variants = try reranker.rerankScores(query: "the cat", documents: documents, similarity: nil)
            for (x, y) in zip(variants.final, scores) { XCTAssertEqual(x, y, accuracy: 1e-5 * max(1, abs(y))) }
            let cross = try XCTUnwrap(variants.crossOnly)
            var pairs = TokenStateSet(dimension: encoder.hiddenSize)
            for pair in documents.map({ encoder.tokenizePair(query: "the cat", document: $0, template: .embeddingGemma, maxLength: 512) }) {
                pairs.append(try encoder.tokenStates([pair])[0])
            }
            for (x, y) in zip(cross, head.network.predict(pairs)) { XCTAssertEqual(x, y, accuracy: 1e-5 * max(1, abs(y))) }
            var options = EmbeddingOptions()
            options.normalize = true
            let q = try encoder.embed(["the cat"], options: options)[0], d = try encoder.embed(documents, options: options)
            for i in documents.indices {
                let cosine = zip(q, d[i]).reduce(Float(0)) { $0 + $1.0 * $1.1 }
                XCTAssertEqual(Double(scores[i]), fusion.crossWeight * Double(cross[i]) + fusion.similarityWeight * Double(cosine),
                               accuracy: 1e-4 * max(1, abs(Double(scores[i]))))
            }
        }
        plan.fuseSimilarity = false
        plan.residual = false
        plan.guardFirstStage = false
        let plain = try RerankerBuilder.train(encoder: encoder, modelName: "tiny", examples: try RerankExample.read(path: path.path),
                                              valid: nil, plan: plan, cache: nil)
        XCTAssertNil(plain.config.fusion)
        XCTAssertNil(try Reranker(head: plain, encoder: encoder).rerankScores(query: "the cat", documents: ["a cat sat"], similarity: nil).crossOnly)
    }

    /// The fitted weights minimize the regularized listwise loss: no point of a fine grid around them is lower,
    /// and a feature that carries the ranking gets the weight while pure noise gets little.
    func testScoreFusionFitIsTheOptimum() {
        var rng = SeededGenerator(seed: 7)
        let groups = 200, size = 4
        var cross: [Float] = [], similarity: [Float] = []
        for _ in 0..<groups {
            for k in 0..<size {
                let relevant: Float = k == 0 ? 1 : 0
                // Neither separates the groups alone (so the optimum is finite and the small ridge barely moves it).
                cross.append(1 * relevant + Float.random(in: -4...4, using: &rng))      // weak, large scale
                similarity.append(0.1 * relevant + Float.random(in: -0.15...0.15, using: &rng))  // stronger, small scale
            }
        }
        let fit = ScoreFusion.fit(cross: cross, similarity: similarity, groupSize: size, queryPrompt: "q: ", documentPrompt: nil)
        func loss(_ a: Double, _ b: Double) -> Double {
            // The same objective in the original units (the ridge acts on standardized weights, so compare
            // with ridge 0 on both sides: the fit's λ = 1e-3 moves the optimum by far less than the grid step).
            (0..<groups).reduce(0.0) { total, g in
                let z = (0..<size).map { a * Double(cross[g * size + $0]) + b * Double(similarity[g * size + $0]) }
                let top = z.max()!
                return total + (top + log(z.reduce(0) { $0 + exp($1 - top) }) - z[0]) / Double(groups)
            }
        }
        let best = loss(fit.crossWeight, fit.similarityWeight)
        for da in stride(from: -0.2, through: 0.2, by: 0.05) {
            for db in stride(from: -0.2, through: 0.2, by: 0.05) {
                XCTAssertGreaterThanOrEqual(loss(fit.crossWeight * (1 + da), fit.similarityWeight * (1 + db)), best - 1e-3,
                                            "grid point (\(da), \(db)) beats the fit")
            }
        }
        XCTAssertGreaterThan(fit.similarityWeight * 0.1, fit.crossWeight * 1, "the strong feature weighs more")
        XCTAssertGreaterThan(fit.crossWeight, 0)
        XCTAssertGreaterThan(fit.validTop1.similarity, fit.validTop1.cross)
        XCTAssertEqual(fit.validGroups, groups)
        XCTAssertEqual(fit.combine(cross: [2], similarity: [0.5]), [Float(fit.crossWeight * 2 + fit.similarityWeight * 0.5)])
        // Round trip through head.json's encoding.
        XCTAssertEqual(try JSONDecoder().decode(ScoreFusion.self, from: try JSONEncoder().encode(fit)), fit)
    }

    func testBadRowsAndWrongHeadsAreErrors() throws {
        let path = dir.appendingPathComponent("bad.jsonl")
        try #"{"query": "q", "positive": "p", "negatives": []}"#.write(to: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try RerankExample.read(path: path.path)) {
            XCTAssertTrue("\($0)".contains("bad.jsonl:1: field \"negatives\" must be a non-empty array"), "\($0)")
        }
        var plan = RerankerTrainingPlan()
        plan.negatives = 3
        let few = [RerankExample(query: "q", positive: "p", negatives: ["n"], line: 4), RerankExample(query: "q", positive: "p", negatives: ["n"], line: 5)]
        XCTAssertThrowsError(try RerankerBuilder.train(encoder: encoder, modelName: "tiny", examples: few, valid: nil, plan: plan, cache: nil)) {
            XCTAssertTrue("\($0)".contains("line 4: 1 negatives, fewer than the 3 per group asked for"), "\($0)")
        }
        let classifier = HeadDirectory(config: HeadConfig(task: .classification,
                                                          architecture: HeadArchitecture(inputDimension: 64, outputs: 2, pooling: .mean),
                                                          baseModel: .init(name: "tiny", digest: try ModelFingerprint.digest(of: encoder.source)),
                                                          attention: .bidirectional, prompt: nil),
                                       network: try HeadNetwork(architecture: HeadArchitecture(inputDimension: 64, outputs: 2, pooling: .mean), seed: 0))
        XCTAssertThrowsError(try Reranker(head: classifier, encoder: encoder)) { XCTAssertTrue("\($0)".contains("not a reranker")) }
    }

    /// A fine-tuned cross-encoder's fusion (asked for, or the first-stage guard's) fuses the base model's cosine,
    /// not its own fine-tuned encoder's: the reranker needs the base model, checks its digest, and scores as
    /// the fitted weights times the head's score and the base model's cosine.
    func testFineTunedRerankerFusesTheBaseModelsCosine() throws {
        let rows = (0..<16).map { i in
            #"{"query": "the cat \#(i)", "positive": "a cat sat \#(i)", "negatives": ["a dog ran", "hello there", "tiny words \#(i)"]}"#
        }
        let path = dir.appendingPathComponent("pairs.jsonl")
        try rows.joined(separator: "\n").write(to: path, atomically: true, encoding: .utf8)
        var plan = RerankerTrainingPlan()
        plan.negatives = 2
        plan.hiddenSize = 8
        plan.pooling = .mean
        plan.validFraction = 0.5
        plan.maxLength = 64
        plan.fuseSimilarity = true
        var options = FineTuneOptions()
        options.epochs = 1
        options.batchSize = 6
        options.encoderLearningRate = 1e-2
        options.maxLength = 64
        let out = dir.appendingPathComponent("fine-tuned")
        let written = try RerankerBuilder.fineTune(encoder: encoder, modelName: "tiny", examples: try RerankExample.read(path: path.path),
                                                   valid: nil, plan: plan, run: FineTuneBuilder.Run(plan: HeadTrainingPlan(task: .rerank, pooling: .mean), options: options),
                                                   out: out)
        let fusion = try XCTUnwrap(written.config.fusion)
        XCTAssertEqual(fusion.similarityModel, .init(name: "tiny", digest: try ModelFingerprint.digest(of: encoder.source)))
        XCTAssertEqual(fusion.validGroups, 8)
        let tuned = try TextEncoder(directory: try XCTUnwrap(written.encoderLocation))
        XCTAssertNotEqual(try ModelFingerprint.digest(of: tuned.source), fusion.similarityModel?.digest, "the encoder was fine-tuned")

        XCTAssertThrowsError(try Reranker(head: written, encoder: tuned)) { XCTAssertTrue("\($0)".contains("load that model too"), "\($0)") }
        XCTAssertThrowsError(try Reranker(head: written, encoder: tuned, similarityEncoder: tuned)) {
            XCTAssertTrue("\($0)".contains("fuses the cosine of 'tiny'"), "\($0)")
        }
        let reranker = try Reranker(head: written, encoder: tuned, similarityEncoder: encoder)
        XCTAssertEqual(reranker.fusedSimilarity?.modelDigest, fusion.similarityModel?.digest, "an index of the base model supplies the cosine")
        let documents = ["a cat sat 3", "a dog ran", "tiny words"]
        let scores = try reranker.rerankScores(query: "the cat 3", documents: documents, similarity: nil)
        let base = try encoder.similarities(query: "the cat 3", documents: documents, queryPrompt: fusion.queryPrompt,
                                            documentPrompt: fusion.documentPrompt, attention: .bidirectional)
        let own = try tuned.similarities(query: "the cat 3", documents: documents, queryPrompt: fusion.queryPrompt,
                                         documentPrompt: fusion.documentPrompt, attention: .bidirectional)
        XCTAssertGreaterThan(zip(base, own).map { abs($0 - $1) }.max()!, 1e-3, "the two encoders' cosines differ, so the test tells them apart")
        let expected = fusion.combine(cross: try XCTUnwrap(scores.crossOnly), similarity: base)
        for (got, want) in zip(scores.final, expected) { XCTAssertEqual(got, want, accuracy: 1e-5) }

        // Without --fuse-similarity the guard decides; a residual head needs a frozen encoder.
        plan.fuseSimilarity = false
        let guarded = try RerankerBuilder.fineTune(encoder: encoder, modelName: "tiny", examples: try RerankExample.read(path: path.path),
                                                   valid: nil, plan: plan, run: FineTuneBuilder.Run(plan: HeadTrainingPlan(task: .rerank, pooling: .mean), options: options),
                                                   out: dir.appendingPathComponent("guarded"))
        if let f = guarded.config.fusion {
            XCTAssertEqual(f.fallback, true)
            XCTAssertLessThanOrEqual(f.validTop1.cross, f.validTop1.similarity)
            XCTAssertNotNil(f.similarityModel)
        }
        plan.fuseSimilarity = true
        plan.residual = true
        XCTAssertThrowsError(try RerankerBuilder.fineTune(encoder: encoder, modelName: "tiny", examples: try RerankExample.read(path: path.path),
                                                          valid: nil, plan: plan, run: FineTuneBuilder.Run(plan: HeadTrainingPlan(task: .rerank, pooling: .mean), options: options),
                                                          out: dir.appendingPathComponent("residual"))) { XCTAssertTrue("\($0)".contains("--residual"), "\($0)") }
    }

    /// The default reranker never ranks below the first stage on validation: when the head alone does no
    /// better than the cosine there, it is fused with it (marked as a fallback), and a fusion that would do
    /// worse than the cosine keeps the cosine alone.
    func testDefaultRerankerNeverRanksBelowTheFirstStage() throws {
        let rows = (0..<24).map { i in
            #"{"query": "the cat \#(i)", "positive": "a cat sat \#(i)", "negatives": ["a dog ran", "hello there", "tiny words \#(i)"]}"#
        }
        let path = dir.appendingPathComponent("pairs.jsonl")
        try rows.joined(separator: "\n").write(to: path, atomically: true, encoding: .utf8)
        for rate: Float in [1e-9, 1e-2] {
            var plan = RerankerTrainingPlan()
            plan.negatives = 3
            plan.hiddenSize = 8
            plan.validFraction = 0.5
            plan.options.epochs = 2
            plan.options.learningRate = rate
            let head = try RerankerBuilder.train(encoder: encoder, modelName: "tiny", examples: try RerankExample.read(path: path.path),
                                                 valid: nil, plan: plan, cache: nil)
            if let fusion = head.config.fusion {
                XCTAssertEqual(fusion.fallback, true)
                XCTAssertLessThanOrEqual(fusion.validTop1.cross, fusion.validTop1.similarity)
                XCTAssertGreaterThanOrEqual(fusion.validTop1.fused, fusion.validTop1.similarity, "rate \(rate)")
            }
        }
        let worse = ScoreFusion(crossWeight: 2, similarityWeight: 1, queryPrompt: nil, documentPrompt: nil, validGroups: 10,
                                validTop1: .init(cross: 0.2, similarity: 0.8, fused: 0.6))
        let guarded = worse.neverBelowSimilarity
        XCTAssertEqual([guarded.crossWeight, guarded.similarityWeight], [0, 1])
        XCTAssertEqual(guarded.validTop1.fused, 0.8)
        XCTAssertEqual(guarded.combine(cross: [5, -5], similarity: [0.1, 0.3]), [0.1, 0.3])
        let better = ScoreFusion(crossWeight: 2, similarityWeight: 1, queryPrompt: nil, documentPrompt: nil, validGroups: 10,
                                 validTop1: .init(cross: 0.2, similarity: 0.8, fused: 0.9))
        XCTAssertEqual(better.neverBelowSimilarity, better)
    }
}
