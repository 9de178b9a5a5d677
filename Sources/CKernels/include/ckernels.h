// Vectorized CPU kernels that Swift cannot express as fast: loops with exp and reductions, compiled by
// clang for AVX-512, AVX2 and baseline x86-64 and picked at load time (target_clones), so the binary
// stays portable.
#ifndef GEMMA_CKERNELS_H
#define GEMMA_CKERNELS_H


// gate[i] = gelu_tanh(gate[i]) * up[i], gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
void ck_gelu_tanh_gate(float *gate, const float *up, long n);

// Gemma RMSNorm of `rows` rows of `dim`: out = x / sqrt(mean(x^2) + eps) * scale. In place allowed.
void ck_rms_norm(const float *x, long rows, long dim, const float *scale, float eps, float *out);

// c[i*ldc + j] = sum_p a[i*lda + p] * w[j*ldw + p] for i < m, j < n: a Linear layer for few rows,
// reading each weight row once (the weights, not the activations, are what costs memory bandwidth).
void ck_skinny_gemm_nt(long m, long n, long k, const float *a, long lda, const float *w, long ldw,
                       float *c, long ldc);

#endif
