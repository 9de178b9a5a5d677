import CBLAS
import CKernels
import Foundation

/// How a weight matrix is stored: F32, F16, BF16, or one of ggml's quantized block layouts (the raw values
/// are ggml's type numbers, so a GGUF tensor's type maps straight onto this).
public enum WeightFormat: Int32, Sendable, CaseIterable, CustomStringConvertible {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8
    case q4_K = 12, q5_K = 13, q6_K = 14, q8_K = 15, bf16 = 30

    /// Values per block (1 for the float formats).
    public var blockSize: Int { ck_block_size(rawValue) }
    /// Bytes per block.
    public var blockBytes: Int { ck_block_bytes(rawValue) }

    /// Bytes of one row of `columns` values, or nil when the row is not a whole number of blocks.
    public func rowBytes(columns: Int) -> Int? {
        columns % blockSize == 0 ? columns / blockSize * blockBytes : nil
    }

    public var description: String {
        switch self {
        case .f32: "F32"
        case .f16: "F16"
        case .bf16: "BF16"
        case .q4_0: "Q4_0"
        case .q4_1: "Q4_1"
        case .q5_0: "Q5_0"
        case .q5_1: "Q5_1"
        case .q8_0: "Q8_0"
        case .q4_K: "Q4_K"
        case .q5_K: "Q5_K"
        case .q6_K: "Q6_K"
        case .q8_K: "Q8_K"
        }
    }
}

public enum WeightError: Error, CustomStringConvertible, Equatable {
    case notWholeBlocks(format: WeightFormat, columns: Int)
    case cannotQuantize(WeightFormat)

    public var description: String {
        switch self {
        case let .notWholeBlocks(format, columns):
            return "\(format) stores rows in blocks of \(format.blockSize) values; \(columns) columns is not a whole number of blocks"
        case let .cannotQuantize(format):
            return "cannot quantize to \(format) (F32, F16, BF16 and Q8_0 can be produced)"
        }
    }
}

/// A Linear layer's weight, rows × columns in PyTorch's (out × in) layout, in any `WeightFormat`. The bytes
/// stay in their format (borrowed from a memory mapping or owned); products dequantize tiles as they go.
public final class LinearWeight: @unchecked Sendable {
    public let format: WeightFormat
    public let rows: Int
    public let columns: Int
    public let rowBytes: Int
    public let bytes: UnsafeRawPointer
    private let owned: UnsafeMutableRawPointer?
    /// Keeps borrowed bytes (a mapping, a FloatBuffer) alive.
    private let owner: AnyObject?
    /// How the bytes are laid out: rows, or panels for the CPU's native low-precision products.
    public let packing: Packing

    /// Panels for native low-precision products (bf16gemm.c, q8gemm.c), chosen where the CPU has the
    /// instructions: the weight is kept only in that layout, and the products round the activations to the
    /// weight's precision (bf16 as PyTorch's bf16 autocast does; Q8_0 blocks as llama.cpp does).
    public enum Packing: Sendable, Equatable {
        case rows
        /// bf16, multiplied with vdpbf16ps (AVX512-BF16).
        case bf16Panels
        /// Q8_0, multiplied in integers: vpdpbusd (AVX512-VNNI), else vpmaddwd (AVX2).
        case q8Panels
    }

    /// The panels `format` is packed into on this CPU when low-precision products are asked for.
    public static func panels(for format: WeightFormat) -> Packing {
        let features = ck_cpu_features()
        switch format {
        case .bf16 where features & UInt32(CK_ISA_AVX512_BF16) != 0: return .bf16Panels
        // AVX2's 16-bit integer products beat dequantizing tiles for the f32 kernel (issue 20: the int8 query
        // was ~20 % slower than f32 that way); only a CPU without AVX2 keeps the tiles.
        case .q8_0 where features & UInt32(CK_ISA_AVX512_VNNI | CK_ISA_AVX2) != 0: return .q8Panels
        default: return .rows
        }
    }

    /// Borrows `rows` rows of `format` at `bytes`, kept valid by `owner`.
    public init(format: WeightFormat, rows: Int, columns: Int, borrowing bytes: UnsafeRawPointer,
                owner: AnyObject?) throws(WeightError) {
        guard let rowBytes = format.rowBytes(columns: columns) else {
            throw .notWholeBlocks(format: format, columns: columns)
        }
        self.format = format
        self.rows = rows
        self.columns = columns
        self.rowBytes = rowBytes
        self.bytes = bytes
        self.owned = nil
        self.owner = owner
        self.packing = .rows
    }

    /// Converts f32 values (rows × columns) to `format`, in an allocation of its own (rows).
    public init(quantizing values: UnsafePointer<Float>, rows: Int, columns: Int,
                to format: WeightFormat) throws(WeightError) {
        guard let rowBytes = format.rowBytes(columns: columns) else {
            throw .notWholeBlocks(format: format, columns: columns)
        }
        guard let storage = ck_alloc_weights(max(rows * rowBytes, 1)) else {
            fatalError("out of memory for a \(rows)×\(columns) weight")
        }
        guard ck_quantize(format.rawValue, values, rows * columns, storage) == 0 else {
            ck_free_weights(storage, max(rows * rowBytes, 1))
            throw .cannotQuantize(format)
        }
        self.format = format
        self.rows = rows
        self.columns = columns
        self.rowBytes = rowBytes
        self.bytes = UnsafeRawPointer(storage)
        self.owned = storage
        self.owner = nil
        self.packing = .rows
    }

    /// A copy of `source` in memory of its own on huge pages: weights read on every forward pass stream
    /// faster from there than from a file mapping's 4 KiB pages. `packed`: in the CPU's panels for its format.
    public convenience init(copying source: LinearWeight, packed: Bool = false) {
        self.init(stacking: [source], packed: packed)!
    }

    /// The rows of `parts` stacked into one weight (one product then computes them all), or nil when their
    /// formats or column counts differ. `packed`: in the CPU's panels for their format (`panels(for:)`).
    public init?(stacking parts: [LinearWeight], packed: Bool = false) {
        guard let first = parts.first,
              parts.allSatisfy({ $0.format == first.format && $0.columns == first.columns }) else { return nil }
        let rows = parts.reduce(0) { $0 + $1.rows }, columns = first.columns
        let packing = packed ? LinearWeight.panels(for: first.format) : .rows
        // Panels are built from rows: stacked rows first (in a temporary buffer when packing), then packed.
        let rowsBytes = max(rows * first.rowBytes, 1)
        guard let storage = ck_alloc_weights(max(LinearWeight.bytes(packing, rows: rows, columns: columns, rowBytes: first.rowBytes), 1)) else {
            fatalError("out of memory for a \(rows)×\(columns) weight")
        }
        let stackedRows = packing == .rows ? storage : UnsafeMutableRawPointer.allocate(byteCount: rowsBytes, alignment: 64)
        var offset = 0
        for part in parts {
            part.copyRows(0..<part.rows, into: stackedRows + offset)
            offset += part.rows * part.rowBytes
        }
        switch packing {
        case .rows: break
        case .bf16Panels:
            ck_bf16_pack(stackedRows.assumingMemoryBound(to: UInt16.self), columns, rows, columns,
                         storage.assumingMemoryBound(to: UInt16.self))
        case .q8Panels:
            let status = ck_q8_pack(stackedRows, first.rowBytes, rows, columns, storage.assumingMemoryBound(to: UInt8.self))
            precondition(status == 0, "Q8_0 rows are whole blocks by construction")
        }
        if packing != .rows { stackedRows.deallocate() }
        format = first.format
        self.rows = rows
        self.columns = columns
        rowBytes = first.rowBytes
        bytes = UnsafeRawPointer(storage)
        owned = storage
        owner = nil
        self.packing = packing
    }

    deinit { if let owned { ck_free_weights(owned, max(byteCount, 1)) } }

    private static func bytes(_ packing: Packing, rows: Int, columns: Int, rowBytes: Int) -> Int {
        switch packing {
        case .rows: rows * rowBytes
        case .bf16Panels: ck_bf16_panels_bytes(rows, columns)
        case .q8Panels: ck_q8_panels_bytes(rows, columns)
        }
    }

    /// Rows `range` in the stored format, row after row (`rowBytes` each), into `out`.
    private func copyRows(_ range: Range<Int>, into out: UnsafeMutableRawPointer) {
        switch packing {
        case .rows:
            out.copyMemory(from: bytes + range.lowerBound * rowBytes, byteCount: range.count * rowBytes)
        case .bf16Panels:
            ck_bf16_unpack(bytes.assumingMemoryBound(to: UInt16.self), rows, columns, range.lowerBound, range.count,
                           out.assumingMemoryBound(to: UInt16.self))
        case .q8Panels:
            let status = ck_q8_unpack(bytes.assumingMemoryBound(to: UInt8.self), rows, columns, range.lowerBound, range.count, out)
            precondition(status == 0, "Q8_0 rows are whole blocks by construction")
        }
    }

    /// Whether the bytes are borrowed (from a mapping) rather than owned.
    public var isBorrowed: Bool { owned == nil }

    /// Whether `linear(m:bf16Rows:…)` multiplies this weight: bf16 panels, whose input is rounded to bf16 anyway.
    public var acceptsBF16Rows: Bool { packing == .bf16Panels && columns % 2 == 0 }

    /// Bytes the weight occupies.
    public var byteCount: Int { LinearWeight.bytes(packing, rows: rows, columns: columns, rowBytes: rowBytes) }

    /// Rows `range` as f32 into `out` (range.count × columns).
    public func dequantize(rows range: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        if packing == .q8Panels {
            let status = ck_q8_dequantize(bytes.assumingMemoryBound(to: UInt8.self), rows, columns, range.lowerBound, range.count, out)
            precondition(status == 0, "Q8_0 rows are whole blocks by construction")
            return
        }
        if packing != .rows {
            let values = UnsafeMutableRawPointer.allocate(byteCount: max(range.count * rowBytes, 1), alignment: 64)
            defer { values.deallocate() }
            copyRows(range, into: values)
            let status = ck_dequantize(format.rawValue, values, range.count * columns, out)
            precondition(status == 0, "rows are whole blocks by construction")
            return
        }
        if format == .f32 {
            out.update(from: (bytes + range.lowerBound * rowBytes).assumingMemoryBound(to: Float.self),
                       count: range.count * columns)
            return
        }
        let status = ck_dequantize(format.rawValue, bytes + range.lowerBound * rowBytes, range.count * columns, out)
        precondition(status == 0, "rows are whole blocks by construction")
    }

    /// All values as f32, row-major.
    public func dequantized() -> [Float] {
        [Float](unsafeUninitializedCapacity: rows * columns) { buffer, count in
            dequantize(rows: 0..<rows, into: buffer.baseAddress!)
            count = rows * columns
        }
    }
}

/// A Linear layer, C (m×n) = A (m×k) · Wᵀ for a weight of any format. Few rows take the skinny kernel (which
/// reads W once, dequantizing tiles in cache); batches take BLAS, on W itself for F32 and otherwise on
/// dequantized column blocks, whose conversion costs n·k against the block's m·n·k multiply-adds. With
/// `threads` > 1 the weight's rows are split into ranges computed at once.
public func linear(m: Int, a: UnsafePointer<Float>, lda: Int, weight: LinearWeight,
                   c: UnsafeMutablePointer<Float>, ldc: Int, threads: Int = 1) {
    let n = weight.rows, k = weight.columns
    guard m > 0, n > 0 else { return }
    if weight.format == .f32 {
        return linear(m: m, n: n, k: k, a: a, lda: lda, w: weight.bytes.assumingMemoryBound(to: Float.self),
                      ldw: k, c: c, ldc: ldc, threads: threads)
    }
    nonisolated(unsafe) let a = a, c = c
    // Batches on Q8_0 panels without VNNI: AVX2's 16-bit products are no faster than f32 FMAs, so they win only
    // where the weight's stream bounds the product (few rows); batches multiply dequantized blocks with BLAS.
    let batchOnAVX2Panels = weight.packing == .q8Panels && m > skinnyGemmMaxRows
        && ck_cpu_features() & UInt32(CK_ISA_AVX512_VNNI) == 0
    if weight.packing != .rows && !batchOnAVX2Panels {
        let packing = weight.packing
        weight.splitPanels(n, threads: threads) { first, cols, panel in
            let status = packing == .bf16Panels
                ? ck_bf16_gemm(m, k, a, lda, panel.assumingMemoryBound(to: UInt16.self), cols, c + first, ldc)
                : ck_q8_gemm(m, k, a, lda, panel.assumingMemoryBound(to: UInt8.self), cols, c + first, ldc)
            precondition(status == 0, "out of memory in the low-precision kernel")
        }
        return
    }
    splitColumns(n: n, parts: threads) { start, count in
        if m <= skinnyGemmMaxRows {  // rows, not panels: panels take few rows above
            let status = ck_skinny_linear(weight.format.rawValue, m, count, k, a, lda,
                                          weight.bytes + start * weight.rowBytes, weight.rowBytes, c + start, ldc)
            precondition(status == 0, "out of memory in the skinny kernel")
        } else {
            dequantizedProduct(m: m, a: a, lda: lda, weight: weight, rows: start..<(start + count), c: c + start, ldc: ldc)
        }
    }
}

/// C (m × n) = A · Wᵀ for A already in bf16 (rows of `lda` values, as `StackedLinear.applyGELUGate` writes them)
/// and W held as bf16 panels (`acceptsBF16Rows`): the same products as `linear` on the f32 values of A, without
/// rounding a copy of it. (m + 15) / 16 · 16 rows of A must be readable (whole AMX tiles; the extra rows' results
/// are not stored); k and lda even.
public func linear(m: Int, bf16Rows a: UnsafePointer<UInt16>, lda: Int, weight: LinearWeight,
                   c: UnsafeMutablePointer<Float>, ldc: Int, threads: Int = 1) {
    precondition(weight.acceptsBF16Rows, "bf16 rows multiply bf16 panels only")
    let n = weight.rows, k = weight.columns
    guard m > 0, n > 0 else { return }
    nonisolated(unsafe) let a = a, c = c
    weight.splitPanels(n, threads: threads) { first, cols, panel in
        let status = ck_bf16_rows_gemm_isa(ck_cpu_features(), m, k, a, lda, panel.assumingMemoryBound(to: UInt16.self), cols,
                                           c + first, ldc)
        precondition(status == 0, "bf16 rows of odd width")
    }
}

extension LinearWeight {
    /// A product over panel-packed weights split across `threads` in whole panels of 16 output columns:
    /// `body(first column, columns, its first panel)` for each core's share of the first `n` columns.
    func splitPanels(_ n: Int, threads: Int, _ body: @Sendable (_ first: Int, _ columns: Int, _ panel: UnsafeRawPointer) -> Void) {
        let panelBytes = packing == .bf16Panels ? ck_bf16_panels_bytes(16, columns) : ck_q8_panels_bytes(16, columns)
        nonisolated(unsafe) let base = bytes
        splitColumns(n: (n + 15) / 16, parts: threads, minimum: 4) { start, count in
            body(16 * start, min(n - 16 * start, 16 * count), base + start * panelBytes)
        }
    }
}

/// C (m × rows.count) = A · W[rows]ᵀ through dequantized column blocks of about 4 MiB of f32: large enough that
/// BLAS's per-call packing of A stays small.
private func dequantizedProduct(m: Int, a: UnsafePointer<Float>, lda: Int, weight: LinearWeight, rows: Range<Int>,
                                c: UnsafeMutablePointer<Float>, ldc: Int) {
    let k = weight.columns
    let block = min(rows.count, max(64, (1 << 20) / k))
    let tile = UnsafeMutablePointer<Float>.allocate(capacity: block * k)
    defer { tile.deallocate() }
    for start in stride(from: rows.lowerBound, to: rows.upperBound, by: block) {
        let count = min(block, rows.upperBound - start)
        weight.dequantize(rows: start..<(start + count), into: tile)
        gemmTransposedB(m: m, n: count, k: k, a: a, lda: lda, w: tile, ldw: k, c: c + (start - rows.lowerBound), ldc: ldc)
    }
}

/// Several Linear layers on the same input whose outputs sit side by side in one row (Q|K|V, gate|up):
/// stacked into one weight when their formats agree, so the input is read once and a batch makes one GEMM.
public struct StackedLinear: Sendable {
    /// Output columns of each part, in order.
    public let widths: [Int]
    private let stacked: LinearWeight?
    private let parts: [LinearWeight]

    /// Stacks `parts` (a copy of their bytes); where formats differ, each run of neighbouring parts in one format
    /// is stacked on its own (int8's Q|K in Q8_0 beside V in bf16: two products, not three).
    /// `packed`: in the CPU's panels for native low-precision products.
    public init(_ parts: [LinearWeight], packed: Bool = false) {
        widths = parts.map(\.rows)
        var runs: [[LinearWeight]] = []
        for part in parts {
            if let last = runs.last?.last, last.format == part.format, last.columns == part.columns {
                runs[runs.count - 1].append(part)
            } else {
                runs.append([part])
            }
        }
        // A run's parts agree in format and columns, which is all stacking asks.
        let groups = runs.map { LinearWeight(stacking: $0, packed: packed)! }
        stacked = groups.count == 1 ? groups[0] : nil
        self.parts = groups.count == 1 ? [] : groups
    }

    /// All output columns.
    public var width: Int { widths.reduce(0, +) }
    /// The weights as stored (one stacked weight, or one per run of a format).
    public var weights: [LinearWeight] { stacked.map { [$0] } ?? parts }

    /// Gemma's gated MLP middle in one pass where the CPU allows it: c (m × widths[0], bf16) = bf16(gelu_tanh(a · W₁ᵀ)
    /// · (a · W₂ᵀ)) for a gate|up stack of two equal parts held as bf16 panels on a CPU with AMX
    /// (`ck_bf16_gelu_gate_fusable`): the gate and up values stay in the tiles instead of going to memory and back,
    /// and the result is written as the bf16 input of the down product (`linear(m:bf16Rows:…)`), which would
    /// otherwise round an f32 copy of it. Returns false, having written nothing, where it does not apply; the
    /// caller then runs `apply` and the separate activation pass.
    public func applyGELUGate(m: Int, a: UnsafePointer<Float>, lda: Int, c: UnsafeMutablePointer<UInt16>, ldc: Int,
                              threads: Int = 1) -> Bool {
        guard let stacked, stacked.packing == .bf16Panels, widths.count == 2, widths[0] == widths[1],
              ck_bf16_gelu_gate_fusable(ck_cpu_features(), m, stacked.columns, widths[0]) != 0 else { return false }
        let k = stacked.columns, gatePanels = widths[0] / 16
        nonisolated(unsafe) let a = a, c = c
        // Threads split whole gate panels; each takes the up panels that go with them.
        stacked.splitPanels(widths[0], threads: threads) { first, cols, panel in
            let status = ck_bf16_gelu_gate_gemm_isa(ck_cpu_features(), m, k, a, lda, panel.assumingMemoryBound(to: UInt16.self),
                                                    gatePanels, cols, c + first, ldc)
            precondition(status == 0, "out of memory in the gated bf16 product")
        }
        return true
    }

    /// c (m × width, row stride ldc) = a · [W₁; W₂; …]ᵀ.
    public func apply(m: Int, a: UnsafePointer<Float>, lda: Int, c: UnsafeMutablePointer<Float>, ldc: Int, threads: Int = 1) {
        if let stacked { return linear(m: m, a: a, lda: lda, weight: stacked, c: c, ldc: ldc, threads: threads) }
        var column = 0
        for part in parts {
            linear(m: m, a: a, lda: lda, weight: part, c: c + column, ldc: ldc, threads: threads)
            column += part.rows
        }
    }
}
