// Linear layers on 8-bit weights with integer products: C (m × n) = A · Wᵀ with W in Q8_0 blocks (32 values, one
// f16 scale) and A quantized per row and block of 32 to 16 bits (scale max|a| / 32767), so a block's dot product
// is exact in int32 and scaled once. Activations keep 16 bits on every path: with 8-bit activations (llama.cpp's
// Q8_0 × Q8_0) EmbeddingGemma's cosine to f32 fell from 0.99994 to 0.99990 (bench-512, AVX512-VNNI) — below the
// four nines int8 promises — while the weights' rounding alone stays above them.
//
// AVX512-VNNI multiplies bytes (vpdpbusd: 64 multiply-adds, unsigned by signed), so each 16-bit activation v is
// split into two byte limbs, v = 256 · (h − 128) + l with h = ⌊v / 256⌋ + 128 and l = v mod 256 (both 0 … 255),
// and each block takes two vpdpbusd chains: Σ v w = 256 · (Σ h w − 128 Σ w) + Σ l w, exact in int32 (at most
// 2^27 + 2^20). Weights are packed once, at load, in panels of 16 output rows; per block of 32 input columns a
// panel holds the 16 rows' f16 scales, their Σ w (int16), and then 8 groups of 4 columns × 16 rows (64 bytes
// each: the signed operand of one vpdpbusd). AVX2 CPUs multiply the same panels with vpmaddwd (gemm_avx2).
#include "ckernels.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch.h"

#define PANEL 16
#define QK 32
#define BLOCK_BYTES (PANEL * 2 + PANEL * 2 + PANEL * QK)  // scales, sums, values: 576 bytes per 16 × 32 values
#define MIN(a, b) ((a) < (b) ? (a) : (b))

long ck_q8_panels_bytes(long n, long k) { return (n + PANEL - 1) / PANEL * (k / QK) * BLOCK_BYTES; }

static inline uint16_t load16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }

// Where value c (0 ..< 32) of a panel's row l sits in its block: after the scales and sums, in group c / 4.
static inline long value_at(long l, long c) { return PANEL * 4 + (c / 4) * PANEL * 4 + l * 4 + c % 4; }

int ck_q8_pack(const void *rows, long row_bytes, long n, long k, uint8_t *panels) {
    if (k % QK) return -1;
    long blocks = k / QK, panel_count = (n + PANEL - 1) / PANEL;
    for (long q = 0; q < panel_count; q++) {
        for (long b = 0; b < blocks; b++) {
            uint8_t *dst = panels + (q * blocks + b) * BLOCK_BYTES;
            uint16_t *scales = (uint16_t *)dst;
            int16_t *sums = (int16_t *)(dst + PANEL * 2);
            for (long l = 0; l < PANEL; l++) {
                long r = q * PANEL + l;
                // A Q8_0 block: f16 scale, then 32 signed bytes. Rows past n are zero blocks.
                const uint8_t *src = r < n ? (const uint8_t *)rows + r * row_bytes + b * (2 + QK) : NULL;
                scales[l] = src ? load16(src) : 0;
                int sum = 0;
                for (long c = 0; c < QK; c++) {
                    int8_t v = src ? (int8_t)src[2 + c] : 0;
                    sum += v;
                    dst[value_at(l, c)] = (uint8_t)v;
                }
                sums[l] = (int16_t)sum;
            }
        }
    }
    return 0;
}

int ck_q8_unpack(const uint8_t *panels, long n, long k, long first_row, long count, void *rows) {
    if (k % QK) return -1;
    long blocks = k / QK;
    for (long r = first_row; r < first_row + count && r < n; r++) {
        long q = r / PANEL, l = r % PANEL;
        uint8_t *dst_row = (uint8_t *)rows + (r - first_row) * blocks * (2 + QK);
        for (long b = 0; b < blocks; b++) {
            const uint8_t *src = panels + (q * blocks + b) * BLOCK_BYTES;
            uint8_t *dst = dst_row + b * (2 + QK);
            memcpy(dst, src + l * 2, 2);
            for (long c = 0; c < QK; c++) dst[2 + c] = src[value_at(l, c)];
        }
    }
    return 0;
}

int ck_q8_dequantize(const uint8_t *panels, long n, long k, long first_row, long count, float *out) {
    if (k % QK) return -1;
    long blocks = k / QK;
    for (long r = first_row; r < first_row + count && r < n; r++) {
        long q = r / PANEL, l = r % PANEL;
        float *dst = out + (r - first_row) * k;
        for (long b = 0; b < blocks; b++, dst += QK) {
            const uint8_t *src = panels + (q * blocks + b) * BLOCK_BYTES;
            float d = ck_half_to_float(load16(src + l * 2));
            for (long c = 0; c < QK; c++) dst[c] = (int8_t)src[value_at(l, c)] * d;
        }
    }
    return 0;
}

// Rows of A quantized per block of 32: v = round(a / d) half away from zero, d = max|a| / 32767 in f32. `x16` (row
// i at i·k) gets v as int16, for AVX2's and the portable products; otherwise `limbs` gets VNNI's two bytes of v,
// row i's high limbs at 2i·k and its low limbs at (2i + 1)·k.
static void quantize_rows(long m, long k, const float *a, long lda, int16_t *x16, uint8_t *limbs, float *scales) {
    long blocks = k / QK;
    const float qmax = 32767.0f;
    for (long i = 0; i < m; i++) {
        for (long b = 0; b < blocks; b++) {
            const float *x = a + i * lda + b * QK;
            float amax = 0.0f;
            for (long c = 0; c < QK; c++) amax = fmaxf(amax, fabsf(x[c]));
            float d = amax / qmax, inv = d > 0 ? 1.0f / d : 0.0f;
            scales[i * blocks + b] = d;
            int32_t v[QK];
            for (long c = 0; c < QK; c++) {
                // Written so that it vectorizes (|x · inv| ≤ qmax up to the rounding of inv).
                float r = fminf(fmaxf(x[c] * inv, -qmax), qmax), t = truncf(r);
                if (fabsf(r - t) >= 0.5f) t += copysignf(1.0f, r);
                v[c] = (int32_t)t;
            }
            if (x16) {
                for (long c = 0; c < QK; c++) x16[i * k + b * QK + c] = (int16_t)v[c];
            } else {
                uint8_t *high = limbs + 2 * i * k + b * QK, *low = high + k;
                for (long c = 0; c < QK; c++) {
                    high[c] = (uint8_t)((v[c] >> 8) + 128);  // arithmetic shift: ⌊v / 256⌋, −128 … 127
                    low[c] = (uint8_t)(v[c] & 255);
                }
            }
        }
    }
}

// Any CPU: the same integer block sums in C.
static void gemm_portable(long m, long k, const int16_t *x16, const float *da, const uint8_t *panels, long cols,
                          float *c, long ldc) {
    long blocks = k / QK, panel_count = (cols + PANEL - 1) / PANEL;
    for (long i = 0; i < m; i++) {
        for (long q = 0; q < panel_count; q++) {
            float acc[PANEL] = {0};
            for (long b = 0; b < blocks; b++) {
                const uint8_t *blk = panels + (q * blocks + b) * BLOCK_BYTES;
                const int16_t *x = x16 + i * k + b * QK;
                for (long l = 0; l < PANEL; l++) {
                    int32_t s = 0;
                    for (long cc = 0; cc < QK; cc++) s += (int32_t)x[cc] * (int8_t)blk[value_at(l, cc)];
                    acc[l] += (float)s * (ck_half_to_float(load16(blk + l * 2)) * da[i * blocks + b]);
                }
            }
            long valid = MIN(PANEL, cols - q * PANEL);
            for (long l = 0; l < valid; l++) c[i * ldc + q * PANEL + l] = acc[l];
        }
    }
}

#if HAVE_AVX512_PATH
#include <immintrin.h>
#define TARGET_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")))

// MR rows × NP panels: 2·MR·NP int32 block sums (a high and a low limb per row) and MR·NP f32 accumulators (at
// most 12 + 6 zmm) + NP weight vectors + two broadcasts; NP + 2·MR loads per 2·MR·NP vpdpbusd. (One register per
// row and panel for both limbs — the high limbs' sum shifted by 8 before the low limbs' — measured 0.75-1× of
// this: each sum becomes one serial chain of 16 vpdpbusd, and 4 rows are needed to use the registers freed.)
TARGET_VNNI static inline __attribute__((always_inline)) void tile(const int MR, const int NP, long blocks, long k,
                                                                   const uint8_t *u, const float *da,
                                                                   const uint8_t *b, long panel_stride, float *c,
                                                                   long ldc, long cols) {
    __m512 acc[2][3];
#pragma unroll
    for (int i = 0; i < MR; i++)
#pragma unroll
        for (int j = 0; j < NP; j++) acc[i][j] = _mm512_setzero_ps();
    for (long blk = 0; blk < blocks; blk++) {
        __m512i high[2][3], low[2][3];
#pragma unroll
        for (int i = 0; i < MR; i++)
#pragma unroll
            for (int j = 0; j < NP; j++) high[i][j] = low[i][j] = _mm512_setzero_si512();
#pragma unroll
        for (int g = 0; g < 8; g++) {
            __m512i w[3];
#pragma unroll
            for (int j = 0; j < NP; j++) w[j] = _mm512_loadu_si512(b + j * panel_stride + blk * BLOCK_BYTES + PANEL * 4 + g * 64);
#pragma unroll
            for (int i = 0; i < MR; i++) {
                int32_t hq, lq;
                memcpy(&hq, u + 2 * i * k + blk * QK + g * 4, 4);
                memcpy(&lq, u + (2 * i + 1) * k + blk * QK + g * 4, 4);
                __m512i xh = _mm512_set1_epi32(hq), xl = _mm512_set1_epi32(lq);
#pragma unroll
                for (int j = 0; j < NP; j++) {
                    high[i][j] = _mm512_dpbusd_epi32(high[i][j], xh, w[j]);
                    low[i][j] = _mm512_dpbusd_epi32(low[i][j], xl, w[j]);
                }
            }
        }
#pragma unroll
        for (int j = 0; j < NP; j++) {
            const uint8_t *head = b + j * panel_stride + blk * BLOCK_BYTES;
            __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)head));
            __m512i offset = _mm512_slli_epi32(_mm512_cvtepi16_epi32(_mm256_loadu_si256((const __m256i *)(head + PANEL * 2))), 7);
#pragma unroll
            for (int i = 0; i < MR; i++) {
                __m512i sum = _mm512_add_epi32(_mm512_slli_epi32(_mm512_sub_epi32(high[i][j], offset), 8), low[i][j]);
                __m512 scale = _mm512_mul_ps(dw, _mm512_set1_ps(da[i * blocks + blk]));
                acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), scale, acc[i][j]);
            }
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

#define Q8_TILE_CASE(MR)                                                                        \
    case MR:                                                                                    \
        if (np == 3) tile(MR, 3, blocks, k, u, da, b, panel_stride, c, ldc, cols);              \
        else if (np == 2) tile(MR, 2, blocks, k, u, da, b, panel_stride, c, ldc, cols);         \
        else tile(MR, 1, blocks, k, u, da, b, panel_stride, c, ldc, cols);                      \
        break;

TARGET_VNNI static void tile_dispatch(int mr, int np, long blocks, long k, const uint8_t *u, const float *da,
                                      const uint8_t *b, long panel_stride, float *c, long ldc, long cols) {
    switch (mr) { Q8_TILE_CASE(1) Q8_TILE_CASE(2) }
}

// Rows in blocks of 128 (their limbs stay in L2 while every 48-column slice of W passes over them), 2 at a time.
TARGET_VNNI static void gemm_avx512_vnni(long m, long k, const uint8_t *u, const float *da, const uint8_t *panels,
                                         long cols, float *c, long ldc) {
    long blocks = k / QK, panel_count = (cols + PANEL - 1) / PANEL, panel_stride = blocks * BLOCK_BYTES;
    for (long i0 = 0; i0 < m; i0 += 128) {
        long rows = MIN(128, m - i0);
        for (long q = 0; q < panel_count; q += 3) {
            int np = (int)MIN(3, panel_count - q);
            for (long i = i0; i < i0 + rows; i += 2) {
                int mr = (int)MIN(2, i0 + rows - i);
                tile_dispatch(mr, np, blocks, k, u + 2 * i * k, da + i * blocks, panels + q * panel_stride, panel_stride,
                              c + i * ldc + q * PANEL, ldc, cols - q * PANEL);
            }
        }
    }
}
#endif

#if HAVE_AVX512_PATH
#define TARGET_AVX2_Q8 __attribute__((target("avx2,fma,f16c")))

// AVX2 has no 8-bit dot product that adds into int32 without saturating (vpmaddubsw's pairs of 255 · 127
// overflow int16), so the products are 16-bit: a group's 64 bytes (16 rows × 4 columns) are widened a quarter
// at a time (4 rows × 4 columns, 16 int16) and vpmaddwd multiplies them by the row's 4 activations, also
// int16, broadcast: 16 exact multiply-adds per instruction into pairs of int32 per weight row. At a block's
// end vphaddd adds each row's pair, which leaves the rows in the order 0 1 4 5 2 3 6 7 within each half
// panel; the scales are permuted to match and the results put back in order once, at the store. 32 products
// of 127 · 32767 sum exactly in int32.
TARGET_AVX2_Q8 static inline __attribute__((always_inline)) void tile_avx2(const int MR, long blocks, long k,
                                                                          const int16_t *x, const float *da,
                                                                          const uint8_t *b, float *c, long ldc,
                                                                          long cols) {
    const __m256i order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);  // its own inverse
    __m256 acc[3][2];
#pragma unroll
    for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    for (long blk = 0; blk < blocks; blk++) {
        const uint8_t *head = b + blk * BLOCK_BYTES;
        __m256i s[3][4];
#pragma unroll
        for (int i = 0; i < MR; i++)
#pragma unroll
            for (int q = 0; q < 4; q++) s[i][q] = _mm256_setzero_si256();
#pragma unroll
        for (int g = 0; g < 8; g++) {
            __m256i xb[3];
#pragma unroll
            for (int i = 0; i < MR; i++) {
                int64_t quad;
                memcpy(&quad, x + i * k + blk * QK + g * 4, 8);
                xb[i] = _mm256_set1_epi64x(quad);
            }
#pragma unroll
            for (int q = 0; q < 4; q++) {
                __m256i w = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(head + PANEL * 4 + g * 64 + q * 16)));
#pragma unroll
                for (int i = 0; i < MR; i++) s[i][q] = _mm256_add_epi32(s[i][q], _mm256_madd_epi16(w, xb[i]));
            }
        }
        __m256 dw0 = _mm256_permutevar8x32_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)head)), order);
        __m256 dw1 = _mm256_permutevar8x32_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(head + 16))), order);
#pragma unroll
        for (int i = 0; i < MR; i++) {
            __m256 d = _mm256_set1_ps(da[i * blocks + blk]);
            acc[i][0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_hadd_epi32(s[i][0], s[i][1])), _mm256_mul_ps(dw0, d), acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_hadd_epi32(s[i][2], s[i][3])), _mm256_mul_ps(dw1, d), acc[i][1]);
        }
    }
#pragma unroll
    for (int i = 0; i < MR; i++) {
        float out[PANEL];
        _mm256_storeu_ps(out, _mm256_permutevar8x32_ps(acc[i][0], order));
        _mm256_storeu_ps(out + 8, _mm256_permutevar8x32_ps(acc[i][1], order));
        memcpy(c + i * ldc, out, (size_t)MIN(cols, PANEL) * sizeof(float));
    }
}

TARGET_AVX2_Q8 static void tile_avx2_dispatch(int mr, long blocks, long k, const int16_t *x, const float *da,
                                              const uint8_t *b, float *c, long ldc, long cols) {
    if (mr == 3) tile_avx2(3, blocks, k, x, da, b, c, ldc, cols);
    else if (mr == 2) tile_avx2(2, blocks, k, x, da, b, c, ldc, cols);
    else tile_avx2(1, blocks, k, x, da, b, c, ldc, cols);
}

// Panel by panel (a panel's 16 rows × k stay in L1 while every row of A passes over them), rows of A in blocks
// of 128, quantized as they come (their int16 values stay in L2). `x`: room for 128 rows of k int16; `da`: for
// their scales.
TARGET_AVX2_Q8 static void gemm_avx2(long m, long k, const float *a, long lda, const uint8_t *panels, long cols,
                                     float *c, long ldc, int16_t *x, float *da) {
    long blocks = k / QK, panel_count = (cols + PANEL - 1) / PANEL, panel_stride = blocks * BLOCK_BYTES;
    for (long i0 = 0; i0 < m; i0 += 128) {
        long rows = MIN(128, m - i0);
        quantize_rows(rows, k, a + i0 * lda, lda, x, NULL, da);
        for (long q = 0; q < panel_count; q++) {
            for (long i = 0; i < rows; i += 3) {
                int mr = (int)MIN(3, rows - i);
                tile_avx2_dispatch(mr, blocks, k, x + i * k, da + i * blocks, panels + q * panel_stride,
                                   c + (i0 + i) * ldc + q * PANEL, ldc, cols - q * PANEL);
            }
        }
    }
}
#endif

int ck_q8_gemm_isa(uint32_t isa, long m, long k, const float *a, long lda, const uint8_t *panels, long cols,
                   float *c, long ldc) {
    if (k % QK) return -1;
    if (m <= 0 || cols <= 0) return 0;
#if HAVE_AVX512_PATH
    if ((isa & CK_ISA_AVX2) && !(isa & CK_ISA_AVX512_VNNI)) {
        long rows = MIN(128, m);
        int16_t *x = malloc((size_t)(rows * k) * sizeof(int16_t));
        float *dx = malloc((size_t)(rows * (k / QK)) * sizeof(float));
        if (x && dx) gemm_avx2(m, k, a, lda, panels, cols, c, ldc, x, dx);
        free(x);
        free(dx);
        return x && dx ? 0 : -2;
    }
#endif
    // Two bytes per activation either way: VNNI's two limbs or the portable path's int16.
    uint8_t *u = malloc((size_t)(2 * m * k));
    float *da = malloc((size_t)(m * (k / QK)) * sizeof(float));
    if (!u || !da) {
        free(u);
        free(da);
        return -2;
    }
#if HAVE_AVX512_PATH
    if (isa & CK_ISA_AVX512_VNNI) {
        quantize_rows(m, k, a, lda, NULL, u, da);
        gemm_avx512_vnni(m, k, u, da, panels, cols, c, ldc);
    } else
#endif
    {
        quantize_rows(m, k, a, lda, (int16_t *)u, NULL, da);
        gemm_portable(m, k, (const int16_t *)u, da, panels, cols, c, ldc);
    }
    free(u);
    free(da);
    return 0;
}

int ck_q8_gemm(long m, long k, const float *a, long lda, const uint8_t *panels, long cols, float *c, long ldc) {
    return ck_q8_gemm_isa(ck_cpu_features(), m, k, a, lda, panels, cols, c, ldc);
}
