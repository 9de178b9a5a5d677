// float → bfloat16 rounding to nearest even, as PyTorch rounds (and vcvtne2ps2bf16 does); NaN stays a quiet NaN.
// Inline so that packing loops vectorize; ck_float_to_bf16 is this function for callers outside C.
#ifndef GEMMA_CKERNELS_BF16_ROUND_H
#define GEMMA_CKERNELS_BF16_ROUND_H
#include <stdint.h>
#include <string.h>

static inline uint16_t bf16_round(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7FFFFFFF) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
}
#endif
