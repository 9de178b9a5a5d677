import GemmaEncoder
import XCTest

final class PoolingTests: XCTestCase {
    // Three tokens, dimension 2.
    let states: [Float] = [1, -4, 3, -2, 5, -6]

    func pool(_ mode: Pooling, includePrompt: Bool = true, first: Int = 0) -> [Float] {
        PoolingConfig(modes: [mode], dimension: 2, includePrompt: includePrompt).pool(states[...], length: 3, firstToken: first)
    }

    func testEveryMode() {
        XCTAssertEqual(pool(.first), [1, -4])
        XCTAssertEqual(pool(.mean), [3, -4])
        XCTAssertEqual(pool(.max), [5, -2], "max over negative values must not be beaten by padding zeros")
        XCTAssertEqual(pool(.last), [5, -6])
        XCTAssertEqual(pool(.meanSqrtLen), [9 / Float(3).squareRoot(), -12 / Float(3).squareRoot()])
        // weights 1, 2, 3: (1 + 6 + 15) / 6, (-4 - 4 - 18) / 6
        XCTAssertEqual(pool(.weightedMean)[0], 22 / 6, accuracy: 1e-6)
        XCTAssertEqual(pool(.weightedMean)[1], -26 / 6, accuracy: 1e-6)
    }

    func testIncludePromptFalseSkipsPromptTokens() {
        XCTAssertEqual(pool(.mean, includePrompt: false, first: 1), [4, -4])
        XCTAssertEqual(pool(.mean, includePrompt: true, first: 1), [3, -4])
        XCTAssertEqual(pool(.first, includePrompt: false, first: 1), [1, -4], "cls is token 0 regardless")
        // weights stay the absolute positions 2 and 3: (6 + 15) / 5, (-4 - 18) / 5
        XCTAssertEqual(pool(.weightedMean, includePrompt: false, first: 1)[0], 21 / 5, accuracy: 1e-6)
    }

    func testSeveralModesConcatenate() {
        let config = PoolingConfig(modes: [.first, .mean], dimension: 2)
        XCTAssertEqual(config.pool(states[...], length: 3), [1, -4, 3, -4])
        XCTAssertEqual(config.outputDimension, 4)
    }

    func testBothConfigSchemas() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pool-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let legacy = dir.appendingPathComponent("legacy.json")
        try #"{"word_embedding_dimension": 8, "pooling_mode_cls_token": false, "pooling_mode_mean_tokens": true, "pooling_mode_max_tokens": true, "include_prompt": false}"#
            .write(to: legacy, atomically: true, encoding: .utf8)
        XCTAssertEqual(try PoolingConfig.load(legacy), PoolingConfig(modes: [.max, .mean], dimension: 8, includePrompt: false))
        let modern = dir.appendingPathComponent("modern.json")
        try #"{"embedding_dimension": 8, "pooling_mode": "lasttoken"}"#.write(to: modern, atomically: true, encoding: .utf8)
        XCTAssertEqual(try PoolingConfig.load(modern), PoolingConfig(modes: [.last], dimension: 8))
        let bad = dir.appendingPathComponent("bad.json")
        try #"{"embedding_dimension": 8, "pooling_mode": "median"}"#.write(to: bad, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try PoolingConfig.load(bad)) { error in
            XCTAssertTrue("\(error)".contains("pooling_mode"), "\(error)")
        }
    }
}
