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

/// Distillation on the tiny checkpoint: the student made of the teacher's own layers holds exactly those
/// layers' weights, the objectives' gradients are right, and training brings the student towards the teacher.
final class DistillationTests: XCTestCase {
    func testStudentLayersAreTheTeachersOwn() throws {
        let dir = try temporaryDirectory("distill-layers")
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = try ModelSource(at: try tinyEncoderDirectory(in: dir))
        let teacher = try source.loadTrainable()
        let layers = teacher.config.evenlySpacedLayers(2)
        XCTAssertEqual(layers, [0, teacher.config.numLayers - 1], "the first and the last layer")
        XCTAssertEqual(teacher.config.evenlySpacedLayers(teacher.config.numLayers), Array(0..<teacher.config.numLayers))
        let student = try source.loadTrainable(layers: layers)
        XCTAssertEqual(student.config.numLayers, 2)
        XCTAssertEqual(student.config.layerTypes, layers.map { teacher.config.layerTypes[$0] })
        let ours = Dictionary(uniqueKeysWithValues: student.checkpointTensors().map { ($0.name, $0.values) })
        let theirs = Dictionary(uniqueKeysWithValues: teacher.checkpointTensors().map { ($0.name, $0.values) })
        var compared = 0
        for (name, values) in ours {
            var source = name
            for (i, l) in layers.enumerated() where name.hasPrefix("layers.\(i).") {
                source = "layers.\(l)." + name.dropFirst("layers.\(i).".count)
            }
            XCTAssertEqual(values, theirs[source], name)
            compared += 1
        }
        XCTAssertGreaterThan(compared, 10)
        // All layers in order is the teacher itself.
        let same = try source.loadTrainable(layers: Array(0..<teacher.config.numLayers))
        let ids: [[Int32]] = [[2, 40, 50, 60], [2, 70, 80]]
        XCTAssertEqual(try same.forward(ids, mode: .bidirectional, keepTape: false).hidden.array,
                       try teacher.forward(ids, mode: .bidirectional, keepTape: false).hidden.array)
        XCTAssertThrowsError(try teacher.config.keepingLayers([0, 0]))
    }

    func testObjectiveGradients() {
        var g = SeededGenerator(seed: 4)
        let s = (0..<12).map { _ in g.normal() }, t = (0..<12).map { _ in g.normal() }
        for objective in DistillationOptions.Objective.allCases {
            var o = DistillationOptions()
            o.objective = objective
            let (_, gradient) = o.loss(s, t, dimension: 4)
            for i in s.indices {
                var plus = s, minus = s
                plus[i] += 1e-3
                minus[i] -= 1e-3
                let numeric = (o.loss(plus, t, dimension: 4).loss - o.loss(minus, t, dimension: 4).loss) / Double(plus[i] - minus[i])
                XCTAssertEqual(Double(gradient[i]), numeric, accuracy: 1e-4, "\(objective) \(i)")
            }
        }
        var cosine = DistillationOptions()
        cosine.objective = .cosine
        XCTAssertEqual(cosine.loss(s, s.map { $0 * 3 }, dimension: 4).loss, 0, accuracy: 1e-9, "direction only")
    }

    func testStudentLearnsTheTeachersEmbeddings() throws {
        let dir = try temporaryDirectory("distill")
        defer { try? FileManager.default.removeItem(at: dir) }
        let teacher = try TextEncoder(directory: try tinyEncoderDirectory(in: dir))
        let texts = try debianCorpusLines(60).map { line -> String in
            let row = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            return String((row["text"] as! String).prefix(200))
        }
        var run = DistillationBuilder.Run(options: DistillationOptions())
        run.options.encoder.epochs = 4
        run.options.encoder.batchSize = 8
        run.options.encoder.encoderLearningRate = 2e-3
        run.options.encoder.patience = 4
        run.studentLayers = 2
        run.validFraction = 0.2
        let out = dir.appendingPathComponent("student")
        var reports: [EmbeddingEpochReport] = []
        let summary = try DistillationBuilder.train(teacher: teacher, teacherName: "tiny", student: teacher, studentName: "tiny", texts: texts,
                                                    run: run, cache: TokenStateCache(directory: dir.appendingPathComponent("cache")), out: out,
                                                    onEpoch: { reports.append($0) })
        XCTAssertEqual(summary.studentLayers?.count, 2)
        XCTAssertFalse(summary.projection)
        XCTAssertLessThan(reports.last!.validLoss!, reports.first!.validLoss! * 0.8, "\(reports)")
        // The written student is smaller and closer to the teacher than the untrained 2-layer start.
        let student = try TextEncoder(directory: out)
        XCTAssertEqual((student.model as? GemmaTransformer)?.config.numLayers, 2)
        // The teacher has no prompts: the student says it was trained under none.
        XCTAssertEqual(student.prompts["query"], "")
        XCTAssertEqual(student.prompts["document"], "")
        let probe = Array(texts.suffix(12))
        let t = try teacher.embed(probe), s = try student.embed(probe)
        let trained = zip(t, s).map { cosine($0, $1) }.reduce(0, +) / Double(probe.count)
        let start = try EmbeddingDistiller(model: try teacher.source.loadTrainable(layers: summary.studentLayers),
                                           pipeline: try TrainablePipeline(teacher.pipeline), options: run.options)
        let w = teacher.pipeline.outputDimension
        let before = try start.embed(teacher.tokenize(probe))
        let untrained = t.indices.map { cosine(t[$0], Array(before[($0 * w)..<(($0 + 1) * w)])) }.reduce(0, +) / Double(probe.count)
        XCTAssertGreaterThan(trained, untrained + 0.02, "trained \(trained), untrained \(untrained)")
        // The cache holds the teacher's vectors: a second run reads them instead of embedding again.
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.appendingPathComponent("cache").path)
        XCTAssertEqual(files.filter { $0.hasSuffix(".vectors.bin") }.count, 1)
    }
}
