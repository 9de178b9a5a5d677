// Vectorized CPU kernels that Swift cannot express as fast: loops with exp and reductions, skinny matrix
// products, and the weight formats. Compiled by clang for AVX-512, AVX2+FMA and baseline x86-64 and picked
// at load time, so the binary stays portable.
#ifndef GEMMA_CKERNELS_H
#define GEMMA_CKERNELS_H

#include <stdint.h>

// gate[i] = gelu_tanh(gate[i]) * up[i], gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
void ck_gelu_tanh_gate(float *gate, const float *up, long n);
// The backward of gate·up ← gelu_tanh(gate)·up: d(gate) and d(up) from d(out), the forward's gate and up.
void ck_gelu_tanh_gate_backward(const float *gate, const float *up, const float *dh, float *dgate, float *dup, long n);

// Gemma RMSNorm of `rows` rows of `dim`: out = x / sqrt(mean(x^2) + eps) * scale. In place allowed.
void ck_rms_norm(const float *x, long rows, long dim, const float *scale, float eps, float *out);
// One token's `vectors` consecutive vectors of dim values, in place: RMS-normalized with `scale` (Gemma 3's
// per-head Q/K norms; skipped when scale is NULL), then rotated by RoPE in the rotate-half layout (value i pairs
// with i + dim/2) by the position's cos and sin (dim/2 each); sign -1 rotates back (the backward's transpose).
void ck_norm_rope(float *x, long vectors, long dim, const float *scale, float eps, const float *cos, const float *sin,
                  float sign);
// A branch joining the residual stream, row by row: x += rms_norm(branch) · branch_scale (or x += branch when
// branch_scale is NULL), then, when next_scale is given, normed = rms_norm(x) · next_scale. One pass.
void ck_residual_rms_norm(float *x, const float *branch, long rows, long dim, const float *branch_scale,
                          const float *next_scale, float eps, float *normed);

// c[i*ldc + j] = sum_p a[i*lda + p] * w[j*ldw + p] for i < m, j < n: a Linear layer for few rows,
// reading each weight row once (the weights, not the activations, are what costs memory bandwidth).
void ck_skinny_gemm_nt(long m, long n, long k, const float *a, long lda, const float *w, long ldw,
                       float *c, long ldc);

// Weight formats, numbered as ggml's types so GGUF tensors need no translation. A row of k values is
// k / block_size blocks of block_bytes bytes.
enum {
    CK_F32 = 0, CK_F16 = 1, CK_Q4_0 = 2, CK_Q4_1 = 3, CK_Q5_0 = 6, CK_Q5_1 = 7, CK_Q8_0 = 8,
    CK_Q4_K = 12, CK_Q5_K = 13, CK_Q6_K = 14, CK_Q8_K = 15, CK_BF16 = 30
};

// Values per block and bytes per block of a format; 0 for a format these kernels do not know.
long ck_block_size(int format);
long ck_block_bytes(int format);

// `count` values (a whole number of blocks) of `src` in `format` to float. Returns 0, or -1 when the format
// is unknown or count is not a whole number of blocks.
int ck_dequantize(int format, const void *src, long count, float *dst);

// `count` floats to `format` (F32, F16, BF16 or Q8_0). Returns 0, or -1 for another format or a partial block.
int ck_quantize(int format, const float *src, long count, void *dst);

// The same as ck_skinny_gemm_nt with W stored in `format`, each of its n rows `row_bytes` bytes apart.
// Returns 0, -1 when k is not a whole number of blocks, -2 when out of memory.
int ck_skinny_linear(int format, long m, long n, long k, const float *a, long lda, const void *w, long row_bytes,
                     float *c, long ldc);

// `bytes` of memory for weights that are streamed on every forward pass, 2 MiB-aligned and backed by
// transparent huge pages where the kernel allows it (fewer TLB misses, and the hardware prefetchers stop at
// page boundaries). NULL when out of memory; release with ck_free_weights and the same byte count.
void *ck_alloc_weights(long bytes);
/// Keeps freed large buffers in the heap (mallopt): training steps reuse them without page faults.
void ck_keep_freed_buffers(void);
void ck_free_weights(void *p, long bytes);

// CPU features the kernels can use (cpuid and the OS's saved register state), capped by the environment
// variable GEMMA_ENCODER_MAX_ISA = baseline | avx2 | avx512 | avx512_vnni | avx512_bf16 (read once); any other
// value, e.g. amx, caps nothing.
enum {
    CK_ISA_AVX2 = 1,          // AVX2 + FMA + F16C
    CK_ISA_AVX512 = 2,        // AVX-512 F, BW, VL, DQ
    CK_ISA_AVX512_VNNI = 4,
    CK_ISA_AVX512_BF16 = 8,
    CK_ISA_AMX_BF16 = 16,     // AMX tiles with bf16 products, and Linux's permission to use them (arch_prctl)
};
uint32_t ck_cpu_features(void);
// The features the CPU has, without the cap.
uint32_t ck_cpu_features_detected(void);

// bf16 weights packed for bf16 products (see bf16gemm.c): bytes of the panels of an n × k weight, packing from
// bf16 rows (row_stride values apart), and rows [first_row, first_row + count) back as bf16 rows of k values.
long ck_bf16_panels_bytes(long n, long k);
void ck_bf16_pack(const uint16_t *rows, long row_stride, long n, long k, uint16_t *panels);
void ck_bf16_unpack(const uint16_t *panels, long n, long k, long first_row, long count, uint16_t *rows);
// c[i*ldc + j] = sum_p bf16(a[i*lda + p]) * W[j][p] for i < m, j < cols, from the panels of W (the first
// panel is output column 0 of c), products summed in f32. ck_bf16_gemm_isa runs the path of `isa` (tests);
// ck_bf16_gemm the best the CPU has. Returns 0, or -2 when out of memory.
int ck_bf16_gemm(long m, long k, const float *a, long lda, const uint16_t *panels, long cols, float *c, long ldc);
int ck_bf16_gemm_isa(uint32_t isa, long m, long k, const float *a, long lda, const uint16_t *panels, long cols,
                     float *c, long ldc);
// The same product for an A that already is bf16 (what ck_bf16_gelu_gate_gemm_isa writes): c[i*ldc + j] =
// sum_p a[i*lda + p] * W[j][p]. k and lda even, k ≤ lda; (m + 15) / 16 · 16 rows of a must be readable (AMX
// multiplies whole 16-row tiles; the results of rows past m are never stored). Returns 0, or -1 where k or lda
// is odd or lda < k.
int ck_bf16_rows_gemm_isa(uint32_t isa, long m, long k, const uint16_t *a, long lda, const uint16_t *panels, long cols,
                          float *c, long ldc);
// Gemma's gated MLP in one bf16 product on stacked gate|up panels: c[i*ldc + j] = bf16(gelu_tanh(G_ij) · U_ij)
// for j < cols, G_ij = Σ bf16(a[i*lda + p]) W[j][p] and U_ij the same with row j + 16·up_offset of the panels
// (the up part of the stack): bf16 rows, ready as the A of the down product (ck_bf16_rows_gemm_isa). The gate
// and up values stay in the AMX tiles. Only where ck_bf16_gelu_gate_fusable: AMX, m ≥ 2, k a multiple of 32
// and cols of 16; returns 0, -1 where it is not, -2 when out of memory.
int ck_bf16_gelu_gate_fusable(uint32_t isa, long m, long k, long cols);
int ck_bf16_gelu_gate_gemm_isa(uint32_t isa, long m, long k, const float *a, long lda, const uint16_t *panels,
                               long up_offset, long cols, uint16_t *c, long ldc);
// C (m × n) = bf16(op(A)) · bf16(op(B)) (+ C when `accumulate`), products of bf16 pairs summed in f32, for two
// f32 operands packed on each call (training's products): op(A)(i, p) = trans_a ? a[p*lda + i] : a[i*lda + p],
// op(B)(p, j) = trans_b ? b[j*ldb + p] : b[p*ldb + j]. Returns 0, or -2 when out of memory.
int ck_bf16_gemm_f32(int trans_a, int trans_b, long m, long n, long k, const float *a, long lda, const float *b,
                     long ldb, int accumulate, float *c, long ldc);
int ck_bf16_gemm_f32_isa(uint32_t isa, int trans_a, int trans_b, long m, long n, long k, const float *a, long lda,
                         const float *b, long ldb, int accumulate, float *c, long ldc);

// Q8_0 weights packed for integer products (see q8gemm.c): bytes of the panels of an n × k weight (k a
// multiple of 32), packing from Q8_0 rows (row_bytes apart), and rows back as Q8_0 rows. Return 0, or -1 when
// k is not a whole number of blocks.
long ck_q8_panels_bytes(long n, long k);
int ck_q8_pack(const void *rows, long row_bytes, long n, long k, uint8_t *panels);
int ck_q8_unpack(const uint8_t *panels, long n, long k, long first_row, long count, void *rows);
// Rows first_row ..< first_row + count of the panels as f32 (count × k), in one pass.
int ck_q8_dequantize(const uint8_t *panels, long n, long k, long first_row, long count, float *out);
// c[i*ldc + j] = Σ over blocks of d_a · d_w · Σ q_a q_w for i < m, j < cols: A quantized per row and block of 32
// to 16 bits (d_a = max|a| / 32767, in f32) on every path, block sums exact in int32. Returns 0, -1 for a partial
// block, -2 when out of memory.
int ck_q8_gemm(long m, long k, const float *a, long lda, const uint8_t *panels, long cols, float *c, long ldc);
int ck_q8_gemm_isa(uint32_t isa, long m, long k, const float *a, long lda, const uint8_t *panels, long cols,
                   float *c, long ldc);

// IEEE half and bfloat16 conversions, rounding to nearest even.
float ck_half_to_float(uint16_t h);
uint16_t ck_float_to_half(float f);
// Attention of one sequence (n tokens) for one head with bf16 products (bf16attention.c): the key/value head's
// K and V (n rows, ldkv apart, hd values each) packed once into ck_attention_bf16_packed_count(n, hd) values,
// then query rows [row0, row0 + rows) of the head (q points at row row0, ldq apart) into out (row row0):
// scores = scale · bf16(q)·bf16(k) summed in f32, Gemma 2's soft-cap when softcap > 0, key j visible from
// query i when i − before ≤ j ≤ i + after, softmax in f32, out = bf16(P)·bf16(V) summed in f32.
// Returns 0, or -2 when out of memory. The _isa forms run the path of `isa` (masked with what the CPU has).
long ck_attention_bf16_packed_count(long n, long hd);
void ck_attention_bf16_pack_isa(uint32_t isa, long n, long hd, const float *k, const float *v, long ldkv,
                                uint16_t *packed);
int ck_attention_bf16_rows_isa(uint32_t isa, long n, long hd, long row0, long rows, float scale, float softcap,
                               long before, long after, const float *q, long ldq, const uint16_t *packed, float *out,
                               long ldo);
uint16_t ck_float_to_bf16(float f);

// A pool of worker threads that spin between parallel regions (pool.c): a region of `parts` parts runs
// task(context, part) for each, on the caller and the workers, and returns when all are done. Parts may run one
// after another on one thread, in any order, so they must not wait on each other. ck_pool_run returns 0, or 1
// without running anything when the pool is owned by another region (the caller then runs the region some
// other way), does not exist (create returns NULL off Linux), or parts is outside 1 … 2^31 − 1. Destroy a pool
// only when no region can be running on it.
typedef struct ck_pool ck_pool;
typedef void (*ck_pool_task)(void *context, long part);
ck_pool *ck_pool_create(int workers);
void ck_pool_destroy(ck_pool *pool);
int ck_pool_workers(const ck_pool *pool);
int ck_pool_run(ck_pool *pool, long parts, ck_pool_task task, void *context);

#endif
