#include "ckernels.h"
#include <math.h>
#include <stdint.h>

#if defined(__x86_64__) && defined(__linux__)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

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

CLONES void ck_rms_norm(const float *x, long rows, long dim, const float *scale, float eps, float *out) {
    for (long r = 0; r < rows; r++) {
        const float *src = x + r * dim;
        float *dst = out + r * dim;
        float sum = 0.0f;
        for (long i = 0; i < dim; i++) {
#pragma clang fp reassociate(on)
            sum += src[i] * src[i];
        }
        float inv = 1.0f / sqrtf(sum / (float)dim + eps);
        for (long i = 0; i < dim; i++) dst[i] = src[i] * inv * scale[i];
    }
}

typedef float v16 __attribute__((ext_vector_type(16)));
typedef float v16u __attribute__((ext_vector_type(16), aligned(4)));
// A macro, not a function: a 64-byte vector may not cross a call boundary in the non-AVX-512 clones.
#define LOAD16(p) (*(const v16u *)(p))

// Micro-kernel of 2 activation rows x 8 weight rows: 16 vector accumulators, 10 loads per 16 FMAs. Rows
// past the end of a block repeat the block's first row and are computed but not stored.
CLONES void ck_skinny_gemm_nt(long m, long n, long k, const float *a, long lda, const float *w, long ldw,
                              float *c, long ldc) {
    long k16 = k & ~15L;
    for (long j = 0; j < n; j += 8) {
        long nj = n - j < 8 ? n - j : 8;
        const float *wr[8];
        for (int q = 0; q < 8; q++) wr[q] = w + (j + (q < nj ? q : 0)) * ldw;
        for (long i = 0; i < m; i += 2) {
            long mi = m - i < 2 ? m - i : 2;
            const float *a0 = a + i * lda, *a1 = a0 + (mi > 1) * lda;
            v16 s0[8] = {0}, s1[8] = {0};
            for (long p = 0; p < k16; p += 16) {
                v16 x0 = LOAD16(a0 + p), x1 = LOAD16(a1 + p);
#pragma unroll
                for (int q = 0; q < 8; q++) {
                    v16 y = LOAD16(wr[q] + p);
                    s0[q] += x0 * y;
                    s1[q] += x1 * y;
                }
            }
            for (long jj = 0; jj < nj; jj++) {
                float t0 = 0.0f, t1 = 0.0f;
                for (int q = 0; q < 16; q++) {
                    t0 += s0[jj][q];
                    t1 += s1[jj][q];
                }
                for (long p = k16; p < k; p++) {
                    t0 += a0[p] * wr[jj][p];
                    t1 += a1[p] * wr[jj][p];
                }
                c[i * ldc + j + jj] = t0;
                if (mi > 1) c[(i + 1) * ldc + j + jj] = t1;
            }
        }
    }
}
