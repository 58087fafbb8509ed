// Inference kernels for exact char sampling (Models/CharTransformer.swift, WindowInference): causal
// attention of one head for a range of query rows, and one row through a Linear layer (y = W·x).
//
// Why not sgemm here: exact sampling re-runs the last `block` tokens once per new token, and per head
// that is a T×T×D product with D = 32 (for the 128-wide, 4-head models) — a shape where a full sgemm
// spends as long packing as multiplying, and computes the masked upper half too. Here the scores of
// each query row are accumulated over a transposed copy of K (contiguous in the key index, so the
// loop over keys vectorises), only for the keys the row may see; the softmax uses fk_expf; and
// the P·V sum runs over those keys only. The last layer needs only the last query row (first = T-1).
// The single-row Linear (the last position through the last block, the final LayerNorm and lm_head)
// is a dot product per output feature in fixed lanes, so a row's result depends only on that row:
// a sequence's logits are the same bits whatever else is decoded beside it.
//
// Compiled per target (AVX-512, AVX2+FMA, baseline) and picked at load time, as in kernels.c.
#include "CKernels.h"
#include "fk_math.h"

FK_INLINE float fk_row_max_lanes(const float *restrict x, long n) {
    float acc[FK_LANES];
    for (int k = 0; k < FK_LANES; k++) acc[k] = -INFINITY;
    long c = 0;
    for (; c + FK_LANES <= n; c += FK_LANES)
        for (int k = 0; k < FK_LANES; k++) acc[k] = x[c + k] > acc[k] ? x[c + k] : acc[k];
    float m = -INFINITY;
    for (; c < n; c++) m = x[c] > m ? x[c] : m;
    for (int k = 0; k < FK_LANES; k++) m = acc[k] > m ? acc[k] : m;
    return m;
}

FK_INLINE float fk_dot_lanes(const float *restrict a, const float *restrict b, long n) {
    float acc[2 * FK_LANES] = {0};
    long c = 0;
    for (; c + 2 * FK_LANES <= n; c += 2 * FK_LANES)
        for (int k = 0; k < 2 * FK_LANES; k++) acc[k] += a[c + k] * b[c + k];
    float s = 0.0f;
    for (; c < n; c++) s += a[c] * b[c];
    for (int k = 0; k < 2 * FK_LANES; k++) s += acc[k];
    return s;
}

// Keys are scored 16 at a time (one vector of lanes), 4 such blocks at once, for 2 query rows at
// once (so each loaded key vector serves both rows); the P·V sums likewise run over 4 keys × 2 rows
// into separate accumulators. The compiler keeps all of them in registers, and the independent chains
// hide the FMA latency. K (transposed) and V of the head are first copied to contiguous scratch: their
// rows are 3C floats apart in the qkv buffer, a stride that maps every row to the same few L1 sets.
#define FK_ATT_LANES 16
#define FK_ATT_ROWS 2
#define FK_ATT_PAD(T) (((T) + FK_ATT_LANES - 1) / FK_ATT_LANES * FK_ATT_LANES)

long fk_causal_attention_scratch(long T, long D) {
    return D * FK_ATT_PAD(T) + T * D + FK_ATT_ROWS * (FK_ATT_PAD(T) + D);
}

// Query rows r ... r+R-1 (R ≤ FK_ATT_ROWS, a constant at each call so the loops over it unroll).
FK_INLINE void fk_attention_row_block(const float *restrict kt, const float *restrict vh, long Tp, long D,
                                      const float *restrict q, long ld, float scale, long r, int R,
                                      float *restrict s, float *restrict qs, float *restrict out, long ldo) {
    enum { L = FK_ATT_LANES, J = 4 };
    for (int i = 0; i < R; i++)
        for (long d = 0; d < D; d++) qs[i * D + d] = q[(r + i) * ld + d] * scale;
    // scores of keys 0 ... r+R-1 in whole blocks (the last row sees them all); row i reads r+i+1 of them
    const long np = FK_ATT_PAD(r + R);
    long c0 = 0;
    for (; c0 + J * L <= np; c0 += J * L) {
        float a[FK_ATT_ROWS][J][L] = {{{0}}};
        for (long d = 0; d < D; d++) {
            const float *restrict kd = kt + d * Tp + c0;
            for (int i = 0; i < R; i++) {
                const float qd = qs[i * D + d];
                for (int j = 0; j < J; j++)
                    for (int l = 0; l < L; l++) a[i][j][l] += qd * kd[j * L + l];
            }
        }
        for (int i = 0; i < R; i++)
            for (int j = 0; j < J; j++)
                for (int l = 0; l < L; l++) s[i * Tp + c0 + j * L + l] = a[i][j][l];
    }
    for (; c0 < np; c0 += L) {
        float a[FK_ATT_ROWS][L] = {{0}};
        for (long d = 0; d < D; d++) {
            const float *restrict kd = kt + d * Tp + c0;
            for (int i = 0; i < R; i++) {
                const float qd = qs[i * D + d];
                for (int l = 0; l < L; l++) a[i][l] += qd * kd[l];
            }
        }
        for (int i = 0; i < R; i++)
            for (int l = 0; l < L; l++) s[i * Tp + c0 + l] = a[i][l];
    }
    float inv[FK_ATT_ROWS];
    for (int i = 0; i < R; i++) {
        const long n = r + i + 1;          // causal: row r+i sees keys 0 ... r+i
        float *restrict si = s + i * Tp;
        const float mx = fk_row_max_lanes(si, n);
        for (long c = 0; c < n; c++) si[c] = fk_expf(si[c] - mx);
        inv[i] = 1.0f / fk_row_sum(si, n);
    }
    const long shared = r + 1;             // keys every row of the block sees
    long e0 = 0;
    for (; e0 + L <= D; e0 += L) {
        float o[FK_ATT_ROWS][J][L] = {{{0}}};
        long c = 0;
        for (; c + J <= shared; c += J) {
            const float *restrict vc = vh + c * D + e0;
            for (int i = 0; i < R; i++)
                for (int j = 0; j < J; j++) {
                    const float p = s[i * Tp + c + j];
                    for (int l = 0; l < L; l++) o[i][j][l] += p * vc[j * D + l];
                }
        }
        for (int i = 0; i < R; i++) {
            for (long cc = c; cc < r + i + 1; cc++) {
                const float p = s[i * Tp + cc];
                const float *restrict vc = vh + cc * D + e0;
                for (int l = 0; l < L; l++) o[i][0][l] += p * vc[l];
            }
            float *restrict oi = out + i * ldo + e0;
            for (int l = 0; l < L; l++) oi[l] = ((o[i][0][l] + o[i][1][l]) + (o[i][2][l] + o[i][3][l])) * inv[i];
        }
    }
    for (; e0 < D; e0++)                   // head sizes that are not a multiple of 16
        for (int i = 0; i < R; i++) {
            float acc = 0.0f;
            for (long c = 0; c < r + i + 1; c++) acc += s[i * Tp + c] * vh[c * D + e0];
            out[i * ldo + e0] = acc * inv[i];
        }
}

FK_CLONES void fk_causal_attention_rows(const float *q, const float *k, const float *v, long ld,
                                        float *out, long ldo, long T, long D, long first, float *scratch) {
    const float scale = 1.0f / sqrtf((float)D);
    const long Tp = FK_ATT_PAD(T);
    float *restrict kt = scratch;          // (D, Tp): kt[d·Tp + c] = k[c·ld + d], zero past T
    float *restrict vh = kt + D * Tp;      // (T, D): this head's values, contiguous
    float *restrict s = vh + T * D;        // (FK_ATT_ROWS, Tp): scores, then probabilities
    float *restrict qs = s + FK_ATT_ROWS * Tp;  // (FK_ATT_ROWS, D): query rows times scale
    for (long c = 0; c < T; c++) {
        const float *restrict kc = k + c * ld, *restrict vc = v + c * ld;
        for (long d = 0; d < D; d++) kt[d * Tp + c] = kc[d];
        for (long d = 0; d < D; d++) vh[c * D + d] = vc[d];
    }
    for (long d = 0; d < D; d++)
        for (long c = T; c < Tp; c++) kt[d * Tp + c] = 0.0f;
    long r = first;
    for (; r + FK_ATT_ROWS <= T; r += FK_ATT_ROWS)
        fk_attention_row_block(kt, vh, Tp, D, q, ld, scale, r, FK_ATT_ROWS, s, qs, out + (r - first) * ldo, ldo);
    for (; r < T; r++)
        fk_attention_row_block(kt, vh, Tp, D, q, ld, scale, r, 1, s, qs, out + (r - first) * ldo, ldo);
}

FK_CLONES void fk_matvec(const float *w, const float *x, float *y, long out, long in, int accumulate) {
    for (long j = 0; j < out; j++) {
        const float s = fk_dot_lanes(w + j * in, x, in);
        y[j] = accumulate ? y[j] + s : s;
    }
}
