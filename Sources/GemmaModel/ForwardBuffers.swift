import Foundation

/// Sequences packed without padding: sequence i owns token rows offsets[i] ..< offsets[i+1].
public struct PackedBatch: Sendable {
    public let offsets: [Int]
    public let hiddenSize: Int

    public init(offsets: [Int], hiddenSize: Int) {
        self.offsets = offsets
        self.hiddenSize = hiddenSize
    }

    /// Packs `sequences` of token ids, each id checked against the vocabulary (the inference and the training
    /// forward both start here).
    public init(sequences: [[Int32]], hiddenSize: Int, vocabularySize: Int) throws(ModelError) {
        var offsets = [0]
        for (s, ids) in sequences.enumerated() {
            for (p, id) in ids.enumerated() where id < 0 || Int(id) >= vocabularySize {
                throw .tokenOutOfRange(sequence: s, position: p, id: id, vocabularySize: vocabularySize)
            }
            offsets.append(offsets.last! + ids.count)
        }
        self.init(offsets: offsets, hiddenSize: hiddenSize)
    }

    public var count: Int { offsets.count - 1 }
    public var tokens: Int { offsets.last! }
    public func length(_ i: Int) -> Int { offsets[i + 1] - offsets[i] }
    public var maxLength: Int { (0..<count).map(length).max() ?? 0 }
}

/// The work buffers of one forward call, allocated once per call, 64-byte aligned for the BLAS kernels.
final class ForwardBuffers {
    /// (T, C) the residual stream.
    let residual: UnsafeMutablePointer<Float>
    /// (T, C) a normed copy of the residual stream: the input of a branch.
    let normed: UnsafeMutablePointer<Float>
    /// (T, C) a branch's output before it joins the residual stream.
    let branch: UnsafeMutablePointer<Float>
    /// (T, q + 2·kv) Q|K|V as the stacked product writes them.
    let qkv: UnsafeMutablePointer<Float>
    /// (T, q) attention output before O.
    let attention: UnsafeMutablePointer<Float>
    /// (T, 2·I) gate|up as the stacked product writes them.
    let gateUp: UnsafeMutablePointer<Float>
    /// (T rounded up to 16, I) the gated product in bf16 where the gate|up product writes it so (AMX), as the down
    /// product's input; whole 16-row tiles, so its last tile's rows are readable.
    let gatedBF16: UnsafeMutablePointer<UInt16>
    /// (threads, L, L) one head's scores for the longest sequence, per core.
    let scores: UnsafeMutablePointer<Float>
    /// Cores this call may use for one product or one sequence's attention heads.
    let threads: Int
    /// This call's time per operation, when the model's profile is on.
    var timer: OperationTimer
    private let all: [UnsafeMutablePointer<Float>]

    init(tokens t: Int, maxLength: Int, hiddenSize h: Int, stackedQKV: Int, queryWidth: Int, intermediateSize: Int,
         threads: Int, profiling: Bool = false) {
        func allocate(_ n: Int) -> UnsafeMutablePointer<Float> {
            UnsafeMutableRawPointer.allocate(byteCount: max(n, 1) * 4, alignment: 64).bindMemory(to: Float.self, capacity: max(n, 1))
        }
        residual = allocate(t * h)
        normed = allocate(t * h)
        branch = allocate(t * h)
        qkv = allocate(t * stackedQKV)
        attention = allocate(t * queryWidth)
        gateUp = allocate(t * 2 * intermediateSize)
        let gatedValues = max((t + 15) / 16 * 16 * intermediateSize, 1)
        gatedBF16 = UnsafeMutableRawPointer.allocate(byteCount: gatedValues * 2, alignment: 64)
            .bindMemory(to: UInt16.self, capacity: gatedValues)
        scores = allocate(threads * maxLength * maxLength)
        self.threads = threads
        timer = OperationTimer(enabled: profiling)
        all = [residual, normed, branch, qkv, attention, gateUp, scores]
    }

    deinit {
        for b in all { b.deallocate() }
        gatedBF16.deallocate()
    }
}
