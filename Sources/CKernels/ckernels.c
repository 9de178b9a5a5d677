#include "ckernels.h"
#include <math.h>
#include <stdint.h>

#include "dispatch.h"
#include "elementwise.h"

CLONES void ck_gelu_tanh_gate(float *restrict gate, const float *restrict up, long n) {
    for (long i = 0; i < n; i++) gate[i] = gelu_tanh_gate_value(gate[i], up[i]);
}

CLONES void ck_residual_rms_norm(float *x, const float *branch, long rows, long dim, const float *branch_scale,
                                 const float *next_scale, float eps, float *normed) {
    // Per row, while it is in cache: the branch's own norm (when it has one), the residual join, and the next
    // norm — where three passes over the whole batch would stream it through memory three times.
    for (long r = 0; r < rows; r++) {
        const float *b = branch + r * dim;
        float *xr = x + r * dim;
        if (branch_scale) {
            float inv = inverse_rms(b, dim, eps);
            for (long i = 0; i < dim; i++) xr[i] += b[i] * inv * branch_scale[i];
        } else {
            for (long i = 0; i < dim; i++) xr[i] += b[i];
        }
        if (next_scale) {
            float inv = inverse_rms(xr, dim, eps);
            float *out = normed + r * dim;
            for (long i = 0; i < dim; i++) out[i] = xr[i] * inv * next_scale[i];
        }
    }
}

CLONES void ck_gelu_tanh_gate_backward(const float *restrict gate, const float *restrict up, const float *restrict dh,
                                       float *restrict dgate, float *restrict dup, long n) {
    // With s = 1 / (1 + exp(-2u)) = (1 + tanh u) / 2: 1 - tanh² u = 4 s (1 - s), so one exp serves the value
    // and the derivative, and the loop vectorizes (libm's tanhf does not).
    for (long i = 0; i < n; i++) {
        float g = gate[i], d = dh[i];
        float u = 0.7978845608028654f * (g + 0.044715f * g * g * g);
        float s = 1.0f / (1.0f + exp_approx(-2.0f * u));
        dup[i] = d * g * s;
        dgate[i] = d * up[i] * (s + 2.0f * g * s * (1.0f - s) * 0.7978845608028654f * (1.0f + 0.134145f * g * g));
    }
}

CLONES void ck_rms_norm(const float *x, long rows, long dim, const float *scale, float eps, float *out) {
    for (long r = 0; r < rows; r++) {
        const float *src = x + r * dim;
        float *dst = out + r * dim;
        float inv = inverse_rms(src, dim, eps);
        for (long i = 0; i < dim; i++) dst[i] = src[i] * inv * scale[i];
    }
}

CLONES void ck_norm_rope(float *x, long vectors, long dim, const float *scale, float eps, const float *cos,
                         const float *sin, float sign) {
    long half = dim / 2;
    for (long v = 0; v < vectors; v++) {
        float *p = x + v * dim;
        if (scale) {
            float inv = inverse_rms(p, dim, eps);
            for (long i = 0; i < dim; i++) p[i] = p[i] * inv * scale[i];
        }
        for (long i = 0; i < half; i++) {
            float x1 = p[i], x2 = p[i + half], s = sign * sin[i];
            p[i] = x1 * cos[i] - x2 * s;
            p[i + half] = x2 * cos[i] + x1 * s;
        }
    }
}
