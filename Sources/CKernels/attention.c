// Flash-style scaled dot-product attention for one head: FlashAttention-2's tiling, on a CPU.
//
// Why: keeping the attention probabilities P (T × T per head) for backward cost the char
// transformer B·H·T² floats per layer (64 · 6 · 256² floats = 100 MB per layer at the shakespeare
// preset), more memory than the rest of its activations. Here forward walks K/V in tiles with an
// online softmax and keeps only each row's log-sum-exp (T floats per head); backward recomputes P
// tile by tile from it. With a causal mask, tiles wholly above the diagonal are skipped, so about
// half of the T × T products are never computed.
//
// The tile products are OpenBLAS sgemm calls (single-threaded: Forge runs heads in parallel on its
// own workers); the per-tile softmax, dropout and gradient passes are loops compiled per target
// (AVX-512, AVX2+FMA, baseline) and picked at load time, as in kernels.c.
//
// Notation, per head: q, k, v, out, dout are (T, D) with row stride `ld` (q/k/v/dq/dk/dv) or
// `ldo` (out/dout); S = scale·q·kᵀ, P = softmax(S) (rows), P̃ = P ∘ Z with Z = mask/(1-p), out = P̃·v.
// The dropout mask of element (r, c) is fk_dropout_keeps(seed, mask_offset + r·T + c): the same
// index as a stored (T, T) matrix would have, so any tiling gives the same mask.
#include "CKernels.h"
#include "fk_math.h"
#include <cblas.h>
#include <stdlib.h>

FK_INLINE void fk_gemm(int trans_a, int trans_b, long m, long n, long k, float alpha, const float *a, long lda,
                       const float *b, long ldb, float beta, float *c, long ldc) {
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                (blasint)m, (blasint)n, (blasint)k, alpha, a, (blasint)lda, b, (blasint)ldb, beta, c, (blasint)ldc);
}

// Columns [0, n) of a tile row that query row `row` may see, for a tile starting at key `col0`.
FK_INLINE long fk_visible(int causal, long row, long col0, long n) {
    if (!causal) return n;
    long v = row - col0 + 1;
    return v < 0 ? 0 : (v > n ? n : v);
}

FK_INLINE float fk_row_dot(const float *restrict a, const float *restrict b, long n) {
    float acc[FK_LANES] = {0};
    long c = 0;
    for (; c + FK_LANES <= n; c += FK_LANES)
        for (int k = 0; k < FK_LANES; k++) acc[k] += a[c + k] * b[c + k];
    float s = 0.0f;
    for (; c < n; c++) s += a[c] * b[c];
    for (int k = 0; k < FK_LANES; k++) s += acc[k];
    return s;
}

// out = P̃·v; lse[r] = log Σ_c exp(S[r][c]) over the visible columns (the only statistic kept).
// q, k, v: (T, D) row stride ld;  out: (T, D) row stride ldo;  lse: (T)
FK_CLONES int fk_attention_forward(const float *q, const float *k, const float *v, long ld,
                                   float *out, long ldo, float *lse, long T, long D, int causal,
                                   float p, uint64_t seed, uint64_t mask_offset, long tile) {
    const float scale = 1.0f / sqrtf((float)D);
    const float keep_scale = 1.0f / (1.0f - p);
    const uint64_t threshold = fk_dropout_threshold(p);
    float *S = malloc(sizeof(float) * (size_t)(tile * tile + 2 * tile));  // scores, then P̃, of one tile
    if (!S) return 0;
    float *row_max = S + tile * tile, *row_sum = row_max + tile;          // m and l of the online softmax
    for (long r0 = 0; r0 < T; r0 += tile) {
        const long br = T - r0 < tile ? T - r0 : tile;
        for (long r = 0; r < br; r++) {
            row_max[r] = -INFINITY;
            row_sum[r] = 0.0f;
            float *o = out + (r0 + r) * ldo;
            for (long d = 0; d < D; d++) o[d] = 0.0f;
        }
        const long key_end = causal ? r0 + br : T;  // causal: later keys are masked for the whole block
        for (long c0 = 0; c0 < key_end; c0 += tile) {
            const long bc = key_end - c0 < tile ? key_end - c0 : tile;
            // S = scale · q[r0 : r0+br] · k[c0 : c0+bc]ᵀ   (br, bc)
            fk_gemm(0, 1, br, bc, D, scale, q + r0 * ld, ld, k + c0 * ld, ld, 0.0f, S, tile);
            for (long r = 0; r < br; r++) {
                const long row = r0 + r;
                float *s = S + r * tile;
                const long n = fk_visible(causal, row, c0, bc);
                float mx = row_max[r];
                for (long c = 0; c < n; c++) mx = s[c] > mx ? s[c] : mx;
                // rescale what the earlier tiles summed to the new max (nothing to rescale at first)
                const float correction = row_max[r] == -INFINITY ? 0.0f : fk_expf(row_max[r] - mx);
                for (long c = 0; c < n; c++) s[c] = fk_expf(s[c] - mx);
                row_sum[r] = row_sum[r] * correction + fk_row_sum(s, n);   // softmax's denominator: un-dropped
                if (p > 0.0f) {
                    const uint64_t base = mask_offset + (uint64_t)row * (uint64_t)T + (uint64_t)c0;
                    for (long c = 0; c < n; c++)
                        s[c] = fk_dropout_keeps(seed, base + (uint64_t)c, threshold) ? s[c] * keep_scale : 0.0f;
                }
                for (long c = n; c < bc; c++) s[c] = 0.0f;
                if (n > 0) row_max[r] = mx;
                if (correction != 1.0f) {
                    float *o = out + row * ldo;
                    for (long d = 0; d < D; d++) o[d] *= correction;
                }
            }
            // out[r0 : r0+br] += P̃ · v[c0 : c0+bc]   (br, D)
            fk_gemm(0, 0, br, D, bc, 1.0f, S, tile, v + c0 * ld, ld, 1.0f, out + r0 * ldo, ldo);
        }
        for (long r = 0; r < br; r++) {
            float *o = out + (r0 + r) * ldo;
            const float inv = 1.0f / row_sum[r];
            for (long d = 0; d < D; d++) o[d] *= inv;
            lse[r0 + r] = row_max[r] + logf(row_sum[r]);
        }
    }
    free(S);
    return 1;
}

// Accumulates dq, dk, dv (+=; the caller zeroes them). FlashAttention-2's backward:
//   Drow[r] = Σ_d dout[r][d]·out[r][d]  (= Σ_c P[r][c]·dP[r][c], dropout included)
//   per tile: P = exp(S − lse), dP = (dout·vᵀ) ∘ Z, dS = P ∘ (dP − Drow)
//   dv += P̃ᵀ·dout,  dq += scale·dS·k,  dk += scale·dSᵀ·q
// q, k, v, dq, dk, dv: (T, D) row stride ld;  out, dout: (T, D) row stride ldo;  lse: (T)
FK_CLONES int fk_attention_backward_ldg(const float *q, const float *k, const float *v, long ld,
                                        const float *out, const float *dout, long ldo, const float *lse,
                                        float *dq, float *dk, float *dv, long ldg, long T, long D, int causal,
                                        float p, uint64_t seed, uint64_t mask_offset, long tile) {
    const float scale = 1.0f / sqrtf((float)D);
    const float keep_scale = 1.0f / (1.0f - p);
    const uint64_t threshold = fk_dropout_threshold(p);
    float *P = malloc(sizeof(float) * (size_t)(2 * tile * tile + T));
    if (!P) return 0;
    float *dS = P + tile * tile, *Drow = dS + tile * tile;
    for (long r = 0; r < T; r++) Drow[r] = fk_row_dot(dout + r * ldo, out + r * ldo, D);
    for (long c0 = 0; c0 < T; c0 += tile) {            // outer: one K/V tile, whose dk, dv it completes
        const long bc = T - c0 < tile ? T - c0 : tile;
        const long r_start = causal ? (c0 / tile) * tile : 0;   // earlier query blocks see none of these keys
        for (long r0 = r_start; r0 < T; r0 += tile) {
            const long br = T - r0 < tile ? T - r0 : tile;
            // P = scale · q[r0 : r0+br] · k[c0 : c0+bc]ᵀ, then exponentiated in place   (br, bc)
            fk_gemm(0, 1, br, bc, D, scale, q + r0 * ld, ld, k + c0 * ld, ld, 0.0f, P, tile);
            // dS = dout[r0 : r0+br] · v[c0 : c0+bc]ᵀ, the gradient of P̃   (br, bc)
            fk_gemm(0, 1, br, bc, D, 1.0f, dout + r0 * ldo, ldo, v + c0 * ld, ld, 0.0f, dS, tile);
            for (long r = 0; r < br; r++) {
                const long row = r0 + r;
                float *pr = P + r * tile, *ds = dS + r * tile;
                const long n = fk_visible(causal, row, c0, bc);
                const float l = lse[row], drow = Drow[row];
                if (p > 0.0f) {
                    const uint64_t base = mask_offset + (uint64_t)row * (uint64_t)T + (uint64_t)c0;
                    for (long c = 0; c < n; c++) {
                        const float z = fk_dropout_keeps(seed, base + (uint64_t)c, threshold) ? keep_scale : 0.0f;
                        const float pc = fk_expf(pr[c] - l);
                        ds[c] = scale * pc * (ds[c] * z - drow);
                        pr[c] = pc * z;                                  // P̃, for dv
                    }
                } else {
                    for (long c = 0; c < n; c++) {
                        const float pc = fk_expf(pr[c] - l);
                        ds[c] = scale * pc * (ds[c] - drow);
                        pr[c] = pc;
                    }
                }
                for (long c = n; c < bc; c++) { pr[c] = 0.0f; ds[c] = 0.0f; }
            }
            // dv[c0 : c0+bc] += P̃ᵀ · dout[r0 : r0+br]   (bc, D)
            fk_gemm(1, 0, bc, D, br, 1.0f, P, tile, dout + r0 * ldo, ldo, 1.0f, dv + c0 * ldg, ldg);
            // dq[r0 : r0+br] += dS · k[c0 : c0+bc]   (br, D)
            fk_gemm(0, 0, br, D, bc, 1.0f, dS, tile, k + c0 * ld, ld, 1.0f, dq + r0 * ldg, ldg);
            // dk[c0 : c0+bc] += dSᵀ · q[r0 : r0+br]   (bc, D)
            fk_gemm(1, 0, bc, D, br, 1.0f, dS, tile, q + r0 * ld, ld, 1.0f, dk + c0 * ldg, ldg);
        }
    }
    free(P);
    return 1;
}

int fk_attention_backward(const float *q, const float *k, const float *v, long ld,
                          const float *out, const float *dout, long ldo, const float *lse,
                          float *dq, float *dk, float *dv, long T, long D, int causal,
                          float p, uint64_t seed, uint64_t mask_offset, long tile) {
    return fk_attention_backward_ldg(q, k, v, ld, out, dout, ldo, lse, dq, dk, dv, ld, T, D, causal, p, seed, mask_offset, tile);
}
