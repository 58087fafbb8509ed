// Private to CKernels: the scalar building blocks every kernel file inlines into its target clones.
#ifndef FORGE_FK_MATH_H
#define FORGE_FK_MATH_H
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "CKernels.h"

#define FK_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define FK_INLINE static inline __attribute__((always_inline))

// ---------------------------------------------------------------------------------------------
// scalar building blocks (inlined into each clone and vectorised there)

FK_INLINE float fk_expf(float v) {
    v = v > 88.3762626647949f ? 88.3762626647949f : v;
    v = v < -87.3365447505531f ? -87.3365447505531f : v;
    float n = __builtin_rintf(v * 1.44269504088896341f);
    float r = v - n * 0.693359375f;   // Cody-Waite: ln2 = 0.693359375 - 2.12194440e-4
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

// tanh: odd polynomial near 0 (Cephes tanhf), 1 - 2/(e^{2|x|}+1) elsewhere.
FK_INLINE float fk_tanhf(float x) {
    float a = fabsf(x);
    float z = x * x;
    float small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z
                    + 1.33314422036e-1f) * z - 3.33332819422e-1f) * z * x + x;
    float e = fk_expf(2.0f * (a > 20.0f ? 20.0f : a));  // e^40: 1 - 2/(e+1) rounds to exactly 1
    float big = 1.0f - 2.0f / (e + 1.0f);
    big = copysignf(big, x);
    return a < 0.625f ? small : big;
}

FK_INLINE float fk_sigmoidf(float x) { return 1.0f / (1.0f + fk_expf(-x)); }

// erf via Abramowitz & Stegun 7.1.26 refined form (max abs error 1.5e-7)
FK_INLINE float fk_erff(float x) {
    float a = fabsf(x);
    float t = 1.0f / (1.0f + 0.3275911f * a);
    float y = ((((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t
               + 0.254829592f) * t;
    float r = 1.0f - y * fk_expf(-a * a);
    return copysignf(r, x);
}

// log: Cephes logf polynomial on the mantissa in [sqrt(1/2), sqrt(2))
FK_INLINE float fk_logf(float x) {
    int32_t ix;
    memcpy(&ix, &x, 4);
    int32_t e = ((ix >> 23) & 0xff) - 126;
    int32_t mb = (ix & 0x007fffff) | 0x3f000000;   // mantissa in [0.5, 1)
    float m;
    memcpy(&m, &mb, 4);
    int lt = m < 0.707106781186547524f;
    e = e - lt;
    m = lt ? m + m - 1.0f : m - 1.0f;
    float z = m * m;
    float p = 7.0376836292e-2f;
    p = p * m - 1.1514610310e-1f;
    p = p * m + 1.1676998740e-1f;
    p = p * m - 1.2420140846e-1f;
    p = p * m + 1.4249322787e-1f;
    p = p * m - 1.6668057665e-1f;
    p = p * m + 2.0000714765e-1f;
    p = p * m - 2.4999993993e-1f;
    p = p * m + 3.3333331174e-1f;
    float fe = (float)e;
    float y = p * m * z;
    y += -2.12194440e-4f * fe;
    y += -0.5f * z;
    float r = m + y;
    r += 0.693359375f * fe;
    // special cases, branch-free: x == 0 -> -inf, x < 0 or NaN -> NaN, +inf -> +inf
    r = x == 0.0f ? -INFINITY : r;
    r = x < 0.0f ? NAN : r;
    r = x != x ? x : r;
    r = x == INFINITY ? INFINITY : r;
    return r;
}

// Sums of a row in 16 independent lanes: without -ffast-math the compiler may not reorder a float
// sum, so a plain `s += x[c]` loop stays scalar; explicit lanes let every clone vectorise it.
// The lane order is fixed, so results do not depend on the machine's vector width.
#define FK_LANES 16
FK_INLINE float fk_row_sum(const float *restrict x, long n) {
    float acc[FK_LANES] = {0};
    long c = 0;
    for (; c + FK_LANES <= n; c += FK_LANES)
        for (int k = 0; k < FK_LANES; k++) acc[k] += x[c + k];
    float s = 0.0f;
    for (; c < n; c++) s += x[c];
    for (int k = 0; k < FK_LANES; k++) s += acc[k];
    return s;
}

// Dropout's counter-based mask: SplitMix64's output function on the counter gives a different,
// well-mixed 64-bit word for every (seed, index), with no state to carry between threads or between
// forward and backward. Element `index` is kept iff the top 24 bits are >= `threshold`
// (= ceil(p * 2^24), see fk_dropout_threshold).
FK_INLINE uint64_t fk_dropout_threshold(float p) { return (uint64_t)ceilf(p * 16777216.0f); }
FK_INLINE int fk_dropout_keeps(uint64_t seed, uint64_t index, uint64_t threshold) {
    return (fk_splitmix64_mix(seed + (index + 1) * FK_SPLITMIX64_GAMMA) >> 40) >= threshold;
}

#endif
