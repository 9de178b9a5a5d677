// Inline pieces of the elementwise kernels, shared by the C files of this module: each is inlined into the
// ISA clones of its callers, so the loops around it vectorize there.
#ifndef GEMMA_CKERNELS_ELEMENTWISE_H
#define GEMMA_CKERNELS_ELEMENTWISE_H
#include <math.h>
#include <stdint.h>

// exp(x) for the whole float range, Cephes' polynomial on x - n ln2 (about 1 ulp), written branch-free so
// that the loops around it vectorize.
static inline float exp_approx(float x) {
    x = fminf(fmaxf(x, -87.33654f), 88.37626f);
    float n = floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    // n in [-126, 127]: a normal power of two; scaling in two halves keeps n = -126 exact.
    int32_t e = (int32_t)n;
    union { float f; int32_t i; } a = {.i = ((e >> 1) + 127) << 23}, b = {.i = ((e - (e >> 1)) + 127) << 23};
    return p * a.f * b.f;
}

// gelu_tanh(x) · up, the gated MLP's middle: 0.5 x (1 + tanh(u)) = x / (1 + exp(−2u)), u = √(2/π)(x + 0.044715 x³).
// One definition for the separate pass (ck_gelu_tanh_gate) and the AMX product's epilogue, so both give the same bits.
static inline __attribute__((always_inline)) float gelu_tanh_gate_value(float x, float up) {
    float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
    return x / (1.0f + exp_approx(-2.0f * u)) * up;
}

// 1 / sqrt(mean(v²) + eps), RMSNorm's factor for one row: inlined into each ISA clone, so it vectorizes there.
static inline __attribute__((always_inline)) float inverse_rms(const float *v, long dim, float eps) {
    float sum = 0.0f;
    for (long i = 0; i < dim; i++) {
#pragma clang fp reassociate(on)
        sum += v[i] * v[i];
    }
    return 1.0f / sqrtf(sum / (float)dim + eps);
}

#endif
