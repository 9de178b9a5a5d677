// Linear layers for a few activation rows (a short query): C = A · Wᵀ with W in PyTorch's (out × in) layout.
// With so few rows the cost is streaming W from memory once, so the kernels compute dot products straight
// from W's rows instead of packing W as BLAS would on every call.
#include "ckernels.h"
#include <stdlib.h>
#include <string.h>

#include "dispatch.h"

#define MIN(a, b) ((a) < (b) ? (a) : (b))

typedef float v8 __attribute__((ext_vector_type(8)));
typedef float v8u __attribute__((ext_vector_type(8), aligned(4)));
typedef float v16 __attribute__((ext_vector_type(16)));
typedef float v16u __attribute__((ext_vector_type(16), aligned(4)));
// Macros, not functions: a wide vector may not cross a call boundary in the clones without that width.
#define LOAD8(p) (*(const v8u *)(p))
#define LOAD16(p) (*(const v16u *)(p))
#define HSUM8(v) ((v)[0] + (v)[1] + (v)[2] + (v)[3] + (v)[4] + (v)[5] + (v)[6] + (v)[7])

#if HAVE_AVX512_PATH
// AVX-512: 2 activation rows x 8 weight rows, 16 zmm accumulators, 10 loads per 16 FMAs. Rows past the end
// of a block repeat the block's first row and are computed but not stored.
TARGET_AVX512 static void skinny_f32_avx512(long m, long n, long k, const float *a, long lda, const float *w,
                                            long ldw, float *c, long ldc, int accumulate) {
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
                float *c0 = c + i * ldc + j + jj;
                *c0 = accumulate ? *c0 + t0 : t0;
                if (mi > 1) c0[ldc] = accumulate ? c0[ldc] + t1 : t1;
            }
        }
    }
}
#endif

// AVX2 (and the baseline): 4 activation rows x 3 weight rows, 12 ymm accumulators + 3 weight vectors + 1
// activation vector = all 16 registers; 7 loads per 12 FMAs. Only 3 weight rows stream at a time, too few
// for the hardware prefetcher to keep up, so the next block's rows are prefetched by hand, a line at a time
// spread over all passes of the block (not only the first), so that memory stays busy while the later passes
// compute from L1 (`bench`'s query latency shows the difference). A last block of one or two activation rows
// (10 query tokens = 4 + 4 + 2) skips the padding rows: computing them cost a sixth of a short query's
// arithmetic, which is what bounds its latency.
//
// bf16 weights on CPUs without bf16 products (AVX2) take the same kernel, each group of 8 weights converted
// to f32 in registers as it is loaded, so W streams from memory at 2 bytes a weight instead of being
// dequantized into a tile first (a short query is bound by that stream). Q8_0 converted the same way costs more
// instructions than the stream it saves (an int8 → f32 conversion and a scale per 8 weights, redone for every 4
// activation rows); on AVX2 it is multiplied in 16-bit integers on packed panels instead (q8gemm.c), and only
// reaches the tile path below on CPUs without AVX2.
typedef unsigned short u16x8u __attribute__((ext_vector_type(8), aligned(2)));
typedef unsigned int u32x8 __attribute__((ext_vector_type(8)));
// bf16 → f32 is a 16-bit shift.
#define BF16X8(p) ((v8)(__builtin_convertvector(*(const u16x8u *)(p), u32x8) << 16))

// One group of 8 columns at p: the 2 x 3 or 4 x 3 multiply-adds with the weights in y0, y1, y2.
#define MULADD_2X3(p)                                      \
    {                                                      \
        v8 x0 = LOAD8(a0 + (p)), x1 = LOAD8(a1 + (p));     \
        s00 += x0 * y0; s01 += x0 * y1; s02 += x0 * y2;    \
        s10 += x1 * y0; s11 += x1 * y1; s12 += x1 * y2;    \
    }
#define MULADD_4X3(p)                                      \
    {                                                      \
        v8 x = LOAD8(a0 + (p));                            \
        s00 += x * y0; s01 += x * y1; s02 += x * y2;       \
        x = LOAD8(a1 + (p));                               \
        s10 += x * y0; s11 += x * y1; s12 += x * y2;       \
        x = LOAD8(a2 + (p));                               \
        s20 += x * y0; s21 += x * y1; s22 += x * y2;       \
        x = LOAD8(a3 + (p));                               \
        s30 += x * y0; s31 += x * y1; s32 += x * y2;       \
    }

// A kernel over W rows of `row_bytes` bytes (rows past the end of a block repeat an earlier row and are not
// stored). GROUPS(MULADD) runs MULADD for every group of 8 columns up to `kv`, setting y0..y2 first; the
// columns from kv on are added one at a time with WEIGHT(row, p). The next block's rows are prefetched over the
// CALLS prefetches GROUPS makes per pass.
#define SKINNY_AVX2_KERNEL(NAME, KV, CALLS, GROUPS, WEIGHT)                                                        \
    CLONES_NO_AVX512 static void NAME(long m, long n, long k, const float *a, long lda, const unsigned char *w,      \
                                      long row_bytes, float *c, long ldc, int accumulate) {                       \
        long kv = (KV);                                                                                            \
        for (long j = 0; j < n; j += 3) {                                                                          \
            long nj = MIN(n - j, 3);                                                                               \
            const unsigned char *w0 = w + j * row_bytes, *w1 = w + (j + (nj > 1)) * row_bytes,                     \
                                *w2 = w + (j + 2 * (nj > 2)) * row_bytes;                                          \
            const char *pf = (const char *)(w + MIN(j + 3, n) * row_bytes),                                        \
                       *pf_end = (const char *)(w + MIN(j + 6, n) * row_bytes);                                    \
            long passes = (m + 3) / 4, pf_step = ((pf_end - pf) / (passes * ((CALLS) + 1)) + 64) & ~63L;         \
            for (long i = 0; i < m; i += 4) {                                                                      \
                long mi = MIN(m - i, 4);                                                                           \
                const float *a0 = a + i * lda, *a1 = a0 + (mi > 1) * lda, *a2 = a0 + 2 * (mi > 2) * lda,           \
                            *a3 = a0 + 3 * (mi > 3) * lda;                                                         \
                v8 s00 = 0, s01 = 0, s02 = 0, s10 = 0, s11 = 0, s12 = 0;                                           \
                v8 s20 = 0, s21 = 0, s22 = 0, s30 = 0, s31 = 0, s32 = 0;                                           \
                if (mi <= 2) {                                                                                     \
                    GROUPS(MULADD_2X3)                                                                             \
                } else {                                                                                           \
                    GROUPS(MULADD_4X3)                                                                             \
                }                                                                                                  \
                float t[4][3] = {{HSUM8(s00), HSUM8(s01), HSUM8(s02)}, {HSUM8(s10), HSUM8(s11), HSUM8(s12)},     \
                                 {HSUM8(s20), HSUM8(s21), HSUM8(s22)}, {HSUM8(s30), HSUM8(s31), HSUM8(s32)}};    \
                const float *ar[4] = {a0, a1, a2, a3};                                                             \
                const unsigned char *wr[3] = {w0, w1, w2};                                                         \
                for (long r = 0; r < mi; r++) {                                                                    \
                    for (long q = 0; q < nj; q++) {                                                                \
                        float sum = t[r][q];                                                                       \
                        for (long p = kv; p < k; p++) sum += ar[r][p] * WEIGHT(wr[q], p);                          \
                        float *dst = c + (i + r) * ldc + j + q;                                                    \
                        *dst = accumulate ? *dst + sum : sum;                                                      \
                    }                                                                                              \
                }                                                                                                  \
            }                                                                                                      \
        }                                                                                                          \
    }

#define PREFETCH_LINE()                  \
    if (pf < pf_end) {                   \
        __builtin_prefetch(pf);          \
        pf += pf_step;                   \
    }

// f32: 8 weights per 32-byte load.
#define F32_GROUPS(MULADD)                                                                         \
    for (long p = 0; p < kv; p += 8) {                                                              \
        PREFETCH_LINE();                                                                            \
        v8 y0 = LOAD8(w0 + 4 * p), y1 = LOAD8(w1 + 4 * p), y2 = LOAD8(w2 + 4 * p);                 \
        MULADD(p)                                                                                   \
    }
#define F32_WEIGHT(row, p) (((const float *)(row))[p])

// bf16: 8 weights per 16-byte load.
#define BF16_GROUPS(MULADD)                                                                        \
    for (long p = 0; p < kv; p += 8) {                                                              \
        PREFETCH_LINE();                                                                            \
        v8 y0 = BF16X8(w0 + 2 * p), y1 = BF16X8(w1 + 2 * p), y2 = BF16X8(w2 + 2 * p);              \
        MULADD(p)                                                                                   \
    }
#define BF16_WEIGHT(row, p) ck_bf16_value(row, p)

static inline float ck_bf16_value(const unsigned char *row, long p) {
    unsigned short b;
    memcpy(&b, row + 2 * p, 2);
    union { unsigned int u; float f; } v = {.u = (unsigned int)b << 16};
    return v.f;
}

SKINNY_AVX2_KERNEL(skinny_f32_avx2, k & ~7L, kv / 8, F32_GROUPS, F32_WEIGHT)
SKINNY_AVX2_KERNEL(skinny_bf16_avx2, k & ~7L, kv / 8, BF16_GROUPS, BF16_WEIGHT)
#undef PREFETCH_LINE

static void skinny_f32(long m, long n, long k, const float *a, long lda, const float *w, long ldw, float *c,
                       long ldc, int accumulate) {
#if HAVE_AVX512_PATH
    if (__builtin_cpu_supports("avx512f")) {
        skinny_f32_avx512(m, n, k, a, lda, w, ldw, c, ldc, accumulate);
        return;
    }
#endif
    skinny_f32_avx2(m, n, k, a, lda, (const unsigned char *)w, ldw * 4, c, ldc, accumulate);
}

void ck_skinny_gemm_nt(long m, long n, long k, const float *a, long lda, const float *w, long ldw, float *c,
                       long ldc) {
    skinny_f32(m, n, k, a, lda, w, ldw, c, ldc, 0);
}

// bf16 is converted as it loads (skinny_bf16_avx2). Other formats: dequantize a tile of W (up to 24 rows x
// 2,048 columns, 192 KiB, so it stays in L2) and run the f32 kernel on it, accumulating over the column chunks.
// W's bytes are read from memory once.
int ck_skinny_linear(int format, long m, long n, long k, const float *a, long lda, const void *w, long row_bytes,
                     float *c, long ldc) {
    if (format == CK_F32) {
        skinny_f32(m, n, k, a, lda, (const float *)w, row_bytes / 4, c, ldc, 0);
        return 0;
    }
    long block = ck_block_size(format), block_bytes = ck_block_bytes(format);
    if (block == 0 || k % block != 0) return -1;
    // Converted as they load where no bf16 unit multiplies them (else bf16 weights are packed in panels) and
    // the f32 products are AVX2's; an AVX-512 CPU without bf16 units keeps its 512-bit kernel on the tiles.
    if (format == CK_BF16 && !(HAVE_AVX512_PATH && __builtin_cpu_supports("avx512f"))) {
        skinny_bf16_avx2(m, n, k, a, lda, (const unsigned char *)w, row_bytes, c, ldc, 0);
        return 0;
    }
    long chunk = 2048 - 2048 % block;
    if (chunk == 0) chunk = block;
    if (chunk > k) chunk = k;
    const long tile_rows = 24;
    float *tile = malloc((size_t)(tile_rows * chunk) * sizeof(float));
    if (!tile) return -2;
    for (long j = 0; j < n; j += tile_rows) {
        long rows = MIN(n - j, tile_rows);
        for (long p = 0; p < k; p += chunk) {
            long width = MIN(k - p, chunk);
            const unsigned char *src = (const unsigned char *)w + j * row_bytes + (p / block) * block_bytes;
            for (long r = 0; r < rows; r++) ck_dequantize(format, src + r * row_bytes, width, tile + r * width);
            skinny_f32(m, rows, width, a + p, lda, tile, width, c + j, ldc, p > 0);
        }
    }
    free(tile);
    return 0;
}
