// Weight formats: ggml's block layouts (as GGUF stores them) plus F32, F16 and BF16. Dequantization follows
// ggml-quants.c's reference code value for value; quantization to Q8_0 and BF16 follows ggml's and PyTorch's
// rounding, so a model we quantize ourselves matches the same model quantized by the peers.
#include "ckernels.h"
#include "bf16_round.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "dispatch.h"

long ck_block_size(int format) {
    switch (format) {
    case CK_F32: case CK_F16: case CK_BF16: return 1;
    case CK_Q4_0: case CK_Q4_1: case CK_Q5_0: case CK_Q5_1: case CK_Q8_0: return 32;
    case CK_Q4_K: case CK_Q5_K: case CK_Q6_K: case CK_Q8_K: return 256;
    default: return 0;
    }
}

long ck_block_bytes(int format) {
    switch (format) {
    case CK_F32: return 4;
    case CK_F16: case CK_BF16: return 2;
    case CK_Q4_0: return 2 + 16;             // d, 32 nibbles
    case CK_Q4_1: return 2 + 2 + 16;         // d, m, 32 nibbles
    case CK_Q5_0: return 2 + 4 + 16;         // d, high bits, nibbles
    case CK_Q5_1: return 2 + 2 + 4 + 16;     // d, m, high bits, nibbles
    case CK_Q8_0: return 2 + 32;             // d, 32 int8
    case CK_Q4_K: return 2 + 2 + 12 + 128;   // d, dmin, 6-bit scales and mins, 256 nibbles
    case CK_Q5_K: return 2 + 2 + 12 + 32 + 128;
    case CK_Q6_K: return 128 + 64 + 16 + 2;  // low 4 bits, high 2 bits, int8 scales, d
    case CK_Q8_K: return 4 + 256 + 32;       // float d, 256 int8, 16 int16 block sums
    default: return 0;
    }
}

float ck_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
    union { uint32_t u; float f; } v;
    if (exp == 0x1F) {
        v.u = sign | 0x7F800000u | (mant << 13);
    } else if (exp == 0) {
        // Zero or subnormal: mant × 2^-24.
        v.f = (float)mant * 5.9604644775390625e-8f;
        v.u |= sign;
    } else {
        v.u = sign | ((exp + 112) << 23) | (mant << 13);
    }
    return v.f;
}

uint16_t ck_float_to_half(float f) {
    // Round to nearest even, with overflow to infinity and gradual underflow, as IEEE 754 (and F16C) do.
    union { float f; uint32_t u; } v = {.f = f};
    uint32_t sign = (v.u >> 16) & 0x8000, abs = v.u & 0x7FFFFFFF;
    if (abs > 0x7F800000u) return (uint16_t)(sign | 0x7E00);             // NaN
    if (abs >= 0x477FF000u) return (uint16_t)(sign | 0x7C00);            // rounds to infinity
    if (abs < 0x38800000u) {                                             // subnormal half (or zero)
        union { uint32_t u; float f; } a = {.u = abs};
        float scaled = a.f * 16777216.0f;                                // × 2^24: units of the smallest half
        return (uint16_t)(sign | (uint32_t)rintf(scaled));
    }
    uint32_t rounded = abs + 0xFFF + ((abs >> 13) & 1);
    return (uint16_t)(sign | ((rounded - 0x38000000u) >> 13));
}

static inline float bf16_to_float(uint16_t b) {
    union { uint32_t u; float f; } v = {.u = (uint32_t)b << 16};
    return v.f;
}

uint16_t ck_float_to_bf16(float f) { return bf16_round(f); }

static inline uint16_t load16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }

// ggml's get_scale_min_k4: 8 six-bit scales and 8 six-bit mins packed in 12 bytes.
static inline void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
    }
}

CLONES static void dequantize_blocks(int format, const uint8_t *x, long count, float *restrict y) {
    switch (format) {
    case CK_F32:
        memcpy(y, x, (size_t)count * 4);
        return;
    case CK_F16:
        for (long i = 0; i < count; i++) y[i] = ck_half_to_float(load16(x + 2 * i));
        return;
    case CK_BF16:
        for (long i = 0; i < count; i++) y[i] = bf16_to_float(load16(x + 2 * i));
        return;
    case CK_Q4_0:
        for (long b = 0; b < count / 32; b++, x += 18, y += 32) {
            float d = ck_half_to_float(load16(x));
            for (int j = 0; j < 16; j++) {
                y[j] = ((x[2 + j] & 0x0F) - 8) * d;
                y[j + 16] = ((x[2 + j] >> 4) - 8) * d;
            }
        }
        return;
    case CK_Q4_1:
        for (long b = 0; b < count / 32; b++, x += 20, y += 32) {
            float d = ck_half_to_float(load16(x)), m = ck_half_to_float(load16(x + 2));
            for (int j = 0; j < 16; j++) {
                y[j] = (x[4 + j] & 0x0F) * d + m;
                y[j + 16] = (x[4 + j] >> 4) * d + m;
            }
        }
        return;
    case CK_Q5_0:
        for (long b = 0; b < count / 32; b++, x += 22, y += 32) {
            float d = ck_half_to_float(load16(x));
            uint32_t qh;
            memcpy(&qh, x + 2, 4);
            const uint8_t *qs = x + 6;
            for (int j = 0; j < 16; j++) {
                int hi0 = ((qh >> j) << 4) & 0x10, hi1 = (qh >> (j + 12)) & 0x10;
                y[j] = (((qs[j] & 0x0F) | hi0) - 16) * d;
                y[j + 16] = (((qs[j] >> 4) | hi1) - 16) * d;
            }
        }
        return;
    case CK_Q5_1:
        for (long b = 0; b < count / 32; b++, x += 24, y += 32) {
            float d = ck_half_to_float(load16(x)), m = ck_half_to_float(load16(x + 2));
            uint32_t qh;
            memcpy(&qh, x + 4, 4);
            const uint8_t *qs = x + 8;
            for (int j = 0; j < 16; j++) {
                int hi0 = ((qh >> j) << 4) & 0x10, hi1 = (qh >> (j + 12)) & 0x10;
                y[j] = ((qs[j] & 0x0F) | hi0) * d + m;
                y[j + 16] = ((qs[j] >> 4) | hi1) * d + m;
            }
        }
        return;
    case CK_Q8_0:
        for (long b = 0; b < count / 32; b++, x += 34, y += 32) {
            float d = ck_half_to_float(load16(x));
            for (int j = 0; j < 32; j++) y[j] = (int8_t)x[2 + j] * d;
        }
        return;
    case CK_Q4_K:
        for (long b = 0; b < count / 256; b++, x += 144) {
            float d = ck_half_to_float(load16(x)), dmin = ck_half_to_float(load16(x + 2));
            const uint8_t *scales = x + 4, *q = x + 16;
            for (int j = 0, is = 0; j < 256; j += 64, is += 2, q += 32) {
                uint8_t sc, m;
                scale_min_k4(is, scales, &sc, &m);
                float d1 = d * sc, m1 = dmin * m;
                scale_min_k4(is + 1, scales, &sc, &m);
                float d2 = d * sc, m2 = dmin * m;
                for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] & 0xF) - m1;
                for (int l = 0; l < 32; l++) *y++ = d2 * (q[l] >> 4) - m2;
            }
        }
        return;
    case CK_Q5_K:
        for (long b = 0; b < count / 256; b++, x += 176) {
            float d = ck_half_to_float(load16(x)), dmin = ck_half_to_float(load16(x + 2));
            const uint8_t *scales = x + 4, *qh = x + 16, *ql = x + 48;
            uint8_t u1 = 1, u2 = 2;
            for (int j = 0, is = 0; j < 256; j += 64, is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
                uint8_t sc, m;
                scale_min_k4(is, scales, &sc, &m);
                float d1 = d * sc, m1 = dmin * m;
                scale_min_k4(is + 1, scales, &sc, &m);
                float d2 = d * sc, m2 = dmin * m;
                for (int l = 0; l < 32; l++) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
                for (int l = 0; l < 32; l++) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
            }
        }
        return;
    case CK_Q6_K:
        for (long b = 0; b < count / 256; b++, x += 210) {
            const uint8_t *ql = x, *qh = x + 128;
            const int8_t *sc = (const int8_t *)(x + 192);
            float d = ck_half_to_float(load16(x + 208));
            for (int n = 0; n < 256; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
                for (int l = 0; l < 32; l++) {
                    int is = l / 16;
                    int q1 = (int8_t)((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                    int q2 = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                    int q3 = (int8_t)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                    int q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                    y[l] = d * sc[is] * q1;
                    y[l + 32] = d * sc[is + 2] * q2;
                    y[l + 64] = d * sc[is + 4] * q3;
                    y[l + 96] = d * sc[is + 6] * q4;
                }
            }
        }
        return;
    case CK_Q8_K:
        for (long b = 0; b < count / 256; b++, x += 292, y += 256) {
            float d;
            memcpy(&d, x, 4);
            for (int j = 0; j < 256; j++) y[j] = d * (int8_t)x[4 + j];
        }
        return;
    }
}

int ck_dequantize(int format, const void *src, long count, float *dst) {
    long block = ck_block_size(format);
    if (block == 0 || count % block != 0) return -1;
    dequantize_blocks(format, (const uint8_t *)src, count, dst);
    return 0;
}

// ggml's quantize_row_q8_0_ref: d = max|x| / 127 stored as f16, q = round(x / d) with the unrounded d.
CLONES static void quantize_q8_0(const float *x, long count, uint8_t *y) {
    for (long b = 0; b < count / 32; b++, x += 32, y += 34) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t h = ck_float_to_half(d);
        memcpy(y, &h, 2);
        for (int j = 0; j < 32; j++) {
            // roundf (half away from zero), written so that it vectorizes instead of calling libm.
            float v = x[j] * id, t = truncf(v);
            if (fabsf(v - t) >= 0.5f) t += copysignf(1.0f, v);
            y[2 + j] = (uint8_t)(int8_t)t;
        }
    }
}

int ck_quantize(int format, const float *src, long count, void *dst) {
    uint8_t *y = (uint8_t *)dst;
    switch (format) {
    case CK_F32:
        memcpy(dst, src, (size_t)count * 4);
        return 0;
    case CK_F16:
        for (long i = 0; i < count; i++) {
            uint16_t h = ck_float_to_half(src[i]);
            memcpy(y + 2 * i, &h, 2);
        }
        return 0;
    case CK_BF16:
        for (long i = 0; i < count; i++) {
            uint16_t h = ck_float_to_bf16(src[i]);
            memcpy(y + 2 * i, &h, 2);
        }
        return 0;
    case CK_Q8_0:
        if (count % 32 != 0) return -1;
        quantize_q8_0(src, count, y);
        return 0;
    default:
        return -1;
    }
}
