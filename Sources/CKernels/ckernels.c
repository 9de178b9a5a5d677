#include "ckernels.h"
#include <math.h>
#include <stdint.h>

#include "dispatch.h"

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

CLONES void ck_gelu_tanh_gate(float *restrict gate, const float *restrict up, long n) {
    // 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)).
    for (long i = 0; i < n; i++) {
        float x = gate[i];
        float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
        gate[i] = x / (1.0f + exp_approx(-2.0f * u)) * up[i];
    }
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

CLONES void ck_residual_rms_norm(float *x, const float *branch, long rows, long dim, const float *branch_scale,
                                 const float *next_scale, float eps, float *normed) {
    // Per row, while it is in cache: the branch's own norm (when it has one), the residual join, and the next
    // norm — where three passes over the whole batch would stream it through memory three times.
    for (long r = 0; r < rows; r++) {
        const float *b = branch + r * dim;
        float *xr = x + r * dim;
        if (branch_scale) {
            float inv = inverse_rms(b, dim, eps);
            for (long i = 0; i < dim; i++) xr[i] += b[i] * inv * branch_scale[i];
        } else {
            for (long i = 0; i < dim; i++) xr[i] += b[i];
        }
        if (next_scale) {
            float inv = inverse_rms(xr, dim, eps);
            float *out = normed + r * dim;
            for (long i = 0; i < dim; i++) out[i] = xr[i] * inv * next_scale[i];
        }
    }
}

CLONES void ck_gelu_tanh_gate_backward(const float *restrict gate, const float *restrict up, const float *restrict dh,
                                       float *restrict dgate, float *restrict dup, long n) {
    // With s = 1 / (1 + exp(-2u)) = (1 + tanh u) / 2: 1 - tanh² u = 4 s (1 - s), so one exp serves the value
    // and the derivative, and the loop vectorizes (libm's tanhf does not).
    for (long i = 0; i < n; i++) {
        float g = gate[i], d = dh[i];
        float u = 0.7978845608028654f * (g + 0.044715f * g * g * g);
        float s = 1.0f / (1.0f + exp_approx(-2.0f * u));
        dup[i] = d * g * s;
        dgate[i] = d * up[i] * (s + 2.0f * g * s * (1.0f - s) * 0.7978845608028654f * (1.0f + 0.134145f * g * g));
    }
}

CLONES void ck_rms_norm(const float *x, long rows, long dim, const float *scale, float eps, float *out) {
    for (long r = 0; r < rows; r++) {
        const float *src = x + r * dim;
        float *dst = out + r * dim;
        float inv = inverse_rms(src, dim, eps);
        for (long i = 0; i < dim; i++) dst[i] = src[i] * inv * scale[i];
    }
}
