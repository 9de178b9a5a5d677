// Linear layers on bf16 weights with bf16 arithmetic: C (m × n) = bf16(A) · Wᵀ, products of bf16 pairs summed
// in f32 — what PyTorch's bf16 autocast and OpenVINO's bf16 mode compute. On AVX512-BF16 one vdpbf16ps does
// 32 multiply-adds where an f32 FMA does 16, and the weights stream at half the bytes of f32.
//
// Weights are packed once, at load, in panels of 16 output rows: panel q holds, for each pair p of input
// columns, the 16 rows' (W[r][2p], W[r][2p + 1]) side by side — one 64-byte vector, exactly the operand
// vdpbf16ps takes, so the kernel loads weights contiguously and broadcasts one 32-bit pair of A per row.
// Rows past n and the column past an odd k are zeros.
#include "ckernels.h"
#include <stdlib.h>
#include <string.h>

#include "dispatch.h"

#define PANEL 16
#define MIN(a, b) ((a) < (b) ? (a) : (b))

static long pairs_of(long k) { return (k + 1) / 2; }

long ck_bf16_panels_bytes(long n, long k) { return (n + PANEL - 1) / PANEL * pairs_of(k) * PANEL * 2 * 2; }

void ck_bf16_pack(const uint16_t *rows, long row_stride, long n, long k, uint16_t *panels) {
    long kp = pairs_of(k), panel_count = (n + PANEL - 1) / PANEL;
    for (long q = 0; q < panel_count; q++) {
        uint16_t *dst = panels + q * kp * PANEL * 2;
        for (long p = 0; p < kp; p++) {
            for (long l = 0; l < PANEL; l++) {
                long r = q * PANEL + l;
                for (long h = 0; h < 2; h++) {
                    long col = 2 * p + h;
                    dst[(p * PANEL + l) * 2 + h] = (r < n && col < k) ? rows[r * row_stride + col] : 0;
                }
            }
        }
    }
}

void ck_bf16_unpack(const uint16_t *panels, long n, long k, long first_row, long count, uint16_t *rows) {
    long kp = pairs_of(k);
    for (long r = first_row; r < first_row + count && r < n; r++) {
        const uint16_t *src = panels + (r / PANEL) * kp * PANEL * 2;
        long l = r % PANEL;
        for (long col = 0; col < k; col++) rows[(r - first_row) * k + col] = src[((col / 2) * PANEL + l) * 2 + col % 2];
    }
}

// A's rows rounded to bf16 (to nearest even, as vcvtne2ps2bf16 does) and zero-padded to whole pairs.
static void round_rows(long m, long k, const float *a, long lda, uint16_t *out, long ld) {
    for (long i = 0; i < m; i++) {
        for (long p = 0; p < k; p++) out[i * ld + p] = ck_float_to_bf16(a[i * lda + p]);
        for (long p = k; p < ld; p++) out[i * ld + p] = 0;
    }
}

static inline float bf16_value(uint16_t b) {
    union { uint32_t i; float f; } u = {.i = (uint32_t)b << 16};
    return u.f;
}

// Any CPU: the same products (bf16 values are exact in f32) with f32 FMAs, 16 output columns at a time so
// the loop vectorizes.
CLONES static void gemm_portable(long m, long kp, const uint16_t *a, long ld, const uint16_t *panels, long cols,
                                 float *c, long ldc) {
    long panel_count = (cols + PANEL - 1) / PANEL;
    for (long i = 0; i < m; i++) {
        for (long q = 0; q < panel_count; q++) {
            const uint16_t *w = panels + q * kp * PANEL * 2;
            float acc[PANEL] = {0};
            for (long p = 0; p < kp; p++) {
                float x0 = bf16_value(a[i * ld + 2 * p]), x1 = bf16_value(a[i * ld + 2 * p + 1]);
                for (long l = 0; l < PANEL; l++) {
                    acc[l] += x0 * bf16_value(w[(p * PANEL + l) * 2]) + x1 * bf16_value(w[(p * PANEL + l) * 2 + 1]);
                }
            }
            long valid = MIN(PANEL, cols - q * PANEL);
            for (long l = 0; l < valid; l++) c[i * ldc + q * PANEL + l] = acc[l];
        }
    }
}

#if HAVE_AVX512_PATH
#include <immintrin.h>
#define TARGET_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))

// MR rows of A × NP panels (16 columns each): MR·NP accumulators (at most 24) + NP weight vectors + one
// broadcast pair fit the 32 zmm registers; NP + MR loads per MR·NP vdpbf16ps.
TARGET_BF16 static inline __attribute__((always_inline)) void tile(const int MR, const int NP, long kp,
                                                                   const uint32_t *a, long ld2, const uint16_t *b,
                                                                   long panel_stride, float *c, long ldc, long cols) {
    __m512 acc[8][3];
#pragma unroll
    for (int i = 0; i < MR; i++)
#pragma unroll
        for (int j = 0; j < NP; j++) acc[i][j] = _mm512_setzero_ps();
    for (long p = 0; p < kp; p++) {
        __m512bh w[3];
#pragma unroll
        for (int j = 0; j < NP; j++) w[j] = (__m512bh)_mm512_loadu_si512(b + j * panel_stride + p * PANEL * 2);
#pragma unroll
        for (int i = 0; i < MR; i++) {
            __m512bh x = (__m512bh)_mm512_set1_epi32((int)a[i * ld2 + p]);
#pragma unroll
            for (int j = 0; j < NP; j++) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], x, w[j]);
        }
    }
#pragma unroll
    for (int i = 0; i < MR; i++) {
#pragma unroll
        for (int j = 0; j < NP; j++) {
            long left = cols - PANEL * j;
            float *dst = c + i * ldc + PANEL * j;
            if (left >= PANEL) _mm512_storeu_ps(dst, acc[i][j]);
            else if (left > 0) _mm512_mask_storeu_ps(dst, (__mmask16)((1u << left) - 1), acc[i][j]);
        }
    }
}

#define TILE_CASE(MR)                                                                  \
    case MR:                                                                           \
        if (np == 3) tile(MR, 3, kp, a, ld2, b, panel_stride, c, ldc, cols);            \
        else if (np == 2) tile(MR, 2, kp, a, ld2, b, panel_stride, c, ldc, cols);       \
        else tile(MR, 1, kp, a, ld2, b, panel_stride, c, ldc, cols);                    \
        break;

TARGET_BF16 static void tile_dispatch(int mr, int np, long kp, const uint32_t *a, long ld2, const uint16_t *b,
                                      long panel_stride, float *c, long ldc, long cols) {
    switch (mr) {
        TILE_CASE(1) TILE_CASE(2) TILE_CASE(3) TILE_CASE(4) TILE_CASE(5) TILE_CASE(6) TILE_CASE(7) TILE_CASE(8)
    }
}

TARGET_BF16 static void round_rows_avx512(long m, long k, const float *a, long lda, uint16_t *out, long ld) {
    for (long i = 0; i < m; i++) {
        const float *src = a + i * lda;
        uint16_t *dst = out + i * ld;
        long p = 0;
        for (; p + 32 <= k; p += 32) {
            __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + p + 16), _mm512_loadu_ps(src + p));
            _mm512_storeu_si512(dst + p, (__m512i)v);
        }
        for (; p < k; p++) dst[p] = ck_float_to_bf16(src[p]);
        for (; p < ld; p++) dst[p] = 0;
    }
}

// Blocks of up to 128 rows of A (256 KiB of bf16 at k = 1,024: it stays in L2 while every 48-column slice of
// W passes over it); within a block, each slice of W meets 8 rows at a time.
TARGET_BF16 static void gemm_avx512_bf16(long m, long kp, const uint16_t *a, long ld, const uint16_t *panels,
                                         long cols, float *c, long ldc) {
    long panel_count = (cols + PANEL - 1) / PANEL, panel_stride = kp * PANEL * 2;
    for (long i0 = 0; i0 < m; i0 += 128) {
        long rows = MIN(128, m - i0);
        for (long q = 0; q < panel_count; q += 3) {
            int np = (int)MIN(3, panel_count - q);
            for (long i = i0; i < i0 + rows; i += 8) {
                int mr = (int)MIN(8, i0 + rows - i);
                tile_dispatch(mr, np, kp, (const uint32_t *)(a + i * ld), ld / 2, panels + q * panel_stride, panel_stride,
                              c + i * ldc + q * PANEL, ldc, cols - q * PANEL);
            }
        }
    }
}
#endif

int ck_bf16_gemm_isa(uint32_t isa, long m, long k, const float *a, long lda, const uint16_t *panels, long cols,
                     float *c, long ldc) {
    if (m <= 0 || cols <= 0) return 0;
    long kp = pairs_of(k), ld = 2 * kp;
    uint16_t *rounded = malloc((size_t)(m * ld) * sizeof(uint16_t));
    if (!rounded) return -2;
#if HAVE_AVX512_PATH
    if (isa & CK_ISA_AVX512_BF16) {
        round_rows_avx512(m, k, a, lda, rounded, ld);
        gemm_avx512_bf16(m, kp, rounded, ld, panels, cols, c, ldc);
        free(rounded);
        return 0;
    }
#endif
    round_rows(m, k, a, lda, rounded, ld);
    gemm_portable(m, kp, rounded, ld, panels, cols, c, ldc);
    free(rounded);
    return 0;
}

int ck_bf16_gemm(long m, long k, const float *a, long lda, const uint16_t *panels, long cols, float *c, long ldc) {
    return ck_bf16_gemm_isa(ck_cpu_features(), m, k, a, lda, panels, cols, c, ldc);
}
