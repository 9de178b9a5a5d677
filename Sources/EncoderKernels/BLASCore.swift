import CBLAS
import CKernels
import Foundation

/// Which kernels OpenBLAS runs. Debian's OpenBLAS (DYNAMIC_ARCH) picks them once, as the library loads, from
/// the CPU's family and model numbers; a CPU it does not know — a cloud VM reporting a generic "Intel(R) Xeon(R)
/// Processor" model, as on the AMX machine of 2026-12-06 — gets its generic Prescott (SSE3) kernels, and f32
/// products run at a quarter of their speed (EmbeddingGemma 126 against 523 tokens/s there). OPENBLAS_CORETYPE,
/// read at that same moment, overrides the choice, so it has to be in the environment before the process starts.
public enum BLASCore {
    /// The kernels OpenBLAS chose ("SkylakeX", "Haswell", "Prescott", …).
    public static var current: String { openblas_get_corename().map { String(cString: $0) } ?? "unknown" }

    /// The OPENBLAS_CORETYPE this CPU should have when OpenBLAS fell back to its generic kernels and nobody
    /// chose for it: SkylakeX with AVX-512 (F, BW, VL, DQ), Haswell with AVX2 + FMA; nil otherwise.
    public static var recommended: String? {
        guard current == "Prescott", ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] == nil else { return nil }
        let detected = ck_cpu_features_detected()
        if detected & UInt32(CK_ISA_AVX512) != 0 { return "SkylakeX" }
        if detected & UInt32(CK_ISA_AVX2) != 0 { return "Haswell" }
        return nil
    }
}
