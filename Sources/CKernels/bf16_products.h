// The bf16 product machinery of bf16gemm.c, for other kernels of this module that build on the same panels
// (bf16attention.c). Not part of the public header: callers outside C use ck_bf16_gemm*.
#ifndef GEMMA_CKERNELS_BF16_PRODUCTS_H
#define GEMMA_CKERNELS_BF16_PRODUCTS_H
#include <stdint.h>

// op(B) (k × n; trans_b: b holds n rows of k) rounded into panels of kp pairs, zeros past k and n.
void ck_bf16_pack_b_isa(uint32_t isa, int trans_b, long n, long k, long kp, const float *b, long ldb, uint16_t *panels);
// m rows of k values rounded to bf16 into rows of ld values (zeros past k).
void ck_bf16_round_rows_isa(uint32_t isa, long m, long k, const float *a, long lda, uint16_t *out, long ld);
// c (m × cols) = a (bf16 rows of ld = 2·kp values; rows padded with zeros to a multiple of 16) times the panels,
// on the best path of `isa` (already masked with what the CPU has).
void ck_bf16_panels_product_isa(uint32_t isa, long m, long kp, const uint16_t *a, long ld, const uint16_t *panels,
                                long cols, float *c, long ldc);
#endif
