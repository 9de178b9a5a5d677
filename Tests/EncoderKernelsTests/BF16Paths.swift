import CKernels

/// What the bf16 kernels' tests share: the value a float rounds to, and the paths to run.
enum BF16Testing {
    static func bf16(_ x: Float) -> Float { Float(bitPattern: UInt32(ck_float_to_bf16(x)) << 16) }

    /// The paths to test here: the portable one always, the AVX512-BF16 one and the AMX one where the CPU has them.
    static var paths: [UInt32] {
        let detected = ck_cpu_features_detected(), avx512 = UInt32(CK_ISA_AVX2 | CK_ISA_AVX512 | CK_ISA_AVX512_BF16)
        return [0] + (detected & UInt32(CK_ISA_AVX512_BF16) != 0 ? [avx512] : [])
            + (detected & UInt32(CK_ISA_AMX_BF16) != 0 ? [avx512 | UInt32(CK_ISA_AMX_BF16)] : [])
    }
}
