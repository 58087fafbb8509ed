// CKernels: see include/CKernels.h. Loops are written branch-free so the compiler vectorises them
// for each target clone; transcendental functions are Cephes-style polynomials (<= 2 ulp on the
// ranges that matter, checked against Double in TensorCoreTests/KernelTests).
#include "CKernels.h"
#include <math.h>
#include <string.h>
#include "fk_math.h"

#define SQRT_2_OVER_PI 0.7978845608028654f
#define INV_SQRT2 0.7071067811865476f
#define INV_SQRT_2PI 0.3989422804014327f

// ---------------------------------------------------------------------------------------------
// elementwise

FK_CLONES void fk_exp(const float *restrict x, float *restrict y, long n) {
    for (long i = 0; i < n; i++) y[i] = fk_expf(x[i]);
}
FK_CLONES void fk_log(const float *restrict x, float *restrict y, long n) {
    for (long i = 0; i < n; i++) y[i] = fk_logf(x[i]);
}
FK_CLONES void fk_tanh(const float *restrict x, float *restrict y, long n) {
    for (long i = 0; i < n; i++) y[i] = fk_tanhf(x[i]);
}
FK_CLONES void fk_sigmoid(const float *restrict x, float *restrict y, long n) {
    for (long i = 0; i < n; i++) y[i] = fk_sigmoidf(x[i]);
}
// x, y, dy, dx: (n). The backward passes take the forward's input (or, for relu, its output: the
// sign is the same), so no mask is stored.
FK_CLONES void fk_relu(const float *restrict x, float *restrict y, long n) {
    for (long i = 0; i < n; i++) y[i] = (x[i] > 0.0f || x[i] != x[i]) ? x[i] : 0.0f;  // NaN stays NaN, as torch.relu
}
FK_CLONES void fk_relu_backward(const float *restrict y, const float *restrict dy, float *restrict dx, long n) {
    for (long i = 0; i < n; i++) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}
FK_CLONES void fk_leaky_relu(const float *restrict x, float *restrict y, long n, float slope) {
    for (long i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : x[i] * slope;
}
FK_CLONES void fk_leaky_relu_backward(const float *restrict x, const float *restrict dy, float *restrict dx, long n, float slope) {
    for (long i = 0; i < n; i++) dx[i] = x[i] > 0.0f ? dy[i] : dy[i] * slope;
}
FK_CLONES void fk_gelu_tanh(const float *restrict x, float *restrict y, long n) {
    for (long i = 0; i < n; i++) {
        float v = x[i];
        y[i] = 0.5f * v * (1.0f + fk_tanhf(SQRT_2_OVER_PI * (v + 0.044715f * v * v * v)));
    }
}
FK_CLONES void fk_gelu_erf(const float *restrict x, float *restrict y, long n) {
    for (long i = 0; i < n; i++) {
        float v = x[i];
        y[i] = 0.5f * v * (1.0f + fk_erff(v * INV_SQRT2));
    }
}
FK_CLONES void fk_gelu_tanh_backward(const float *restrict x, const float *restrict dy, float *restrict dx, long n) {
    for (long i = 0; i < n; i++) {
        float v = x[i];
        float u = SQRT_2_OVER_PI * (v + 0.044715f * v * v * v);
        float t = fk_tanhf(u);
        float du = SQRT_2_OVER_PI * (1.0f + 3.0f * 0.044715f * v * v);
        dx[i] = dy[i] * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * du);
    }
}
FK_CLONES void fk_gelu_erf_backward(const float *restrict x, const float *restrict dy, float *restrict dx, long n) {
    for (long i = 0; i < n; i++) {
        float v = x[i];
        float cdf = 0.5f * (1.0f + fk_erff(v * INV_SQRT2));
        float pdf = INV_SQRT_2PI * fk_expf(-0.5f * v * v);
        dx[i] = dy[i] * (cdf + v * pdf);
    }
}
// gelu(x) and its derivative in one pass (they share the erf/exp or tanh): y[i] = gelu(x[i]),
// dydx[i] = gelu'(x[i]). dydx may be x itself (each element is read before it is written).
FK_CLONES void fk_gelu_erf_and_derivative(const float *x, float *restrict y, float *dydx, long n) {
    for (long i = 0; i < n; i++) {
        float v = x[i];
        float cdf = 0.5f * (1.0f + fk_erff(v * INV_SQRT2));
        float pdf = INV_SQRT_2PI * fk_expf(-0.5f * v * v);
        y[i] = v * cdf;
        dydx[i] = cdf + v * pdf;
    }
}
FK_CLONES void fk_gelu_tanh_and_derivative(const float *x, float *restrict y, float *dydx, long n) {
    for (long i = 0; i < n; i++) {
        float v = x[i];
        float u = SQRT_2_OVER_PI * (v + 0.044715f * v * v * v);
        float t = fk_tanhf(u);
        float du = SQRT_2_OVER_PI * (1.0f + 3.0f * 0.044715f * v * v);
        y[i] = 0.5f * v * (1.0f + t);
        dydx[i] = 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * du;
    }
}
// a[i] *= b[i]
FK_CLONES void fk_mul_inplace(float *restrict a, const float *restrict b, long n) {
    for (long i = 0; i < n; i++) a[i] *= b[i];
}

FK_INLINE float fk_row_centered_sum_squares(const float *restrict x, float m, long n) {
    float acc[FK_LANES] = {0};
    long c = 0;
    for (; c + FK_LANES <= n; c += FK_LANES)
        for (int k = 0; k < FK_LANES; k++) { float d = x[c + k] - m; acc[k] += d * d; }
    float s = 0.0f;
    for (; c < n; c++) { float d = x[c] - m; s += d * d; }
    for (int k = 0; k < FK_LANES; k++) s += acc[k];
    return s;
}
FK_INLINE void fk_row_two_dots(const float *restrict a, const float *restrict b, const float *restrict w,
                               long n, float *sum_a, float *sum_ab) {
    // sum_a = Σ a·w, sum_ab = Σ a·w·b (w may be NULL = 1)
    float s1[FK_LANES] = {0}, s2[FK_LANES] = {0};
    long c = 0;
    if (w) {
        for (; c + FK_LANES <= n; c += FK_LANES)
            for (int k = 0; k < FK_LANES; k++) { float v = a[c + k] * w[c + k]; s1[k] += v; s2[k] += v * b[c + k]; }
    } else {
        for (; c + FK_LANES <= n; c += FK_LANES)
            for (int k = 0; k < FK_LANES; k++) { float v = a[c + k]; s1[k] += v; s2[k] += v * b[c + k]; }
    }
    float t1 = 0.0f, t2 = 0.0f;
    for (; c < n; c++) { float v = a[c] * (w ? w[c] : 1.0f); t1 += v; t2 += v * b[c]; }
    for (int k = 0; k < FK_LANES; k++) { t1 += s1[k]; t2 += s2[k]; }
    *sum_a = t1;
    *sum_ab = t2;
}

// ---------------------------------------------------------------------------------------------
// dropout

// The mask is fk_dropout_keeps (fk_math.h), a pure function of (seed, offset + i).
FK_CLONES void fk_dropout_hashed(const float *x, float *y, long n, uint64_t seed, uint64_t offset, float p) {
    const float scale = 1.0f / (1.0f - p);
    const uint64_t threshold = fk_dropout_threshold(p);  // u24 < p * 2^24  <=>  dropped
    for (long i = 0; i < n; i++)
        y[i] = fk_dropout_keeps(seed, offset + (uint64_t)i, threshold) ? x[i] * scale : 0.0f;
}

// ---------------------------------------------------------------------------------------------
// rows

FK_CLONES void fk_softmax_rows(const float *x, float *y, long rows, long cols, float scale,
                               long causal_period, long causal_offset) {
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        long visible = cols;
        if (causal_period > 0) {
            visible = (r % causal_period) + causal_offset + 1;
            if (visible > cols) visible = cols;
        }
        float mx = -INFINITY;
        for (long c = 0; c < visible; c++) mx = xr[c] > mx ? xr[c] : mx;  // max is order-free: vectorises
        for (long c = 0; c < visible; c++) yr[c] = fk_expf((xr[c] - mx) * scale);
        float inv = 1.0f / fk_row_sum(yr, visible);
        for (long c = 0; c < visible; c++) yr[c] *= inv;
        for (long c = visible; c < cols; c++) yr[c] = 0.0f;
    }
}

FK_CLONES void fk_softmax_rows_backward(const float *restrict y, const float *dy, float *dx,
                                        long rows, long cols, float scale) {
    for (long r = 0; r < rows; r++) {
        const float *yr = y + r * cols, *dyr = dy + r * cols;
        float *dxr = dx + r * cols;
        float dot = 0.0f;
        for (long c = 0; c < cols; c++) dot += yr[c] * dyr[c];
        for (long c = 0; c < cols; c++) dxr[c] = scale * yr[c] * (dyr[c] - dot);
    }
}

FK_CLONES void fk_log_softmax_rows(const float *restrict x, float *restrict y, long rows, long cols) {
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        float mx = -INFINITY;
        for (long c = 0; c < cols; c++) mx = xr[c] > mx ? xr[c] : mx;
        float sum = 0.0f;
        for (long c = 0; c < cols; c++) sum += fk_expf(xr[c] - mx);
        float lse = mx + logf(sum);
        for (long c = 0; c < cols; c++) yr[c] = xr[c] - lse;
    }
}

FK_CLONES void fk_log_softmax_rows_backward(const float *restrict y, const float *restrict dy, float *restrict dx,
                                            long rows, long cols) {
    for (long r = 0; r < rows; r++) {
        const float *yr = y + r * cols, *dyr = dy + r * cols;
        float *dxr = dx + r * cols;
        float s = 0.0f;
        for (long c = 0; c < cols; c++) s += dyr[c];
        for (long c = 0; c < cols; c++) dxr[c] = dyr[c] - fk_expf(yr[c]) * s;
    }
}

FK_CLONES void fk_cross_entropy_rows(const float *restrict logits, const int32_t *restrict targets,
                                     float *restrict loss, float *restrict probs, long rows, long cols,
                                     int32_t ignore_index) {
    for (long r = 0; r < rows; r++) {
        const float *xr = logits + r * cols;
        float mx = -INFINITY;
        for (long c = 0; c < cols; c++) mx = xr[c] > mx ? xr[c] : mx;
        float sum = 0.0f;
        if (probs) {
            float *pr = probs + r * cols;
            for (long c = 0; c < cols; c++) { float e = fk_expf(xr[c] - mx); pr[c] = e; sum += e; }
            float inv = 1.0f / sum;
            for (long c = 0; c < cols; c++) pr[c] *= inv;
        } else {
            for (long c = 0; c < cols; c++) sum += fk_expf(xr[c] - mx);
        }
        int32_t t = targets[r];
        loss[r] = (t == ignore_index || t < 0 || t >= cols) ? 0.0f : (mx + logf(sum) - xr[t]);
    }
}

FK_CLONES void fk_layernorm_forward(const float *restrict x, const float *restrict weight, const float *restrict bias,
                                    float *restrict y, float *restrict mean, float *restrict rstd,
                                    long rows, long cols, float eps) {
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        float m = fk_row_sum(xr, cols) / (float)cols;
        float v = fk_row_centered_sum_squares(xr, m, cols) / (float)cols;
        float rs = 1.0f / sqrtf(v + eps);
        // one loop per case keeps the inner loops branch-free
        if (weight && bias) for (long c = 0; c < cols; c++) yr[c] = (xr[c] - m) * rs * weight[c] + bias[c];
        else if (weight)    for (long c = 0; c < cols; c++) yr[c] = (xr[c] - m) * rs * weight[c];
        else if (bias)      for (long c = 0; c < cols; c++) yr[c] = (xr[c] - m) * rs + bias[c];
        else                for (long c = 0; c < cols; c++) yr[c] = (xr[c] - m) * rs;
        mean[r] = m;
        rstd[r] = rs;
    }
}

FK_CLONES void fk_layernorm_backward(const float *restrict x, const float *restrict weight, const float *restrict mean,
                                     const float *restrict rstd, const float *restrict dy, float *restrict dx,
                                     float *restrict dweight, float *restrict dbias, long rows, long cols) {
    for (long r = 0; r < rows; r++) {
        const float *xr = x + r * cols, *dyr = dy + r * cols;
        float *dxr = dx + r * cols;
        float m = mean[r], rs = rstd[r];
        // Σ dn and Σ dn·x with dn = dy·w; then Σ dn·n = rs·(Σ dn·x − m·Σ dn)
        float sum_dn, sum_dn_x;
        fk_row_two_dots(dyr, xr, weight, cols, &sum_dn, &sum_dn_x);
        float dnorm_mean = sum_dn / (float)cols;
        float dnorm_norm_mean = rs * (sum_dn_x - m * sum_dn) / (float)cols;
        if (weight) for (long c = 0; c < cols; c++) dxr[c] = (dyr[c] * weight[c] - dnorm_mean - (xr[c] - m) * rs * dnorm_norm_mean) * rs;
        else        for (long c = 0; c < cols; c++) dxr[c] = (dyr[c] - dnorm_mean - (xr[c] - m) * rs * dnorm_norm_mean) * rs;
        if (dweight) for (long c = 0; c < cols; c++) dweight[c] += dyr[c] * (xr[c] - m) * rs;
        if (dbias) for (long c = 0; c < cols; c++) dbias[c] += dyr[c];
    }
}

// ---------------------------------------------------------------------------------------------
// optimizer: torch.optim.Adam / AdamW update rule, elementwise

FK_CLONES void fk_adam_update(float *restrict param, const float *restrict grad, float *restrict m, float *restrict v,
                              long n, float lr, float beta1, float beta2, float eps, float weight_decay,
                              int decoupled, float bias_correction1, float bias_correction2) {
    float step_size = lr / bias_correction1;
    float bc2_sqrt = sqrtf(bias_correction2);
    float decay = decoupled ? (1.0f - lr * weight_decay) : 1.0f;
    float l2 = decoupled ? 0.0f : weight_decay;
    for (long i = 0; i < n; i++) {
        float p = param[i] * decay;
        float g = grad[i] + l2 * param[i];
        float mi = beta1 * m[i] + (1.0f - beta1) * g;
        float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        param[i] = p - step_size * mi / denom;
    }
}

// ---------------------------------------------------------------------------------------------
// convolution layout

FK_CLONES void fk_im2col(const float *restrict img, float *restrict col, long C, long H, long W, long KH, long KW,
                         long sh, long sw, long ph, long pw, long OH, long OW, long ld) {
    for (long c = 0; c < C; c++)
        for (long kh = 0; kh < KH; kh++)
            for (long kw = 0; kw < KW; kw++) {
                float *dst = col + ((c * KH + kh) * KW + kw) * ld;
                const float *src = img + c * H * W;
                for (long oh = 0; oh < OH; oh++) {
                    long ih = oh * sh - ph + kh;
                    float *d = dst + oh * OW;
                    if (ih < 0 || ih >= H) {
                        for (long ow = 0; ow < OW; ow++) d[ow] = 0.0f;
                        continue;
                    }
                    const float *s = src + ih * W;
                    if (sw == 1) {
                        for (long ow = 0; ow < OW; ow++) {
                            long iw = ow - pw + kw;
                            d[ow] = (iw >= 0 && iw < W) ? s[iw] : 0.0f;
                        }
                    } else {
                        for (long ow = 0; ow < OW; ow++) {
                            long iw = ow * sw - pw + kw;
                            d[ow] = (iw >= 0 && iw < W) ? s[iw] : 0.0f;
                        }
                    }
                }
            }
}

FK_CLONES void fk_col2im(const float *restrict col, float *restrict img, long C, long H, long W, long KH, long KW,
                         long sh, long sw, long ph, long pw, long OH, long OW, long ld) {
    for (long c = 0; c < C; c++)
        for (long kh = 0; kh < KH; kh++)
            for (long kw = 0; kw < KW; kw++) {
                const float *src = col + ((c * KH + kh) * KW + kw) * ld;
                float *dst = img + c * H * W;
                for (long oh = 0; oh < OH; oh++) {
                    long ih = oh * sh - ph + kh;
                    if (ih < 0 || ih >= H) continue;
                    const float *s = src + oh * OW;
                    float *d = dst + ih * W;
                    for (long ow = 0; ow < OW; ow++) {
                        long iw = ow * sw - pw + kw;
                        if (iw >= 0 && iw < W) d[iw] += s[ow];
                    }
                }
            }
}

// ---------------------------------------------------------------------------------------------
// reductions: Double accumulation in 8 lanes, combined in a fixed order

FK_CLONES double fk_sum(const float *restrict x, long n) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    long i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += (double)x[i + k];
    double s = 0;
    for (; i < n; i++) s += (double)x[i];
    for (int k = 0; k < 8; k++) s += acc[k];
    return s;
}

FK_CLONES double fk_sum_squares(const float *restrict x, long n) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    long i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += (double)x[i + k] * (double)x[i + k];
    double s = 0;
    for (; i < n; i++) s += (double)x[i] * (double)x[i];
    for (int k = 0; k < 8; k++) s += acc[k];
    return s;
}

// ---------------------------------------------------------------------------------------------
// CPU features

int fk_cpu_has_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
}
int fk_cpu_has_avx2_fma(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
const char *fk_kernel_level(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4")) return "avx512";
    if (__builtin_cpu_supports("x86-64-v3")) return "avx2";
    return "baseline";
}

static _Thread_local int fk_parallel_region = 0;
int fk_in_parallel_region(void) { return fk_parallel_region; }
void fk_set_parallel_region(int inside) { fk_parallel_region = inside; }

// ---- conv/bn helpers ----

FK_CLONES double fk_sum_squared_deviation(const float *restrict x, long n, double mean) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    long i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) { double d = (double)x[i + k] - mean; acc[k] += d * d; }
    double s = 0;
    for (; i < n; i++) { double d = (double)x[i] - mean; s += d * d; }
    for (int k = 0; k < 8; k++) s += acc[k];
    return s;
}

FK_CLONES void fk_bn_backward_sums(const float *restrict x, const float *restrict dy, long n, float mean,
                                   double *sum_dy, double *sum_dy_xc) {
    double a[8] = {0, 0, 0, 0, 0, 0, 0, 0}, b[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    long i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) {
            double g = (double)dy[i + k];
            a[k] += g;
            b[k] += g * ((double)x[i + k] - (double)mean);
        }
    double sa = 0, sb = 0;
    for (; i < n; i++) { double g = (double)dy[i]; sa += g; sb += g * ((double)x[i] - (double)mean); }
    for (int k = 0; k < 8; k++) { sa += a[k]; sb += b[k]; }
    *sum_dy += sa;
    *sum_dy_xc += sb;
}

FK_CLONES void fk_bn_normalize(const float *restrict x, float *restrict y, long n, float mean, float scale, float shift) {
    for (long i = 0; i < n; i++) y[i] = (x[i] - mean) * scale + shift;
}

FK_CLONES void fk_bn_backward_dx(const float *restrict x, const float *restrict dy, float *restrict dx, long n,
                                 float mean, float a, float b, float c) {
    for (long i = 0; i < n; i++) dx[i] = a * dy[i] + b * (x[i] - mean) + c;
}

// im2col / col2im with hoisted bounds (see CKernels.h)
FK_INLINE long fk_cdiv(long a, long b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }  // ceil(a/b), b > 0
FK_INLINE long fk_fdiv(long a, long b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }     // floor(a/b), b > 0
FK_CLONES void fk_im2col_rows(const float *restrict img, float *restrict col, long C, long H, long W, long KH, long KW,
                              long sh, long sw, long ph, long pw, long OH, long OW, long ld) {
    for (long c = 0; c < C; c++)
        for (long kh = 0; kh < KH; kh++)
            for (long kw = 0; kw < KW; kw++) {
                float *dst = col + ((c * KH + kh) * KW + kw) * ld;
                const float *src = img + c * H * W;
                long lo = fk_cdiv(pw - kw, sw); lo = lo < 0 ? 0 : (lo > OW ? OW : lo);
                long hi = fk_fdiv(W - 1 + pw - kw, sw) + 1; hi = hi > OW ? OW : (hi < lo ? lo : hi);
                for (long oh = 0; oh < OH; oh++) {
                    long ih = oh * sh - ph + kh;
                    float *d = dst + oh * OW;
                    if (ih < 0 || ih >= H) { for (long ow = 0; ow < OW; ow++) d[ow] = 0.0f; continue; }
                    const float *s = src + ih * W + kw - pw;
                    for (long ow = 0; ow < lo; ow++) d[ow] = 0.0f;
                    if (sw == 1) for (long ow = lo; ow < hi; ow++) d[ow] = s[ow];
                    else if (sw == 2) for (long ow = lo; ow < hi; ow++) d[ow] = s[2 * ow];
                    else for (long ow = lo; ow < hi; ow++) d[ow] = s[ow * sw];
                    for (long ow = hi; ow < OW; ow++) d[ow] = 0.0f;
                }
            }
}
FK_CLONES void fk_col2im_rows(const float *restrict col, float *restrict img, long C, long H, long W, long KH, long KW,
                              long sh, long sw, long ph, long pw, long OH, long OW, long ld) {
    for (long c = 0; c < C; c++)
        for (long kh = 0; kh < KH; kh++)
            for (long kw = 0; kw < KW; kw++) {
                const float *src = col + ((c * KH + kh) * KW + kw) * ld;
                float *dst = img + c * H * W;
                long lo = fk_cdiv(pw - kw, sw); lo = lo < 0 ? 0 : (lo > OW ? OW : lo);
                long hi = fk_fdiv(W - 1 + pw - kw, sw) + 1; hi = hi > OW ? OW : (hi < lo ? lo : hi);
                for (long oh = 0; oh < OH; oh++) {
                    long ih = oh * sh - ph + kh;
                    if (ih < 0 || ih >= H) continue;
                    const float *s = src + oh * OW;
                    float *d = dst + ih * W + kw - pw;
                    if (sw == 1) for (long ow = lo; ow < hi; ow++) d[ow] += s[ow];
                    else if (sw == 2) for (long ow = lo; ow < hi; ow++) d[2 * ow] += s[ow];
                    else for (long ow = lo; ow < hi; ow++) d[ow * sw] += s[ow];
                }
            }
}

// d[0 ..< n] = s[0 ..< n] for the short rows of a DCGAN's maps: a copy loop becomes a call to memmove,
// whose set-up costs more than a 4- to 16-float copy (perf: memmove 2.4 % of a cGAN step, from
// the images-to-columns pass), so the common widths are single vector moves. They are vector-typed
// assignments, not fixed-size memcpys: clang folds a switch of those back into one memcpy call with
// the size looked up in a table.
typedef float fk_f4u __attribute__((vector_size(16), aligned(4)));
typedef float fk_f8u __attribute__((vector_size(32), aligned(4)));
typedef float fk_f16u __attribute__((vector_size(64), aligned(4)));
FK_INLINE void fk_copy_row(float *restrict d, const float *restrict s, long n) {
    switch (n) {
    case 4: *(fk_f4u *)d = *(const fk_f4u *)s; return;
    case 8: *(fk_f8u *)d = *(const fk_f8u *)s; return;
    case 16: *(fk_f16u *)d = *(const fk_f16u *)s; return;
    case 32: *(fk_f16u *)d = *(const fk_f16u *)s; *(fk_f16u *)(d + 16) = *(const fk_f16u *)(s + 16); return;
    default: memcpy(d, s, (size_t)n * sizeof(float)); return;
    }
}

// dst row r (r < rows, at dst + r·dst_ld) ← src row r (at src + r·src_ld), cols floats each: the
// layout passes between NCHW images and GEMM columns, whose rows are a map's 16–256 pixels.
void fk_copy_rows(const float *restrict src, long src_ld, float *restrict dst, long dst_ld, long rows, long cols) {
    for (long r = 0; r < rows; r++) fk_copy_row(dst + r * dst_ld, src + r * src_ld, cols);
}

// im2col of n planes of one channel (planes at img + i·image_stride) through zero-padded copies of
// them, so the inner loop has no bounds at all: each (kh, kw) row of col is a sub-sampling of the
// padded planes. Pays off on the small maps of a DCGAN (4x4 to 16x16 outputs) where per-row bounds
// logic dominates. The loops run tap by tap and, inside a tap, image after image, so each row of col
// is written as one sequential stream of n·OH·OW floats: done plane by plane, the 16 rows a 4×4
// window writes are 16 short strided streams, and their store misses cost more than the copy (perf:
// 63 % of the per-plane kernel's time on the instruction after its store). With stride_w 2 each
// padded row is also split into its even and odd columns, so every copy is contiguous.
// Returns 0 (and does nothing) when the padded planes do not fit the stack buffer; callers then take
// fewer planes, or fk_im2col_rows.
// img: n planes (H, W); col rows (kh, kw) at col + (kh*KW + kw)*ld, each (n, OH, OW)
FK_CLONES int fk_im2col_planes_padded(const float *restrict img, long n, long image_stride, float *restrict col,
                                      long H, long W, long KH, long KW, long sh, long sw, long ph, long pw,
                                      long OH, long OW, long ld) {
    const long PH = H + 2 * ph, PW = W + 2 * pw, plane = PH * PW, P = OH * OW;
    if (n < 1 || n * plane > FK_PAD_MAX) return 0;
    float pad[FK_PAD_MAX];
    // even columns of a padded row first (PWE of them), then the odd ones, when sw == 2
    const long PWE = sw == 2 ? (PW + 1) / 2 : PW;
    for (long i = 0; i < n; i++) {
        float *q = pad + i * plane;
        const float *src = img + i * image_stride;
        for (long t = 0; t < ph * PW; t++) q[t] = 0.0f;                          // top border
        for (long t = (ph + H) * PW; t < plane; t++) q[t] = 0.0f;               // bottom border
        for (long h = 0; h < H; h++) {
            float *row = q + (h + ph) * PW;
            const float *s = src + h * W;
            if (sw == 2) {
                float *even = row, *odd = row + PWE;
                for (long w = 0; w < PW; w++) {
                    long x = w - pw;
                    float v = x >= 0 && x < W ? s[x] : 0.0f;
                    if (w & 1) odd[w / 2] = v; else even[w / 2] = v;
                }
            } else {
                for (long w = 0; w < pw; w++) { row[w] = 0.0f; row[pw + W + w] = 0.0f; }
                for (long w = 0; w < W; w++) row[pw + w] = s[w];
            }
        }
    }
    for (long kh = 0; kh < KH; kh++)
        for (long kw = 0; kw < KW; kw++) {
            float *dst = col + (kh * KW + kw) * ld;
            // padded column 2·ow + kw is entry ow + kw/2 of the even (kw even) or odd half
            const long offset = sw == 2 ? (kw & 1 ? PWE : 0) + kw / 2 : kw;
            for (long i = 0; i < n; i++) {
                const float *q = pad + i * plane;
                float *d0 = dst + i * P;
                for (long oh = 0; oh < OH; oh++) {
                    const float *s = q + (oh * sh + kh) * PW + offset;
                    float *d = d0 + oh * OW;
                    if (sw == 1 || sw == 2) fk_copy_row(d, s, OW);
                    else for (long ow = 0; ow < OW; ow++) d[ow] = s[ow * sw];
                }
            }
        }
    return 1;
}

// col2im of n planes of one channel for stride_w 2 (a DCGAN's stride-2 convs). Writing every other
// float of an image row does not vectorise, so each plane is held as two dense halves, even columns
// then odd, each (kh, kw) row of col adds contiguously into one of them (image column
// iw = 2*ow + kw - pw), and the halves are interleaved into the planes at the end. As in
// fk_im2col_planes_padded, the loops run tap by tap and image after image inside a tap, so each row
// of col is read as one sequential stream (plane by plane, the per-plane loads of 16 strided rows
// missed the cache: 57 % of that kernel's time sat on one scalar add). Every pixel starts at
// `initial` and gets the same additions in the same (kh, kw) order as fk_col2im_rows does on a
// plane filled with `initial`, so the results are identical.
// col rows (kh, kw) at col + (kh*KW + kw)*ld, each (n, OH, OW); img: n planes (H, W) at img + i·image_stride
FK_CLONES int fk_col2im_planes_s2(const float *restrict col, float *restrict img, long n, long image_stride, float initial,
                                  long H, long W, long KH, long KW, long sh, long ph, long pw, long OH, long OW, long ld) {
    const long WE = (W + 1) / 2, WO = W / 2, plane = H * W, P = OH * OW;
    if (n < 1 || n * plane > FK_PAD_MAX) return 0;
    float split[FK_PAD_MAX];
    for (long t = 0; t < n * plane; t++) split[t] = initial;
    for (long kh = 0; kh < KH; kh++)
        for (long kw = 0; kw < KW; kw++) {
            const float *src = col + (kh * KW + kw) * ld;
            long lo = fk_cdiv(pw - kw, 2); lo = lo < 0 ? 0 : (lo > OW ? OW : lo);
            long hi = fk_fdiv(W - 1 + pw - kw, 2) + 1; hi = hi > OW ? OW : (hi < lo ? lo : hi);
            const long t = kw - pw;  // iw = 2*ow + t
            const long half = (t & 1) ? H * WE : 0;   // the odd half follows the even one in a plane's copy
            const long width = (t & 1) ? WO : WE;
            const long shift = (t & 1) ? (t - 1) / 2 : t / 2;  // exact divisions of even numbers
            for (long i = 0; i < n; i++) {
                const float *s0 = src + i * P;
                float *h0 = split + i * plane + half;
                for (long oh = 0; oh < OH; oh++) {
                    long ih = oh * sh - ph + kh;
                    if (ih < 0 || ih >= H) continue;
                    const float *s = s0 + oh * OW;
                    float *d = h0 + ih * width + shift;
                    for (long ow = lo; ow < hi; ow++) d[ow] += s[ow];
                }
            }
        }
    for (long i = 0; i < n; i++) {
        const float *even = split + i * plane, *odd = even + H * WE;
        float *q = img + i * image_stride;
        for (long h = 0; h < H; h++) {
            float *r = q + h * W;
            const float *e = even + h * WE, *o = odd + h * WO;
            // one loop for both parities, so the compiler can interleave with shuffles and store whole vectors
            for (long j = 0; j < WO; j++) { r[2 * j] = e[j]; r[2 * j + 1] = o[j]; }
            if (WE > WO) r[2 * WO] = e[WO];
        }
    }
    return 1;
}
