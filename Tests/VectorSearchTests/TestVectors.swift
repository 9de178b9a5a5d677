import Foundation
import VectorSearch

/// Deterministic generator so failures reproduce (SplitMix64).
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

enum TestVectors {
    /// n random unit vectors of dimension d, row-major.
    static func unit(_ n: Int, dimension d: Int, seed: UInt64) -> [Float] {
        var rng = SeededGenerator(seed: seed)
        var out = [Float](repeating: 0, count: n * d)
        for i in 0..<n {
            var norm: Float = 0
            for j in 0..<d {
                // Sum of uniforms ≈ Gaussian; enough for direction sampling.
                let v = (0..<4).reduce(Float(0)) { acc, _ in acc + Float.random(in: -1...1, using: &rng) }
                out[i * d + j] = v
                norm += v * v
            }
            let scale = 1 / norm.squareRoot()
            for j in 0..<d { out[i * d + j] *= scale }
        }
        return out
    }

    static func row(_ vectors: [Float], _ i: Int, dimension d: Int) -> [Float] {
        Array(vectors[i * d..<(i + 1) * d])
    }

    /// Exact inner products in Double, best first (ties broken by id).
    static func bruteForce(_ base: [Float], ids: [Int64], query: [Float], dimension d: Int, k: Int) -> [(id: Int64, score: Double)] {
        let scored = ids.indices.map { i -> (id: Int64, score: Double) in
            var dot = 0.0
            for j in 0..<d { dot += Double(base[i * d + j]) * Double(query[j]) }
            return (ids[i], dot)
        }
        return Array(scored.sorted { $0.score != $1.score ? $0.score > $1.score : $0.id < $1.id }.prefix(k))
    }

    /// Mean fraction of `truth`'s ids found in `found`, per query.
    static func recall(_ found: [[SearchHit]], _ truth: [[SearchHit]]) -> Double {
        let perQuery = zip(found, truth).map { f, t -> Double in
            let expected = Set(t.map(\.id))
            return Double(f.filter { expected.contains($0.id) }.count) / Double(max(expected.count, 1))
        }
        return perQuery.reduce(0, +) / Double(max(perQuery.count, 1))
    }

    static func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("VectorSearchTests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}
