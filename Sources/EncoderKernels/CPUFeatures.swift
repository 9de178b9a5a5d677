import CKernels

/// The CPU features the kernels use, and which product path each weight format takes on this CPU: what
/// `bench` prints next to every figure, since the same binary runs different code on different machines.
public enum CPUFeatures {
    private static let names: [(UInt32, String)] = [(UInt32(CK_ISA_AVX2), "avx2"), (UInt32(CK_ISA_AVX512), "avx512"),
                                                    (UInt32(CK_ISA_AVX512_VNNI), "avx512_vnni"), (UInt32(CK_ISA_AVX512_BF16), "avx512_bf16"),
                                                    (UInt32(CK_ISA_AMX_BF16), "amx_bf16")]

    /// What the CPU has.
    public static var detected: [String] { names.filter { ck_cpu_features_detected() & $0.0 != 0 }.map(\.1) }
    /// What the kernels use (the detected features under GEMMA_ENCODER_MAX_ISA).
    public static var used: [String] { names.filter { ck_cpu_features() & $0.0 != 0 }.map(\.1) }

    /// The product path of Linear layers stored in `format`, few rows and batches.
    public static func productPath(_ format: WeightFormat) -> String {
        let vector = ck_cpu_features() & UInt32(CK_ISA_AVX512) != 0 ? "avx512" : ck_cpu_features() & UInt32(CK_ISA_AVX2) != 0 ? "avx2" : "baseline"
        switch format {
        case .f32: return "f32: skinny \(vector) (≤ \(skinnyGemmMaxRows) rows), OpenBLAS sgemm (\(BLASCore.current) kernels)"
        case .bf16 where LinearWeight.panels(for: .bf16) == .bf16Panels:
            let units = ck_cpu_features() & UInt32(CK_ISA_AMX_BF16) != 0
                ? "amx_bf16 tdpbf16ps tiles (k a multiple of 32, ≥ 2 rows), else avx512_bf16 vdpbf16ps"
                : "avx512_bf16 vdpbf16ps"
            return "bf16: \(units) on packed panels, activations rounded to bf16"
        case .q8_0 where LinearWeight.panels(for: .q8_0) == .q8Panels:
            if ck_cpu_features() & UInt32(CK_ISA_AVX512_VNNI) != 0 {
                return "int8: avx512_vnni vpdpbusd on packed Q8_0 panels, activations quantized per 32 values to 16 bits (two byte limbs)"
            }
            return "int8: avx2 vpmaddwd on packed Q8_0 panels, activations quantized per 32 values to 16 bits (≤ \(skinnyGemmMaxRows) rows); "
                + "OpenBLAS sgemm on dequantized panels (batches)"
        default: return "\(format): f32 \(vector) on weights converted tile by tile"
        }
    }
}
