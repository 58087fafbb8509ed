// Hot elementwise, row and layout kernels for TensorCore.
// Each function works on a contiguous range so the Swift side can split work across threads.
// Every function is compiled three times (AVX-512, AVX2+FMA, baseline x86-64) and the loader
// picks the best the CPU runs (GCC/Clang target_clones + ifunc), so no compiler flags are needed.
#ifndef FORGE_CKERNELS_H
#define FORGE_CKERNELS_H
#include <stddef.h>
#include <stdint.h>

// ---- SplitMix64 (Steele, Lea & Flood 2014), the one definition Forge uses ----
// The output function applied to a state word: Swift's RandomGenerator seeds xoshiro256** with it,
// synthetic datasets derive per-item seeds with it, and dropout draws its counter-based mask with
// it. The stream is state += 0x9E3779B97F4A7C15, then fk_splitmix64_mix(state).
#define FK_SPLITMIX64_GAMMA 0x9E3779B97F4A7C15ull
static inline uint64_t fk_splitmix64_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// ---- elementwise: y[i] = f(x[i]) for i in [0, n) ----
void fk_exp(const float *x, float *y, long n);
void fk_log(const float *x, float *y, long n);
void fk_tanh(const float *x, float *y, long n);
void fk_sigmoid(const float *x, float *y, long n);
void fk_relu(const float *x, float *y, long n);
void fk_relu_backward(const float *y, const float *dy, float *dx, long n);
void fk_leaky_relu(const float *x, float *y, long n, float slope);
void fk_leaky_relu_backward(const float *x, const float *dy, float *dx, long n, float slope);
void fk_gelu_tanh(const float *x, float *y, long n);
void fk_gelu_erf(const float *x, float *y, long n);
// dx[i] = dy[i] * f'(x[i])
void fk_gelu_tanh_backward(const float *x, const float *dy, float *dx, long n);
void fk_gelu_erf_backward(const float *x, const float *dy, float *dx, long n);
// y = gelu(x) and dydx = gelu'(x) in one pass; dydx may be x
void fk_gelu_erf_and_derivative(const float *x, float *y, float *dydx, long n);
void fk_gelu_tanh_and_derivative(const float *x, float *y, float *dydx, long n);
// a[i] *= b[i]
void fk_mul_inplace(float *a, const float *b, long n);

// Dropout with a counter-based mask: element i is kept iff a hash of (seed, offset + i) is >= p as a
// 24-bit uniform, and kept elements are scaled by 1/(1-p) (y may be x). The mask is a pure function of
// (seed, offset + i), so a backward pass regenerates it instead of storing it.
void fk_dropout_hashed(const float *x, float *y, long n, uint64_t seed, uint64_t offset, float p);

// ---- rows: x is (rows, cols), row-major ----
// y = softmax(scale * x) per row (y may be x); if causal_offset >= 0, row r only sees cols <= (r % causal_period) + causal_offset
void fk_softmax_rows(const float *x, float *y, long rows, long cols, float scale,
                     long causal_period, long causal_offset);
// dx = y * (dy - sum(dy * y)) * scale, per row (dx may be dy)
void fk_softmax_rows_backward(const float *y, const float *dy, float *dx, long rows, long cols, float scale);
void fk_log_softmax_rows(const float *x, float *y, long rows, long cols);
// dx = dy - exp(y) * sum(dy)
void fk_log_softmax_rows_backward(const float *y, const float *dy, float *dx, long rows, long cols);

// Cross-entropy from logits: for each row, loss[r] = logsumexp(x[r]) - x[r][target[r]] (0 where target == ignore).
// probs (may be NULL) receives softmax(x) for the backward pass.
void fk_cross_entropy_rows(const float *logits, const int32_t *targets, float *loss, float *probs,
                           long rows, long cols, int32_t ignore_index);

// Layer norm over the last dimension. mean/rstd: (rows). weight/bias may be NULL.
void fk_layernorm_forward(const float *x, const float *weight, const float *bias, float *y,
                          float *mean, float *rstd, long rows, long cols, float eps);
// dx (overwritten); dweight/dbias (accumulated, may be NULL) — call per thread with private dweight/dbias.
void fk_layernorm_backward(const float *x, const float *weight, const float *mean, const float *rstd,
                           const float *dy, float *dx, float *dweight, float *dbias, long rows, long cols);

// ---- attention (attention.c): one head, flash-style ----
// q, k, v: (T, D) with row stride ld (e.g. one head's columns of a (B, T, 3C) qkv buffer);
// out, dout: (T, D) with row stride ldo; lse: (T), each row's log-sum-exp of scale·q·kᵀ
// (scale = 1/√D): the only thing forward keeps for backward. causal: row r sees keys <= r.
// p > 0 drops attention probabilities with the counter-based mask of fk_dropout_hashed, element
// (r, c) at index mask_offset + r·T + c. K/V are walked in tiles of `tile` keys (queries in blocks
// of `tile` rows) with an online softmax; the result does not depend on `tile` beyond rounding.
// Both return 0 when their scratch (about 2·tile² + T floats) cannot be allocated.
int fk_attention_forward(const float *q, const float *k, const float *v, long ld,
                         float *out, long ldo, float *lse, long T, long D, int causal,
                         float p, uint64_t seed, uint64_t mask_offset, long tile);
// Adds this head's gradients into dq, dk, dv (same layout as q, k, v; they may be one buffer's
// column slices), recomputing the probabilities tile by tile from lse and the saved out.
int fk_attention_backward(const float *q, const float *k, const float *v, long ld,
                          const float *out, const float *dout, long ldo, const float *lse,
                          float *dq, float *dk, float *dv, long T, long D, int causal,
                          float p, uint64_t seed, uint64_t mask_offset, long tile);
// The same with the gradients' rows ldg floats apart (ld is the inputs'): a head's gradients can go to
// a scratch buffer of its own and then over the inputs, once the backward no longer reads them.
int fk_attention_backward_ldg(const float *q, const float *k, const float *v, long ld,
                              const float *out, const float *dout, long ldo, const float *lse,
                              float *dq, float *dk, float *dv, long ldg, long T, long D, int causal,
                              float p, uint64_t seed, uint64_t mask_offset, long tile);

// ---- FMA peak (peak.c) ----
/// GFLOP/s of `threads` pool threads each running `iters` rounds of 16 (AVX2: 14) independent FMA chains
/// in registers, as ../shared/bench/peak.c; avx512 picks zmm, else ymm. 0 if the CPU lacks them.
double fk_fma_peak_gflops(long threads, long iters, int avx512);

// ---- optimizer ----
// Adam/AdamW on n elements. bias corrections are passed in (1 - beta^t).
void fk_adam_update(float *param, const float *grad, float *m, float *v, long n,
                    float lr, float beta1, float beta2, float eps, float weight_decay, int decoupled,
                    float bias_correction1, float bias_correction2);

// ---- convolution layout ----
// im2col for one image. img: (C, H, W). col rows = C*KH*KW, row stride = ld (>= OH*OW), written at col + 0.
void fk_im2col(const float *img, float *col, long C, long H, long W, long KH, long KW,
               long stride_h, long stride_w, long pad_h, long pad_w, long OH, long OW, long ld);
// col2im for one image, accumulating into img (C, H, W) which the caller zeroes.
void fk_col2im(const float *col, float *img, long C, long H, long W, long KH, long KW,
               long stride_h, long stride_w, long pad_h, long pad_w, long OH, long OW, long ld);

// ---- reductions (Double accumulators) ----
double fk_sum(const float *x, long n);
double fk_sum_squares(const float *x, long n);

// ---- CPU features (for choosing OpenBLAS kernels) ----
int fk_cpu_has_avx512(void);
int fk_cpu_has_avx2_fma(void);
/// Which clone of the kernels runs here: "avx512", "avx2" or "baseline".
const char *fk_kernel_level(void);

// ---- parallel regions ----
// Set while a thread runs a chunk of Forge's parallelFor, so work started inside it (another
// parallelFor, a split GEMM) runs serially on that thread instead of oversubscribing the cores.
int fk_in_parallel_region(void);
void fk_set_parallel_region(int inside);

// ---- worker pool (thread_pool.c) ----
typedef void (*fk_chunk_fn)(void *ctx, long chunk);
/// Runs fn(ctx, i) for i in 0 ..< chunks, chunk 0 on the calling thread and chunk i on worker i,
/// inside a parallel region; returns when all are done. Serial when another job is running.
void fk_pool_run(long chunks, fk_chunk_fn fn, void *ctx);

// ---- conv/bn helpers ----
// Batch-norm statistics and affine passes over one contiguous run of a channel's values
// (the Swift side walks the (B, C, S) layout and calls these per (b, c) row of S values).
// Σ (x[i] - mean)², in Double lanes combined in a fixed order.
double fk_sum_squared_deviation(const float *x, long n, double mean);
// *sum_dy += Σ dy[i];  *sum_dy_xc += Σ dy[i]·(x[i] - mean)   (Double, fixed order)
void fk_bn_backward_sums(const float *x, const float *dy, long n, float mean, double *sum_dy, double *sum_dy_xc);
// y[i] = (x[i] - mean)·scale + shift
void fk_bn_normalize(const float *x, float *y, long n, float mean, float scale, float shift);
// dx[i] = a·dy[i] + b·(x[i] - mean) + c
void fk_bn_backward_dx(const float *x, const float *dy, float *dx, long n, float mean, float a, float b, float c);
// fk_im2col / fk_col2im with the valid output-column range [lo, hi) of each kernel column computed once,
// so the inner loops are branch-free copies (sw == 1 vectorises). Same arguments and results.
// Measured single-thread on DCGAN/3×3 planes: im2col 1.3–2× faster when OW >= 8; slower on 4-wide rows.
void fk_im2col_rows(const float *img, float *col, long C, long H, long W, long KH, long KW,
                    long stride_h, long stride_w, long pad_h, long pad_w, long OH, long OW, long ld);
/// Floats in the stack copy of fk_im2col_planes_padded and fk_col2im_planes_s2 (64 KB); callers size
/// their runs of planes by it.
#define FK_PAD_MAX 16384
/// dst row r (at dst + r·dst_ld) ← src row r (at src + r·src_ld), cols floats each, for r < rows.
void fk_copy_rows(const float *src, long src_ld, float *dst, long dst_ld, long rows, long cols);
/// n planes of one channel (at img + i·image_stride) through zero-padded stack copies; col rows (kh, kw)
/// hold the n images' windows side by side. 0 when n·(H+2ph)·(W+2pw) > 16384 (nothing written).
int fk_im2col_planes_padded(const float *img, long n, long image_stride, float *col, long H, long W, long KH, long KW,
                            long stride_h, long stride_w, long pad_h, long pad_w, long OH, long OW, long ld);
void fk_col2im_rows(const float *col, float *img, long C, long H, long W, long KH, long KW,
                    long stride_h, long stride_w, long pad_h, long pad_w, long OH, long OW, long ld);
/// n planes of one channel (at img + i·image_stride) with stride_w == 2, each starting at `initial`,
/// accumulated in a stack copy split by column parity so every add is contiguous; the same additions
/// in the same order as fk_col2im_rows on planes filled with `initial` (bit-identical).
/// 0 when n·H·W > 16384 (nothing written).
int fk_col2im_planes_s2(const float *col, float *img, long n, long image_stride, float initial, long H, long W,
                        long KH, long KW, long stride_h, long pad_h, long pad_w, long OH, long OW, long ld);


// ---- GEMM with operand views (gemm.c) ----
// C (M × N) = op(A) (M × K) · op(B) (K × N) [+ C when beta] [+ row_bias[i] per row], single precision,
// packed panels and a register-blocked micro-kernel (AVX-512 8×32, AVX2+FMA 6×16, portable 4×8, picked at
// load time; FORGE_GEMM_LEVEL=avx2|baseline forces a lower one). An operand is a view of memory:
//   FK_VIEW_MATRIX  element (r, c) = p[r·ld + c]
//   FK_VIEW_IMAGES  NCHW images as a (channels, images·pixels) matrix: (r, c) = p[(c / pixels)·image_stride + r·pixels + c % pixels]
//   FK_VIEW_IM2COL  the im2col of (images, C, H, W) with a KH×KW window: rows (c, kh, kw), columns (image, oh, ow),
//                   zero outside the image — gathered while packing, so no column buffer is written
// and `trans` makes the operand the view's transpose. The output is a matrix (pixels == 0, row stride ld) or
// NCHW images (pixels > 0: (i, j) at p + (j / pixels)·image_stride + i·pixels + j % pixels).
// Each element of C is summed over K in one fixed order whatever `threads` is (bit-identical results).
// `threads` > 1 splits C over Forge's worker pool (serial inside a parallel region).
enum { FK_VIEW_MATRIX = 0, FK_VIEW_IMAGES = 1, FK_VIEW_IM2COL = 2 };
typedef struct {
    int kind, trans;
    const float *p;
    long ld;                       // matrix
    long pixels, image_stride;     // images
    long C, H, W, KH, KW, sh, sw, ph, pw, OH, OW;   // im2col
} fk_view;
typedef struct {
    float *p;
    long ld, pixels, image_stride;
    const float *row_bias;         // NULL or (M): added after the sum
} fk_out;
fk_view fk_view_matrix(const float *p, long ld, int trans);
fk_view fk_view_images(const float *p, long pixels, long image_stride, int trans);
fk_view fk_view_im2col(const float *p, long C, long H, long W, long KH, long KW, long stride_h, long stride_w,
                       long pad_h, long pad_w, long OH, long OW, int trans);
void fk_view_gemm(const fk_view *A, const fk_view *B, const fk_out *C, long M, long N, long K, int beta, long threads);
/// A GEMM operand packed once for many products: op(B) (K × N; b row-major with row stride ldb, trans = 1
/// for B stored as N × K) in the micro-panels of the kernel current at packing time. NULL when K or N ≤ 0
/// or memory runs out. Free with fk_packed_b_free.
typedef struct fk_packed_b fk_packed_b;
fk_packed_b *fk_packed_b_new(const float *b, long ldb, int trans, long K, long N);
void fk_packed_b_free(fk_packed_b *b);
long fk_packed_b_rows(const fk_packed_b *b);
long fk_packed_b_cols(const fk_packed_b *b);
/// C (M × N, row-major, row stride ldc) = [C +] A · op(B), A row-major (M × K, row stride lda), B pre-packed.
/// Each element is summed in the same order whatever `threads` is (whole column panels per thread).
void fk_gemm_prepacked(const float *a, long lda, long M, const fk_packed_b *b, float *c, long ldc, int beta, long threads);
/// Forces the micro-kernel level (0 baseline, 1 avx2, 2 avx512; -1 the best the CPU runs); 0 if the CPU lacks it.
int fk_gemm_set_level(int level);
/// "avx512", "avx2" or "baseline": the micro-kernel fk_gemm uses now.
const char *fk_gemm_level_name(void);

// ---- inference (inference.c): exact char sampling's window forward ----
// Causal attention of one head for query rows [first, T): row r of out (at out + (r - first)·ldo) is
// softmax(q[r]·k[0...r]ᵀ / √D) · v[0...r]. q, k, v: (T, D) with row stride ld (one head's columns of
// a (T, 3C) qkv buffer). scratch: fk_causal_attention_scratch(T, D) floats (contiguous copies of the
// head's k (transposed) and v, scores and scaled queries of two rows).
void fk_causal_attention_rows(const float *q, const float *k, const float *v, long ld,
                              float *out, long ldo, long T, long D, long first, float *scratch);
long fk_causal_attention_scratch(long T, long D);
// One row through a Linear layer without bias: y[j] (+)= Σ_i w[j·in + i]·x[i] for j < out (w is (out, in),
// row-major, as a Linear weight); accumulate = 0 overwrites y, 1 adds to it. Each y[j] is a dot
// product in fixed lanes, so the result depends on nothing but w and x.
void fk_matvec(const float *w, const float *x, float *y, long out, long in, int accumulate);

#endif
