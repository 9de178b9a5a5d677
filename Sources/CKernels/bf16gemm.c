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

#include "bf16_round.h"
#include "bf16_products.h"
#include "dispatch.h"
#include "elementwise.h"

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
        for (long p = 0; p < k; p++) out[i * ld + p] = bf16_round(a[i * lda + p]);
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
        for (; p < k; p++) dst[p] = bf16_round(src[p]);
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

// AMX: one tdpbf16ps multiplies a 16 × 32 tile of A by 32 × 16 of W into a 16 × 16 f32 tile — 8,192 multiply-
// adds where a vdpbf16ps does 32. W's panels are already the B operand's layout (for each pair of input columns
// the 16 rows' two values, 64 bytes), so 16 pairs of a panel are one B tile, loaded 64 bytes a row.
// Tiles 0-3 hold a 32 × 32 block of C, 4-5 two 16-row tiles of A, 6-7 two panels' B tiles: per step of 32
// input columns four loads feed four products. k must be a multiple of 32 (every Gemma width is); other
// shapes, and single rows (where a tile would be 15/16 zeros), take the AVX512-BF16 path.
#define TARGET_AMX __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))

typedef struct __attribute__((aligned(64))) {
    uint8_t palette;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

TARGET_AMX static void amx_configure(void) {
    tile_config config;
    memset(&config, 0, sizeof config);
    config.palette = 1;
    for (int t = 0; t < 8; t++) {
        config.rows[t] = 16;
        config.colsb[t] = 64;
    }
    _tile_loadconfig(&config);
}

// C tile t (16 × 16 f32) into rows × cols of c: straight when whole, through a buffer at the edges.
#define STORE_TILE(t, dst, ldc, rows, cols)                                                          \
    do {                                                                                             \
        if ((rows) >= 16 && (cols) >= 16) _tile_stored(t, dst, (ldc) * 4);                          \
        else if ((rows) > 0 && (cols) > 0) {                                                         \
            float edge[16 * 16];                                                                     \
            _tile_stored(t, edge, 64);                                                               \
            for (long r_ = 0; r_ < MIN(16, rows); r_++)                                              \
                memcpy((dst) + r_ * (ldc), edge + r_ * 16, (size_t)MIN(16, cols) * sizeof(float));   \
        }                                                                                            \
    } while (0)

// C tile t from rows × cols of c (zeros elsewhere), for products that add to C.
#define LOAD_TILE(t, src, ldc, rows, cols)                                                           \
    do {                                                                                             \
        if ((rows) >= 16 && (cols) >= 16) _tile_loadd(t, src, (ldc) * 4);                            \
        else {                                                                                       \
            float edge[16 * 16] = {0};                                                               \
            for (long r_ = 0; r_ < MIN(16, rows); r_++)                                              \
                if ((cols) > 0) memcpy(edge + r_ * 16, (src) + r_ * (ldc), (size_t)MIN(16, cols) * sizeof(float)); \
            _tile_loadd(t, edge, 64);                                                                \
        }                                                                                            \
    } while (0)

// Gemma's gated MLP as the epilogue of a 32 × 32 block: gate tile tg and up tile tu (the same 16 columns) leave
// the tiles once, as gelu_tanh(gate) · up rounded to bf16 in rows × 16 of dst — the 2 × 16 products are never
// stored to memory, and the result is already the bf16 A operand of the down product that follows, so no f32
// copy of it is written and read back to be rounded.
#define STORE_GATED(tg, tu, dst, ldc, rows)                                                          \
    do {                                                                                             \
        float gate_[16 * 16] __attribute__((aligned(64))), up_[16 * 16] __attribute__((aligned(64))); \
        _tile_stored(tg, gate_, 64);                                                                 \
        _tile_stored(tu, up_, 64);                                                                   \
        for (long r_ = 0; r_ < MIN(16, rows); r_++)                                                  \
            for (long l_ = 0; l_ < 16; l_++)                                                         \
                (dst)[r_ * (ldc) + l_] = bf16_round(gelu_tanh_gate_value(gate_[r_ * 16 + l_], up_[r_ * 16 + l_])); \
    } while (0)

// A (rows padded to a multiple of 16 with zeros, ld a multiple of 32) times the panels into c (m × cols).
// Blocked as BLAS blocks: a block of panels (about W_BLOCK_BYTES, kept in L2) meets every 32-row block of A in
// turn (48 KiB at k = 768, kept in L1 while it passes over the block's panels), so each weight byte comes from
// memory once per call and each A tile from L1 — where a loop over all panels per row block re-reads the whole
// weight from memory for every 32 rows.
// Each step multiplies two panels: panels q and q + 1 of C, or, when up_offset > 0 (the gated MLP, cols a
// multiple of 16), gate panel q and its up panel q + up_offset, stored through STORE_GATED as column block q of
// the bf16 rows `gated_out` (row stride ldc).
#ifndef W_BLOCK_BYTES
#define W_BLOCK_BYTES (1L << 20)
#endif
TARGET_AMX static void gemm_amx_bf16(long m, long kp, const uint16_t *a, long ld, const uint16_t *panels, long cols,
                                     float *c, long ldc, int accumulate, long up_offset, uint16_t *gated_out) {
    long panel_count = (cols + PANEL - 1) / PANEL, panel_stride = kp * PANEL * 2, stride_a = ld * 2;
    int gated = up_offset > 0;
    // Steps of two panels; a block holds about W_BLOCK_BYTES of them.
    long steps = gated ? panel_count : (panel_count + 1) / 2;
    long block = (W_BLOCK_BYTES / (panel_stride * 2)) / 2;
    if (block < 1) block = 1;
    amx_configure();
    for (long s0 = 0; s0 < steps; s0 += block) {
        long s_end = MIN(steps, s0 + block);
        for (long i = 0; i < m; i += 32) {
            const uint16_t *a0 = a + i * ld, *a1 = a0 + 16 * ld;
            long rows0 = m - i, rows1 = rows0 - 16;
            for (long s = s0; s < s_end; s++) {
                long q = gated ? s : 2 * s;
                const uint16_t *b0 = panels + q * panel_stride, *b1 = b0 + (gated ? up_offset : 1) * panel_stride;
                int two = gated || q + 1 < panel_count;
                long cols0 = cols - q * PANEL, cols1 = cols0 - PANEL;
                float *c0 = gated ? NULL : c + i * ldc + q * PANEL;
                if (accumulate) {
                    LOAD_TILE(0, c0, ldc, rows0, cols0);
                    LOAD_TILE(1, c0 + PANEL, ldc, rows0, two ? cols1 : 0);
                    LOAD_TILE(2, c0 + 16 * ldc, ldc, rows1, cols0);
                    LOAD_TILE(3, c0 + 16 * ldc + PANEL, ldc, rows1, two ? cols1 : 0);
                } else {
                    _tile_zero(0);
                    _tile_zero(1);
                    _tile_zero(2);
                    _tile_zero(3);
                }
                if (two && rows1 > 0) {
                    for (long p = 0; p < kp; p += 16) {
                        _tile_loadd(4, a0 + 2 * p, stride_a);
                        _tile_loadd(6, b0 + p * PANEL * 2, 64);
                        _tile_loadd(7, b1 + p * PANEL * 2, 64);
                        _tile_loadd(5, a1 + 2 * p, stride_a);
                        _tile_dpbf16ps(0, 4, 6);
                        _tile_dpbf16ps(1, 4, 7);
                        _tile_dpbf16ps(2, 5, 6);
                        _tile_dpbf16ps(3, 5, 7);
                    }
                } else if (two) {
                    for (long p = 0; p < kp; p += 16) {
                        _tile_loadd(4, a0 + 2 * p, stride_a);
                        _tile_loadd(6, b0 + p * PANEL * 2, 64);
                        _tile_loadd(7, b1 + p * PANEL * 2, 64);
                        _tile_dpbf16ps(0, 4, 6);
                        _tile_dpbf16ps(1, 4, 7);
                    }
                } else if (rows1 > 0) {
                    for (long p = 0; p < kp; p += 16) {
                        _tile_loadd(4, a0 + 2 * p, stride_a);
                        _tile_loadd(6, b0 + p * PANEL * 2, 64);
                        _tile_loadd(5, a1 + 2 * p, stride_a);
                        _tile_dpbf16ps(0, 4, 6);
                        _tile_dpbf16ps(2, 5, 6);
                    }
                } else {
                    for (long p = 0; p < kp; p += 16) {
                        _tile_loadd(4, a0 + 2 * p, stride_a);
                        _tile_loadd(6, b0 + p * PANEL * 2, 64);
                        _tile_dpbf16ps(0, 4, 6);
                    }
                }
                if (gated) {
                    uint16_t *g0 = gated_out + i * ldc + q * PANEL;
                    STORE_GATED(0, 1, g0, ldc, rows0);
                    if (rows1 > 0) STORE_GATED(2, 3, g0 + 16 * ldc, ldc, rows1);
                    continue;
                }
                STORE_TILE(0, c0, ldc, rows0, cols0);
                if (two) STORE_TILE(1, c0 + PANEL, ldc, rows0, cols1);
                if (rows1 > 0) {
                    STORE_TILE(2, c0 + 16 * ldc, ldc, rows1, cols0);
                    if (two) STORE_TILE(3, c0 + 16 * ldc + PANEL, ldc, rows1, cols1);
                }
            }
        }
    }
    // Gives the tile state back, so the kernel need not save 8 KiB of it on every context switch.
    _tile_release();
}
#endif

int ck_bf16_gemm_isa(uint32_t isa, long m, long k, const float *a, long lda, const uint16_t *panels, long cols,
                     float *c, long ldc) {
    // Never a path the CPU lacks; detection also asks Linux for the AMX permission before the first tile.
    isa &= ck_cpu_features_detected();
    if (m <= 0 || cols <= 0) return 0;
    long kp = pairs_of(k), ld = 2 * kp, padded = (m + 15) / 16 * 16;
    uint16_t *rounded = aligned_alloc(64, (size_t)(padded * ld) * sizeof(uint16_t));
    if (!rounded) return -2;
    ck_bf16_round_rows_isa(isa, m, k, a, lda, rounded, ld);
    // Rows padded to whole AMX tiles with zeros; their results are never stored.
    memset(rounded + m * ld, 0, (size_t)((padded - m) * ld) * sizeof(uint16_t));
    ck_bf16_panels_product_isa(isa, m, kp, rounded, ld, panels, cols, c, ldc);
    free(rounded);
    return 0;
}

int ck_bf16_gemm(long m, long k, const float *a, long lda, const uint16_t *panels, long cols, float *c, long ldc) {
    return ck_bf16_gemm_isa(ck_cpu_features(), m, k, a, lda, panels, cols, c, ldc);
}

int ck_bf16_rows_gemm_isa(uint32_t isa, long m, long k, const uint16_t *a, long lda, const uint16_t *panels, long cols,
                          float *c, long ldc) {
    isa &= ck_cpu_features_detected();
    if (k % 2 != 0 || lda % 2 != 0 || lda < k) return -1;
    if (m <= 0 || cols <= 0) return 0;
    ck_bf16_panels_product_isa(isa, m, k / 2, a, lda, panels, cols, c, ldc);
    return 0;
}

int ck_bf16_gelu_gate_fusable(uint32_t isa, long m, long k, long cols) {
    isa &= ck_cpu_features_detected();
    return HAVE_AVX512_PATH && (isa & CK_ISA_AMX_BF16) && m >= 2 && k > 0 && k % 32 == 0 && cols > 0 && cols % PANEL == 0;
}

int ck_bf16_gelu_gate_gemm_isa(uint32_t isa, long m, long k, const float *a, long lda, const uint16_t *panels,
                               long up_offset, long cols, uint16_t *c, long ldc) {
    if (!ck_bf16_gelu_gate_fusable(isa, m, k, cols) || up_offset <= 0) return -1;
#if HAVE_AVX512_PATH
    // k is whole tiles: no padding column, and the rows padded to whole tiles as in ck_bf16_gemm_isa.
    long kp = k / 2, ld = k, padded = (m + 15) / 16 * 16;
    uint16_t *rounded = aligned_alloc(64, (size_t)(padded * ld) * sizeof(uint16_t));
    if (!rounded) return -2;
    ck_bf16_round_rows_isa(isa, m, k, a, lda, rounded, ld);
    memset(rounded + m * ld, 0, (size_t)((padded - m) * ld) * sizeof(uint16_t));
    gemm_amx_bf16(m, kp, rounded, ld, panels, cols, NULL, ldc, 0, up_offset, c);
    free(rounded);
    return 0;
#else
    (void)a, (void)lda, (void)panels, (void)c, (void)ldc;
    return -1;
#endif
}

// ---- Products of two f32 operands in bf16 (training): C (m × n) (+)= bf16(op(A)) · bf16(op(B)), f32 sums. ----
// Both operands change every step (weights after each update, activations and gradients per batch), so each
// call packs them: A into bf16 rows and B into the same panels as a weight, k padded with zeros to a multiple
// of 32 so every shape takes whole AMX tiles. Packing reads each operand once: O((m + n)·k) against m·n·k.

// op(B)(p, j) = trans_b ? b[j*ldb + p] : b[p*ldb + j], columns [0, n) into panels of kp pairs (zeros past k, n).
static void pack_b(int trans_b, long n, long k, long kp, const float *b, long ldb, uint16_t *panels) {
    long panel_count = (n + PANEL - 1) / PANEL;
    for (long q = 0; q < panel_count; q++) {
        uint16_t *dst = panels + q * kp * PANEL * 2;
        long lanes = MIN(PANEL, n - q * PANEL);
        if (trans_b) {
            for (long l = 0; l < PANEL; l++) {
                const float *row = l < lanes ? b + (q * PANEL + l) * ldb : NULL;
                for (long p = 0; p < kp; p++) {
                    long c0 = 2 * p, c1 = 2 * p + 1;
                    dst[(p * PANEL + l) * 2] = row && c0 < k ? bf16_round(row[c0]) : 0;
                    dst[(p * PANEL + l) * 2 + 1] = row && c1 < k ? bf16_round(row[c1]) : 0;
                }
            }
        } else {
            for (long p = 0; p < kp; p++) {
                const float *r0 = 2 * p < k ? b + (2 * p) * ldb + q * PANEL : NULL;
                const float *r1 = 2 * p + 1 < k ? b + (2 * p + 1) * ldb + q * PANEL : NULL;
                for (long l = 0; l < PANEL; l++) {
                    dst[(p * PANEL + l) * 2] = r0 && l < lanes ? bf16_round(r0[l]) : 0;
                    dst[(p * PANEL + l) * 2 + 1] = r1 && l < lanes ? bf16_round(r1[l]) : 0;
                }
            }
        }
    }
}

// op(A)(i, p) = trans_a ? a[p*lda + i] : a[i*lda + p] into m rows of ld values (zeros past k).
static void pack_a(int trans_a, long m, long k, const float *a, long lda, uint16_t *out, long ld) {
    if (!trans_a) {
        round_rows(m, k, a, lda, out, ld);
    } else {
        // Column blocks of 32 reduction indices: their rows of a stay in cache while every output row is written.
        for (long p0 = 0; p0 < k; p0 += 32) {
            long p1 = MIN(k, p0 + 32);
            for (long i = 0; i < m; i++)
                for (long p = p0; p < p1; p++) out[i * ld + p] = bf16_round(a[p * lda + i]);
        }
        for (long i = 0; i < m; i++)
            for (long p = k; p < ld; p++) out[i * ld + p] = 0;
    }
}

#if HAVE_AVX512_PATH
// The packers on AVX512-BF16: vcvtne2ps2bf16 rounds 32 values at once (the same rounding as bf16_round).

// op(B) = B (k × n, rows 2p and 2p + 1 give pair p): the two rows' 16 lanes rounded and interleaved in one step.
TARGET_BF16 static void pack_b_rows_avx512(long n, long k, long kp, const float *b, long ldb, uint16_t *panels) {
    const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                                23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    long panel_count = (n + PANEL - 1) / PANEL;
    for (long q = 0; q < panel_count; q++) {
        uint16_t *dst = panels + q * kp * PANEL * 2;
        long lanes = MIN(PANEL, n - q * PANEL);
        __mmask16 valid = (__mmask16)((1u << lanes) - 1);
        for (long p = 0; p < kp; p++) {
            __m512 r0 = 2 * p < k ? _mm512_maskz_loadu_ps(valid, b + (2 * p) * ldb + q * PANEL) : _mm512_setzero_ps();
            __m512 r1 = 2 * p + 1 < k ? _mm512_maskz_loadu_ps(valid, b + (2 * p + 1) * ldb + q * PANEL) : _mm512_setzero_ps();
            __m512i both = (__m512i)_mm512_cvtne2ps_pbh(r1, r0);
            _mm512_storeu_si512(dst + p * PANEL * 2, _mm512_permutexvar_epi16(interleave, both));
        }
    }
}

// op(B) = Wᵀ for W (n × k rows): each row rounded 32 values at a time — 16 pairs, one 32-bit word each — and
// the words scattered to their lane of the panel (64 bytes apart).
TARGET_BF16 static void pack_b_transposed_avx512(long n, long k, long kp, const float *b, long ldb, uint16_t *panels) {
    const __m512i lane_stride = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                                   _mm512_set1_epi32(PANEL));
    long panel_count = (n + PANEL - 1) / PANEL;
    for (long q = 0; q < panel_count; q++) {
        uint32_t *dst = (uint32_t *)(panels + q * kp * PANEL * 2);
        for (long l = 0; l < PANEL; l++) {
            long r = q * PANEL + l;
            for (long c = 0; c < 2 * kp; c += 32) {
                __m512i words = _mm512_setzero_si512();
                if (r < n && c < k) {
                    long left = k - c;
                    __mmask16 lo = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
                    __mmask16 hi = left >= 32 ? 0xFFFF : left > 16 ? (__mmask16)((1u << (left - 16)) - 1) : 0;
                    const float *row = b + r * ldb + c;
                    words = (__m512i)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, row + 16), _mm512_maskz_loadu_ps(lo, row));
                }
                long pairs = MIN(16, kp - c / 2);
                _mm512_mask_i32scatter_epi32(dst + (c / 2) * PANEL + l, (__mmask16)((1u << pairs) - 1), lane_stride, words, 4);
            }
        }
    }
}

// op(A) = Aᵀ (a is k × m): blocks of 32 reduction indices × 16 output rows, rounded 16 at a time along a's rows
// and transposed through a small buffer.
TARGET_BF16 static void pack_a_transposed_avx512(long m, long k, const float *a, long lda, uint16_t *out, long ld) {
    uint16_t block[32][16];
    for (long i0 = 0; i0 < m; i0 += 16) {
        long rows = MIN(16, m - i0);
        __mmask16 valid = (__mmask16)((1u << rows) - 1);
        for (long p0 = 0; p0 < ld; p0 += 32) {
            for (long p = 0; p < 32; p++) {
                __m512 v = p0 + p < k ? _mm512_maskz_loadu_ps(valid, a + (p0 + p) * lda + i0) : _mm512_setzero_ps();
                _mm256_storeu_si256((__m256i *)block[p], (__m256i)_mm512_cvtneps_pbh(v));
            }
            for (long i = 0; i < rows; i++)
                for (long p = 0; p < 32; p++) out[(i0 + i) * ld + p0 + p] = block[p][i];
        }
    }
}
#endif

int ck_bf16_gemm_f32_isa(uint32_t isa, int trans_a, int trans_b, long m, long n, long k, const float *a, long lda,
                         const float *b, long ldb, int accumulate, float *c, long ldc) {
    isa &= ck_cpu_features_detected();
    if (m <= 0 || n <= 0) return 0;
    if (k <= 0) {
        if (!accumulate)
            for (long i = 0; i < m; i++) memset(c + i * ldc, 0, (size_t)n * sizeof(float));
        return 0;
    }
    long ld = (k + 31) / 32 * 32, kp = ld / 2, rows = (m + 15) / 16 * 16;
    long panel_bytes = (n + PANEL - 1) / PANEL * kp * PANEL * 2 * 2;
    uint16_t *packed_a = aligned_alloc(64, (size_t)(rows * ld) * sizeof(uint16_t));
    uint16_t *panels = aligned_alloc(64, (size_t)((panel_bytes + 63) / 64 * 64));
    // The AMX kernel adds to C itself; the others write, so an accumulating product sums apart and adds after.
    int add_after = accumulate && !(isa & CK_ISA_AMX_BF16);
    float *sums = add_after ? malloc((size_t)(m * n) * sizeof(float)) : NULL;
    if (!packed_a || !panels || (add_after && !sums)) {
        free(packed_a);
        free(panels);
        free(sums);
        return -2;
    }
#if HAVE_AVX512_PATH
    if (isa & CK_ISA_AVX512_BF16) {
        if (trans_a) pack_a_transposed_avx512(m, k, a, lda, packed_a, ld);
        else round_rows_avx512(m, k, a, lda, packed_a, ld);
        if (trans_b) pack_b_transposed_avx512(n, k, kp, b, ldb, panels);
        else pack_b_rows_avx512(n, k, kp, b, ldb, panels);
    } else
#endif
    {
        pack_a(trans_a, m, k, a, lda, packed_a, ld);
        pack_b(trans_b, n, k, kp, b, ldb, panels);
    }
    // Rows padded to whole tiles with zeros; their results are never stored.
    memset(packed_a + m * ld, 0, (size_t)((rows - m) * ld) * sizeof(uint16_t));
    float *out = sums ? sums : c;
    long ldo = sums ? n : ldc;
#if HAVE_AVX512_PATH
    if (isa & CK_ISA_AMX_BF16) {
        gemm_amx_bf16(m, kp, packed_a, ld, panels, n, c, ldc, accumulate, 0, NULL);
    } else if (isa & CK_ISA_AVX512_BF16) {
        gemm_avx512_bf16(m, kp, packed_a, ld, panels, n, out, ldo);
    } else
#endif
    {
        gemm_portable(m, kp, packed_a, ld, panels, n, out, ldo);
    }
    if (sums)
        for (long i = 0; i < m; i++)
            for (long j = 0; j < n; j++) c[i * ldc + j] += sums[i * n + j];
    free(packed_a);
    free(panels);
    free(sums);
    return 0;
}

// ---- For other kernels on the same panels (bf16_products.h). ----

void ck_bf16_pack_b_isa(uint32_t isa, int trans_b, long n, long k, long kp, const float *b, long ldb, uint16_t *panels) {
#if HAVE_AVX512_PATH
    if (isa & CK_ISA_AVX512_BF16) {
        if (trans_b) pack_b_transposed_avx512(n, k, kp, b, ldb, panels);
        else pack_b_rows_avx512(n, k, kp, b, ldb, panels);
        return;
    }
#endif
    (void)isa;
    pack_b(trans_b, n, k, kp, b, ldb, panels);
}

void ck_bf16_round_rows_isa(uint32_t isa, long m, long k, const float *a, long lda, uint16_t *out, long ld) {
#if HAVE_AVX512_PATH
    if (isa & CK_ISA_AVX512_BF16) {
        round_rows_avx512(m, k, a, lda, out, ld);
        return;
    }
#endif
    (void)isa;
    round_rows(m, k, a, lda, out, ld);
}

void ck_bf16_panels_product_isa(uint32_t isa, long m, long kp, const uint16_t *a, long ld, const uint16_t *panels,
                                long cols, float *c, long ldc) {
#if HAVE_AVX512_PATH
    if ((isa & CK_ISA_AMX_BF16) && kp % 16 == 0 && m >= 2) {
        gemm_amx_bf16(m, kp, a, ld, panels, cols, c, ldc, 0, 0, NULL);
        return;
    }
    if (isa & CK_ISA_AVX512_BF16) {
        gemm_avx512_bf16(m, kp, a, ld, panels, cols, c, ldc);
        return;
    }
#endif
    (void)isa;
    gemm_portable(m, kp, a, ld, panels, cols, c, ldc);
}

int ck_bf16_gemm_f32(int trans_a, int trans_b, long m, long n, long k, const float *a, long lda, const float *b,
                     long ldb, int accumulate, float *c, long ldc) {
    return ck_bf16_gemm_f32_isa(ck_cpu_features(), trans_a, trans_b, m, n, k, a, lda, b, ldb, accumulate, c, ldc);
}
