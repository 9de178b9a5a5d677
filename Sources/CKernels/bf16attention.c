// Attention of one sequence with bf16 products (PyTorch's bf16 autocast of scaled_dot_product_attention
// computes the same): scores = bf16(Q)·bf16(K)ᵀ summed in f32, softmax in f32, out = bf16(P)·bf16(V) summed in
// f32. Both products run on the bf16 panels of bf16gemm.c (AMX tiles, AVX512-BF16, or portable f32 FMAs on the
// same rounded values), so attention stops being the f32 island between the bf16 Linear products.
//
// K and V of a key/value head are packed once per sequence (O(n·d), against O(n²·d) of products): K as the
// panels of a weight whose rows are keys (scores = Q·Kᵀ is then a Linear product), V transposed, its panels
// over head dimensions with key pairs as the reduction. Query rows then go in blocks: their scores
// (block × keys, in L2), the masked softmax, and the weighted sum — nothing of the n × n matrix is kept.
#include "ckernels.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bf16_products.h"
#include "bf16_round.h"
#include "dispatch.h"
#include "elementwise.h"

#define MIN(a, b) ((a) < (b) ? (a) : (b))
// Query rows per block: 64 × 2,048 keys of f32 scores is 512 KiB.
#define ROW_BLOCK 64

static long round_up(long x, long to) { return (x + to - 1) / to * to; }

// K's panels: ceil(n/16) panels of hd_pad/2 pairs (hd padded to whole 32-value AMX steps, zeros). V's panels:
// ceil(hd/16) panels of n_pad/2 pairs (keys padded to 32, zeros).
static long k_panel_values(long n, long hd) { return round_up(n, 16) * round_up(hd, 32); }
static long v_panel_values(long n, long hd) { return round_up(hd, 16) * round_up(n, 32); }

long ck_attention_bf16_packed_count(long n, long hd) { return k_panel_values(n, hd) + v_panel_values(n, hd); }

void ck_attention_bf16_pack_isa(uint32_t isa, long n, long hd, const float *k, const float *v, long ldkv,
                                uint16_t *packed) {
    isa &= ck_cpu_features_detected();
    // scores = Q·Kᵀ: op(B) = Kᵀ (hd × n), k holds n rows of hd.
    ck_bf16_pack_b_isa(isa, 1, n, hd, round_up(hd, 32) / 2, k, ldkv, packed);
    // out = P·V: op(B) = V (n × hd), rows are keys.
    ck_bf16_pack_b_isa(isa, 0, hd, n, round_up(n, 32) / 2, v, ldkv, packed + k_panel_values(n, hd));
}

// row[lo...hi]: e^(s − max) in place; returns the sum.
CLONES static float exp_shifted(float *row, long lo, long hi, float max) {
    float sum = 0;
    for (long j = lo; j <= hi; j++) {
#pragma clang fp reassociate(on)
        float e = exp_approx(row[j] - max);
        row[j] = e;
        sum += e;
    }
    return sum;
}

// One query row's scores → its bf16 probabilities (zeros outside [lo, hi] and in the padding).
CLONES static void softmax_row(uint32_t isa, float *scores, long lo, long hi, float scale, float softcap, uint16_t *p, long n_pad) {
    float max = -INFINITY;
    if (softcap > 0) {
        for (long j = lo; j <= hi; j++) scores[j] = tanhf(scores[j] * scale / softcap) * softcap;
    } else {
        for (long j = lo; j <= hi; j++) scores[j] *= scale;
    }
    for (long j = lo; j <= hi; j++) max = scores[j] > max ? scores[j] : max;
    memset(p, 0, (size_t)n_pad * sizeof(uint16_t));
    if (!(max > -INFINITY)) return;  // a row of −∞ (never from finite inputs): zeros, as the f32 path gives
    float inv = 1 / exp_shifted(scores, lo, hi, max);
    for (long j = lo; j <= hi; j++) scores[j] *= inv;
    ck_bf16_round_rows_isa(isa, 1, hi + 1 - lo, scores + lo, 0, p + lo, hi + 1 - lo);
}

int ck_attention_bf16_rows_isa(uint32_t isa, long n, long hd, long row0, long rows, float scale, float softcap,
                               long before, long after, const float *q, long ldq, const uint16_t *packed, float *out,
                               long ldo) {
    isa &= ck_cpu_features_detected();
    if (rows <= 0 || n <= 0) return 0;
    long hd_pad = round_up(hd, 32), n_pad = round_up(n, 32);
    const uint16_t *k_panels = packed, *v_panels = packed + k_panel_values(n, hd);
    long block = MIN(ROW_BLOCK, rows), block_pad = round_up(block, 16);
    uint16_t *qb = aligned_alloc(64, (size_t)(block_pad * hd_pad) * sizeof(uint16_t));
    uint16_t *pb = aligned_alloc(64, (size_t)(block_pad * n_pad) * sizeof(uint16_t));
    float *scores = aligned_alloc(64, (size_t)(block * n_pad) * sizeof(float));
    if (!qb || !pb || !scores) {
        free(qb);
        free(pb);
        free(scores);
        return -2;
    }
    for (long i0 = 0; i0 < rows; i0 += block) {
        long m = MIN(block, rows - i0), m_pad = round_up(m, 16);
        // Rows padded to whole tiles with zeros; their results are never stored.
        ck_bf16_round_rows_isa(isa, m, hd, q + i0 * ldq, ldq, qb, hd_pad);
        memset(qb + m * hd_pad, 0, (size_t)((m_pad - m) * hd_pad) * sizeof(uint16_t));
        ck_bf16_panels_product_isa(isa, m, hd_pad / 2, qb, hd_pad, k_panels, n, scores, n_pad);
        for (long i = 0; i < m; i++) {
            long g = row0 + i0 + i;
            long lo = before >= g ? 0 : g - before;
            long hi = after >= n - 1 - g ? n - 1 : g + after;
            softmax_row(isa, scores + i * n_pad, lo, hi, scale, softcap, pb + i * n_pad, n_pad);
        }
        memset(pb + m * n_pad, 0, (size_t)((m_pad - m) * n_pad) * sizeof(uint16_t));
        ck_bf16_panels_product_isa(isa, m, n_pad / 2, pb, n_pad, v_panels, hd, out + i0 * ldo, ldo);
    }
    free(qb);
    free(pb);
    free(scores);
    return 0;
}
