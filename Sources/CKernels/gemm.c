// Forge's own single-precision GEMM with packing (BLIS-style) and implicit-GEMM convolution views.
// See include/CKernels.h (fk_view_gemm) for the contract.
//
// Why: Debian's OpenBLAS reaches ~77 % of peak at best, less on a DCGAN's thin conv shapes (K = 48:
// a 3-channel 4×4 conv), and an im2col buffer costs a full write and read of the lowered input per
// layer. Here an operand can be a *view*: a plain matrix, NCHW images seen as (channels, images·pixels),
// or the im2col of NCHW images, gathered straight into the packed panels, so no column buffer exists;
// the output can be written as NCHW images (+ a per-channel bias) directly.
//
// Structure (per thread, on its own block of C): for each NC-wide column panel, for each KC-deep slice
// of K: pack op(B)[kc × nc] into NR-wide micro-panels; for each MC-tall row block: pack op(A)[mc × kc]
// into MR-tall micro-panels; then the micro-kernel computes MR × NR tiles in registers.
//
// Determinism: every element of C is Σ over K in the same order — KC slices in order, p in order
// inside a slice, one FMA per p — whatever the thread count or where a thread's block starts: edge
// tiles are computed full size on zero-padded panels and only their valid part is stored, so an element
// gets the same arithmetic on the edge as inside. The split only decides which thread does a tile.
#include "CKernels.h"
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#ifndef FK_GEMM_KC
#define FK_GEMM_KC 256
#endif
#ifndef FK_GEMM_MC
#define FK_GEMM_MC 128
#endif
#ifndef FK_GEMM_NC
#define FK_GEMM_NC 512
#endif

// ---------------------------------------------------------------------------------------------
// views

fk_view fk_view_matrix(const float *p, long ld, int trans) {
    fk_view v;
    memset(&v, 0, sizeof v);
    v.kind = FK_VIEW_MATRIX; v.trans = trans; v.p = p; v.ld = ld;
    return v;
}

fk_view fk_view_images(const float *p, long pixels, long image_stride, int trans) {
    fk_view v;
    memset(&v, 0, sizeof v);
    v.kind = FK_VIEW_IMAGES; v.trans = trans; v.p = p; v.pixels = pixels; v.image_stride = image_stride;
    return v;
}

fk_view fk_view_im2col(const float *p, long C, long H, long W, long KH, long KW, long stride_h, long stride_w,
                       long pad_h, long pad_w, long OH, long OW, int trans) {
    fk_view v;
    memset(&v, 0, sizeof v);
    v.kind = FK_VIEW_IM2COL; v.trans = trans; v.p = p;
    v.C = C; v.H = H; v.W = W; v.KH = KH; v.KW = KW; v.sh = stride_h; v.sw = stride_w;
    v.ph = pad_h; v.pw = pad_w; v.OH = OH; v.OW = OW;
    return v;
}

// dst[0 ..< len] = row `row` of the view (untransposed), columns col0 ..< col0 + len.
static void fk_view_run(const fk_view *v, long row, long col0, long len, float *restrict dst) {
    switch (v->kind) {
    case FK_VIEW_MATRIX:
        memcpy(dst, v->p + row * v->ld + col0, (size_t)len * sizeof(float));
        return;
    case FK_VIEW_IMAGES: {
        long img = col0 / v->pixels, pix = col0 % v->pixels;
        while (len > 0) {
            long take = v->pixels - pix < len ? v->pixels - pix : len;
            memcpy(dst, v->p + img * v->image_stride + row * v->pixels + pix, (size_t)take * sizeof(float));
            dst += take; len -= take; img++; pix = 0;
        }
        return;
    }
    default: {   // im2col: row = (c, kh, kw), column = (image, oh, ow)
        long area = v->KH * v->KW;
        long c = row / area, kh = (row / v->KW) % v->KH, kw = row % v->KW;
        long P = v->OH * v->OW, W = v->W, sw = v->sw;
        long img = col0 / P, rem = col0 % P, oh = rem / v->OW, ow = rem % v->OW;
        // output columns o with 0 <= o·sw − pw + kw < W: o in [olo, ohi)
        long lead = v->pw - kw;
        long olo = lead > 0 ? (lead + sw - 1) / sw : 0;
        long last = W + lead - 1;
        long ohi = last < 0 ? 0 : last / sw + 1;
        if (ohi > v->OW) ohi = v->OW;
        const float *plane = v->p + img * v->C * v->H * W + c * v->H * W;
        while (len > 0) {
            long take = v->OW - ow < len ? v->OW - ow : len;
            long ih = oh * v->sh - v->ph + kh;
            if (ih < 0 || ih >= v->H) {
                memset(dst, 0, (size_t)take * sizeof(float));
            } else {
                const float *src = plane + ih * W - lead;   // src[o·sw] is input column o·sw − pw + kw
                long end = ow + take;
                long a = ow, lo = olo > ow ? olo : ow, hi = ohi < end ? ohi : end;
                if (hi < lo) hi = lo;
                for (; a < lo; a++) dst[a - ow] = 0.0f;
                if (sw == 1) {
                    if (hi > lo) memcpy(dst + (lo - ow), src + lo, (size_t)(hi - lo) * sizeof(float));
                } else {
                    for (a = lo; a < hi; a++) dst[a - ow] = src[a * sw];
                }
                for (a = hi; a < end; a++) dst[a - ow] = 0.0f;
            }
            dst += take; len -= take;
            ow = 0;
            if (++oh == v->OH) { oh = 0; img++; plane = v->p + img * v->C * v->H * W + c * v->H * W; }
        }
        return;
    }
    }
}

// ---------------------------------------------------------------------------------------------
// packing (MR, NR given at run time: they depend on the kernel level)

// Bp ← op(B)[pc ..< pc+kc, jc ..< jc+nc] as NR-wide micro-panels (element (p, t) at (t/NR)·kc·NR + p·NR + t%NR),
// zero-padded to a multiple of NR columns.
static void fk_pack_b(const fk_view *B, long pc, long kc, long jc, long nc, long NR, float *restrict Bp, float *restrict tmp) {
    long blocks = (nc + NR - 1) / NR;
    if (!B->trans) {
        for (long p = 0; p < kc; p++) {
            fk_view_run(B, pc + p, jc, nc, tmp);
            for (long jb = 0; jb < blocks; jb++) {
                float *d = Bp + jb * kc * NR + p * NR;
                long w = nc - jb * NR < NR ? nc - jb * NR : NR;
                memcpy(d, tmp + jb * NR, (size_t)w * sizeof(float));
                for (long t = w; t < NR; t++) d[t] = 0.0f;
            }
        }
    } else {
        for (long t = 0; t < nc; t++) {
            fk_view_run(B, jc + t, pc, kc, tmp);
            float *d = Bp + (t / NR) * kc * NR + (t % NR);
            for (long p = 0; p < kc; p++) d[p * NR] = tmp[p];
        }
        for (long t = nc; t < blocks * NR; t++) {
            float *d = Bp + (t / NR) * kc * NR + (t % NR);
            for (long p = 0; p < kc; p++) d[p * NR] = 0.0f;
        }
    }
}

// Ap ← op(A)[ic ..< ic+mc, pc ..< pc+kc] as MR-tall micro-panels (element (i, p) at (i/MR)·kc·MR + p·MR + i%MR),
// zero-padded to a multiple of MR rows.
static void fk_pack_a(const fk_view *A, long ic, long mc, long pc, long kc, long MR, float *restrict Ap, float *restrict tmp) {
    long blocks = (mc + MR - 1) / MR;
    if (!A->trans) {
        for (long i = 0; i < mc; i++) {
            fk_view_run(A, ic + i, pc, kc, tmp);
            float *d = Ap + (i / MR) * kc * MR + (i % MR);
            for (long p = 0; p < kc; p++) d[p * MR] = tmp[p];
        }
        for (long i = mc; i < blocks * MR; i++) {
            float *d = Ap + (i / MR) * kc * MR + (i % MR);
            for (long p = 0; p < kc; p++) d[p * MR] = 0.0f;
        }
    } else {
        for (long p = 0; p < kc; p++) {
            fk_view_run(A, pc + p, ic, mc, tmp);
            for (long ib = 0; ib < blocks; ib++) {
                float *d = Ap + ib * kc * MR + p * MR;
                long h = mc - ib * MR < MR ? mc - ib * MR : MR;
                memcpy(d, tmp + ib * MR, (size_t)h * sizeof(float));
                for (long i = h; i < MR; i++) d[i] = 0.0f;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// micro-kernels: tile (MR × NR) of Ap-panel · Bp-panel over kc, then stored into c (row stride ldc):
//   c = (accumulate ? c + acc : acc), then + bias[i] when bias != NULL.
// `c` may be a scratch tile (ldc = NR) that the caller scatters; the arithmetic is the same either way.

typedef void (*fk_micro_fn)(long kc, const float *Ap, const float *Bp, float *c, long ldc, int accumulate, const float *bias);

#define FK512_MR 8
#define FK512_NR 32
__attribute__((target("avx512f"))) static void fk_micro_avx512(long kc, const float *restrict Ap, const float *restrict Bp,
                                                             float *c, long ldc, int accumulate, const float *bias) {
    __m512 c00 = _mm512_setzero_ps(), c01 = _mm512_setzero_ps(), c10 = _mm512_setzero_ps(), c11 = _mm512_setzero_ps();
    __m512 c20 = _mm512_setzero_ps(), c21 = _mm512_setzero_ps(), c30 = _mm512_setzero_ps(), c31 = _mm512_setzero_ps();
    __m512 c40 = _mm512_setzero_ps(), c41 = _mm512_setzero_ps(), c50 = _mm512_setzero_ps(), c51 = _mm512_setzero_ps();
    __m512 c60 = _mm512_setzero_ps(), c61 = _mm512_setzero_ps(), c70 = _mm512_setzero_ps(), c71 = _mm512_setzero_ps();
    for (long p = 0; p < kc; p++) {
        __m512 b0 = _mm512_loadu_ps(Bp), b1 = _mm512_loadu_ps(Bp + 16);
        __m512 a;
        a = _mm512_set1_ps(Ap[0]); c00 = _mm512_fmadd_ps(a, b0, c00); c01 = _mm512_fmadd_ps(a, b1, c01);
        a = _mm512_set1_ps(Ap[1]); c10 = _mm512_fmadd_ps(a, b0, c10); c11 = _mm512_fmadd_ps(a, b1, c11);
        a = _mm512_set1_ps(Ap[2]); c20 = _mm512_fmadd_ps(a, b0, c20); c21 = _mm512_fmadd_ps(a, b1, c21);
        a = _mm512_set1_ps(Ap[3]); c30 = _mm512_fmadd_ps(a, b0, c30); c31 = _mm512_fmadd_ps(a, b1, c31);
        a = _mm512_set1_ps(Ap[4]); c40 = _mm512_fmadd_ps(a, b0, c40); c41 = _mm512_fmadd_ps(a, b1, c41);
        a = _mm512_set1_ps(Ap[5]); c50 = _mm512_fmadd_ps(a, b0, c50); c51 = _mm512_fmadd_ps(a, b1, c51);
        a = _mm512_set1_ps(Ap[6]); c60 = _mm512_fmadd_ps(a, b0, c60); c61 = _mm512_fmadd_ps(a, b1, c61);
        a = _mm512_set1_ps(Ap[7]); c70 = _mm512_fmadd_ps(a, b0, c70); c71 = _mm512_fmadd_ps(a, b1, c71);
        Ap += FK512_MR; Bp += FK512_NR;
    }
    __m512 acc[FK512_MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}, {c60, c61}, {c70, c71}};
    for (int i = 0; i < FK512_MR; i++) {
        float *row = c + i * ldc;
        __m512 v0 = acc[i][0], v1 = acc[i][1];
        if (accumulate) { v0 = _mm512_add_ps(_mm512_loadu_ps(row), v0); v1 = _mm512_add_ps(_mm512_loadu_ps(row + 16), v1); }
        if (bias) { __m512 bb = _mm512_set1_ps(bias[i]); v0 = _mm512_add_ps(v0, bb); v1 = _mm512_add_ps(v1, bb); }
        _mm512_storeu_ps(row, v0); _mm512_storeu_ps(row + 16, v1);
    }
}

#define FK256_MR 6
#define FK256_NR 16
__attribute__((target("avx2,fma"))) static void fk_micro_avx2(long kc, const float *restrict Ap, const float *restrict Bp,
                                                            float *c, long ldc, int accumulate, const float *bias) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(), c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps(), c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    for (long p = 0; p < kc; p++) {
        __m256 b0 = _mm256_loadu_ps(Bp), b1 = _mm256_loadu_ps(Bp + 8);
        __m256 a;
        a = _mm256_broadcast_ss(Ap + 0); c00 = _mm256_fmadd_ps(a, b0, c00); c01 = _mm256_fmadd_ps(a, b1, c01);
        a = _mm256_broadcast_ss(Ap + 1); c10 = _mm256_fmadd_ps(a, b0, c10); c11 = _mm256_fmadd_ps(a, b1, c11);
        a = _mm256_broadcast_ss(Ap + 2); c20 = _mm256_fmadd_ps(a, b0, c20); c21 = _mm256_fmadd_ps(a, b1, c21);
        a = _mm256_broadcast_ss(Ap + 3); c30 = _mm256_fmadd_ps(a, b0, c30); c31 = _mm256_fmadd_ps(a, b1, c31);
        a = _mm256_broadcast_ss(Ap + 4); c40 = _mm256_fmadd_ps(a, b0, c40); c41 = _mm256_fmadd_ps(a, b1, c41);
        a = _mm256_broadcast_ss(Ap + 5); c50 = _mm256_fmadd_ps(a, b0, c50); c51 = _mm256_fmadd_ps(a, b1, c51);
        Ap += FK256_MR; Bp += FK256_NR;
    }
    __m256 acc[FK256_MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    for (int i = 0; i < FK256_MR; i++) {
        float *row = c + i * ldc;
        __m256 v0 = acc[i][0], v1 = acc[i][1];
        if (accumulate) { v0 = _mm256_add_ps(_mm256_loadu_ps(row), v0); v1 = _mm256_add_ps(_mm256_loadu_ps(row + 8), v1); }
        if (bias) { __m256 bb = _mm256_set1_ps(bias[i]); v0 = _mm256_add_ps(v0, bb); v1 = _mm256_add_ps(v1, bb); }
        _mm256_storeu_ps(row, v0); _mm256_storeu_ps(row + 8, v1);
    }
}

// Portable: separate multiply and add (baseline x86-64 has no FMA), vectorised by the compiler.
#define FKB_MR 4
#define FKB_NR 8
static void fk_micro_baseline(long kc, const float *restrict Ap, const float *restrict Bp,
                              float *c, long ldc, int accumulate, const float *bias) {
    float acc[FKB_MR][FKB_NR];
    memset(acc, 0, sizeof acc);
    for (long p = 0; p < kc; p++) {
        for (int i = 0; i < FKB_MR; i++) {
            float a = Ap[i];
            for (int j = 0; j < FKB_NR; j++) { float prod = a * Bp[j]; acc[i][j] = acc[i][j] + prod; }
        }
        Ap += FKB_MR; Bp += FKB_NR;
    }
    for (int i = 0; i < FKB_MR; i++) {
        float *row = c + i * ldc;
        for (int j = 0; j < FKB_NR; j++) {
            float v = acc[i][j];
            if (accumulate) v = row[j] + v;
            if (bias) v = v + bias[i];
            row[j] = v;
        }
    }
}

typedef struct { int level; long MR, NR; fk_micro_fn fn; const char *name; } fk_gemm_kernel;
static const fk_gemm_kernel fk_gemm_kernels[3] = {
    {0, FKB_MR, FKB_NR, fk_micro_baseline, "baseline"},
    {1, FK256_MR, FK256_NR, fk_micro_avx2, "avx2"},
    {2, FK512_MR, FK512_NR, fk_micro_avx512, "avx512"},
};
static int fk_gemm_level = -1;

static int fk_gemm_best_level(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
    return 0;
}

static const fk_gemm_kernel *fk_gemm_current(void) {
    int level = __atomic_load_n(&fk_gemm_level, __ATOMIC_RELAXED);
    if (level < 0) {
        level = fk_gemm_best_level();
        const char *s = getenv("FORGE_GEMM_LEVEL");   // "avx2" or "baseline" forces a lower clone (tests, A/B runs)
        if (s && strcmp(s, "avx2") == 0 && level >= 1) level = 1;
        if (s && strcmp(s, "baseline") == 0) level = 0;
        __atomic_store_n(&fk_gemm_level, level, __ATOMIC_RELAXED);
    }
    return &fk_gemm_kernels[level];
}

int fk_gemm_set_level(int level) {
    if (level < 0) { __atomic_store_n(&fk_gemm_level, fk_gemm_best_level(), __ATOMIC_RELAXED); return 1; }
    if (level > 2 || level > fk_gemm_best_level()) return 0;
    __atomic_store_n(&fk_gemm_level, level, __ATOMIC_RELAXED);
    return 1;
}

const char *fk_gemm_level_name(void) { return fk_gemm_current()->name; }

// ---------------------------------------------------------------------------------------------
// output

// c(i, j) address in the output, and how many columns from j on are contiguous (to the row's end or an image's end).
static inline float *fk_out_at(const fk_out *o, long i, long j, long *contiguous) {
    if (o->pixels <= 0) { *contiguous = 1L << 40; return o->p + i * o->ld + j; }
    long img = j / o->pixels, pix = j % o->pixels;
    *contiguous = o->pixels - pix;
    return o->p + img * o->image_stride + i * o->pixels + pix;
}

// Scatter a scratch tile's valid part (h × w) into the output with the micro-kernel's store rule.
static void fk_store_tile(const fk_out *o, long i0, long j0, long h, long w, const float *tile, long NR,
                          int accumulate, const float *bias) {
    for (long i = 0; i < h; i++) {
        long j = 0;
        while (j < w) {
            long run;
            float *d = fk_out_at(o, i0 + i, j0 + j, &run);
            if (run > w - j) run = w - j;
            const float *s = tile + i * NR + j;
            for (long t = 0; t < run; t++) {
                float v = s[t];
                if (accumulate) v = d[t] + v;
                if (bias) v = v + bias[i];
                d[t] = v;
            }
            j += run;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// driver

typedef struct {
    const fk_view *A, *B;
    const fk_out *C;
    long M, N, K;
    int beta;
    const fk_gemm_kernel *kern;
    int along_n;       // blocks split along N (else M)
    long step;         // rows or columns per block
    long parts;
} fk_gemm_job;

static __thread float *fk_gemm_buffer = NULL;
static __thread size_t fk_gemm_buffer_floats = 0;

static float *fk_gemm_scratch(size_t floats) {
    if (floats > fk_gemm_buffer_floats) {
        free(fk_gemm_buffer);
        fk_gemm_buffer = aligned_alloc(64, (floats * sizeof(float) + 63) / 64 * 64);
        fk_gemm_buffer_floats = fk_gemm_buffer ? floats : 0;
    }
    return fk_gemm_buffer;
}

// C[m0 ..< m1, n0 ..< n1] (+)= Σ over k0 ..< k1 on this thread, into `o` (its bias added after the last slice).
static void fk_gemm_block(const fk_gemm_job *job, const fk_out *o, int beta, long m0, long m1, long n0, long n1, long k0, long k1) {
    const fk_gemm_kernel *kern = job->kern;
    const long MR = kern->MR, NR = kern->NR;
    const long NCmax = (FK_GEMM_NC + NR - 1) / NR * NR, MCmax = (FK_GEMM_MC + MR - 1) / MR * MR;
    long tmpLen = NCmax > MCmax ? NCmax : MCmax;
    if (tmpLen < FK_GEMM_KC) tmpLen = FK_GEMM_KC;
    size_t need = (size_t)FK_GEMM_KC * NCmax + (size_t)FK_GEMM_KC * MCmax + tmpLen + MR * NR + 64;
    float *buf = fk_gemm_scratch(need);
    if (!buf) abort();   // out of memory for ~1 MB of scratch: nothing sensible to return
    float *Bp = buf, *Ap = Bp + FK_GEMM_KC * NCmax, *tmp = Ap + FK_GEMM_KC * MCmax, *tile = tmp + tmpLen;
    tile = (float *)(((uintptr_t)tile + 63) & ~(uintptr_t)63);
    for (long jc = n0; jc < n1; jc += NCmax) {
        long nc = n1 - jc < NCmax ? n1 - jc : NCmax;
        for (long pc = k0; pc < k1; pc += FK_GEMM_KC) {
            long kc = k1 - pc < FK_GEMM_KC ? k1 - pc : FK_GEMM_KC;
            int accumulate = pc > k0 || beta;
            int lastSlice = pc + kc >= k1;
            fk_pack_b(job->B, pc, kc, jc, nc, NR, Bp, tmp);
            for (long ic = m0; ic < m1; ic += MCmax) {
                long mc = m1 - ic < MCmax ? m1 - ic : MCmax;
                fk_pack_a(job->A, ic, mc, pc, kc, MR, Ap, tmp);
#ifdef FK_GEMM_JR_OUTER
                for (long jr = 0; jr < nc; jr += NR) {
                    long w = nc - jr < NR ? nc - jr : NR;
                    const float *bp = Bp + (jr / NR) * kc * NR;
                    for (long ir = 0; ir < mc; ir += MR) {
                        long h = mc - ir < MR ? mc - ir : MR;
                        const float *ap = Ap + (ir / MR) * kc * MR;
#else
                // A micro-panel (MR × kc) stays in L1 across the row of tiles; B's panel streams from L2.
                for (long ir = 0; ir < mc; ir += MR) {
                    long h = mc - ir < MR ? mc - ir : MR;
                    const float *ap = Ap + (ir / MR) * kc * MR;
                    for (long jr = 0; jr < nc; jr += NR) {
                        long w = nc - jr < NR ? nc - jr : NR;
                        const float *bp = Bp + (jr / NR) * kc * NR;
#endif
                        const float *bias = lastSlice && o->row_bias ? o->row_bias + ic + ir : NULL;
                        long run;
                        float *d = fk_out_at(o, ic + ir, jc + jr, &run);
                        if (h == MR && w == NR && run >= NR) {
                            kern->fn(kc, ap, bp, d, o->pixels > 0 ? o->pixels : o->ld, accumulate, bias);
                        } else {
                            float biasTile[64];
                            if (bias) { for (long i = 0; i < MR; i++) biasTile[i] = i < h ? bias[i] : 0.0f; }
                            kern->fn(kc, ap, bp, tile, NR, 0, NULL);
                            fk_store_tile(o, ic + ir, jc + jr, h, w, tile, NR, accumulate, bias ? biasTile : NULL);
                        }
                    }
                }
            }
        }
    }
}

static void fk_gemm_chunk(void *ctx, long part) {
    const fk_gemm_job *job = ctx;
    long lo = part * job->step, len = job->along_n ? job->N : job->M;
    long hi = lo + job->step < len ? lo + job->step : len;
    if (lo >= hi) return;
    if (job->along_n) fk_gemm_block(job, job->C, job->beta, 0, job->M, lo, hi, 0, job->K);
    else fk_gemm_block(job, job->C, job->beta, lo, hi, 0, job->N, 0, job->K);
}

// ---- K split: a small C with a long K (a conv's weight gradient: K = images × pixels) ----
// K is cut into FK_GEMM_KSEGMENTS segments fixed by the shape alone; segment s sums into its own partial
// (M × N), and the partials are added in segment order, so the sum order is the same on any thread count.
// Threads take whole segments: nobody re-packs another thread's operand.
#define FK_GEMM_KSEGMENTS 8

typedef struct {
    fk_gemm_job job;      // the problem as computed (maybe swapped: C' = op(B)ᵀ·op(A)ᵀ)
    long segment, segments, parts;
    float *partials;      // segments × M' × N'
} fk_gemm_ksplit;

static void fk_gemm_ksplit_chunk(void *ctx, long part) {
    const fk_gemm_ksplit *ks = ctx;
    const fk_gemm_job *job = &ks->job;
    for (long s = part; s < ks->segments; s += ks->parts) {
        long k0 = s * ks->segment, k1 = k0 + ks->segment < job->K ? k0 + ks->segment : job->K;
        fk_out partial = {ks->partials + s * job->M * job->N, job->N, 0, 0, NULL};
        fk_gemm_block(job, &partial, 0, 0, job->M, 0, job->N, k0, k1);
    }
}

static long fk_tiled_area(long m, long n, long MR, long NR) {
    return (m + MR - 1) / MR * MR * ((n + NR - 1) / NR * NR);
}

// 1 when it ran the product (C small, K long), else 0.
static int fk_gemm_try_ksplit(const fk_view *A, const fk_view *B, const fk_out *C, long M, long N, long K, int beta,
                              long threads, const fk_gemm_kernel *kern) {
    if (K < 8 * FK_GEMM_KC || (double)M * N > 256.0 * 1024 || K < 4 * (M > N ? M : N)) return 0;
    // Compute Cᵀ = op(B)ᵀ·op(A)ᵀ instead when its tiles waste less (a 64 × 48 dW: 48 rows tile exactly by 8, 64 columns by 32).
    int swap = fk_tiled_area(N, M, kern->MR, kern->NR) < fk_tiled_area(M, N, kern->MR, kern->NR);
    fk_view a = swap ? *B : *A, b = swap ? *A : *B;
    if (swap) { a.trans = !a.trans; b.trans = !b.trans; }
    long m = swap ? N : M, n = swap ? M : N;
    long segment = (K + FK_GEMM_KSEGMENTS - 1) / FK_GEMM_KSEGMENTS;
    segment = (segment + FK_GEMM_KC - 1) / FK_GEMM_KC * FK_GEMM_KC;
    long segments = (K + segment - 1) / segment;
    float *partials = malloc((size_t)segments * m * n * sizeof(float));
    if (!partials) return 0;
    fk_gemm_ksplit ks = {{&a, &b, NULL, m, n, K, 0, kern, 1, n, 1}, segment, segments, 1, partials};
    ks.parts = threads > 1 && !fk_in_parallel_region() ? (threads < segments ? threads : segments) : 1;
    if (ks.parts > 1) fk_pool_run(ks.parts, fk_gemm_ksplit_chunk, &ks);
    else fk_gemm_ksplit_chunk(&ks, 0);
    // C(i, j) = [C +] Σ_s partial_s, in segment order [+ bias]
    for (long i = 0; i < M; i++) {
        for (long j = 0; j < N; j++) {
            long at = swap ? j * n + i : i * n + j, run;
            float v = partials[at];
            for (long s = 1; s < segments; s++) v = v + partials[s * m * n + at];
            float *d = fk_out_at(C, i, j, &run);
            if (beta) v = *d + v;
            if (C->row_bias) v = v + C->row_bias[i];
            *d = v;
        }
    }
    free(partials);
    return 1;
}

void fk_view_gemm(const fk_view *A, const fk_view *B, const fk_out *C, long M, long N, long K, int beta, long threads) {
    if (M <= 0 || N <= 0) return;
    const fk_gemm_kernel *kern = fk_gemm_current();
    if (K <= 0) {   // C = beta·C (+ bias): nothing to multiply
        for (long i = 0; i < M; i++)
            for (long j = 0; j < N; j++) {
                long run;
                float *d = fk_out_at(C, i, j, &run);
                float v = beta ? *d : 0.0f;
                if (C->row_bias) v = v + C->row_bias[i];
                *d = v;
            }
        return;
    }
    if (fk_gemm_try_ksplit(A, B, C, M, N, K, beta, threads, kern)) return;
    fk_gemm_job job = {A, B, C, M, N, K, beta, kern, 1, N, 1};
    // Split the larger side of C into one block per thread, on whole tiles; each block re-packs the
    // other operand, so that one should be the smaller. Small products stay on one thread.
    if (threads > 1 && !fk_in_parallel_region() && (double)M * N * K >= (double)(1 << 21)) {
        job.along_n = N >= M;
        long len = job.along_n ? N : M, unit = job.along_n ? kern->NR : kern->MR;
        long parts = threads;
        if (parts > len / unit) parts = len / unit;
        if (parts > 1) {
            long per = (len + parts - 1) / parts;
            job.step = (per + unit - 1) / unit * unit;
            job.parts = (len + job.step - 1) / job.step;
            fk_pool_run(job.parts, fk_gemm_chunk, &job);
            return;
        }
    }
    fk_gemm_block(&job, C, beta, 0, M, 0, N, 0, K);
}

// ---------------------------------------------------------------------------------------------
// pre-packed B: a weight used many times (exact sampling's window forward multiplies the same weights
// once per token) is packed once into the micro-kernel's panels; each product then packs only A.
// Measured with perf on the 128-wide sampling model at block 64: OpenBLAS spent 21 % of the time
// re-packing the weights (sgemm_incopy) against 53 % in its kernel.

struct fk_packed_b {
    long K, N, level;
    float *panels;   // per KC slice s (kc = min(KC, K − s·KC) deep): ceil(N / NR) panels of kc × NR, zero-padded
};

fk_packed_b *fk_packed_b_new(const float *b, long ldb, int trans, long K, long N) {
    if (K <= 0 || N <= 0) return NULL;
    const fk_gemm_kernel *kern = fk_gemm_current();
    const long NR = kern->NR, blocks = (N + NR - 1) / NR;
    fk_packed_b *pb = malloc(sizeof *pb);
    float *tmp = malloc((size_t)(N > K ? N : K) * sizeof(float));
    float *panels = aligned_alloc(64, ((size_t)K * blocks * NR * sizeof(float) + 63) / 64 * 64);
    if (!pb || !tmp || !panels) { free(pb); free(tmp); free(panels); return NULL; }
    fk_view v = fk_view_matrix(b, ldb, trans);
    for (long pc = 0; pc < K; pc += FK_GEMM_KC) {
        long kc = K - pc < FK_GEMM_KC ? K - pc : FK_GEMM_KC;
        fk_pack_b(&v, pc, kc, 0, N, NR, panels + pc * blocks * NR, tmp);
    }
    free(tmp);
    pb->K = K; pb->N = N; pb->level = kern->level; pb->panels = panels;
    return pb;
}

void fk_packed_b_free(fk_packed_b *pb) {
    if (!pb) return;
    free(pb->panels);
    free(pb);
}

long fk_packed_b_rows(const fk_packed_b *pb) { return pb->K; }
long fk_packed_b_cols(const fk_packed_b *pb) { return pb->N; }

typedef struct { const float *a; long lda, M; const fk_packed_b *b; float *c; long ldc; int beta; long panelsPerPart; } fk_prepacked_job;

// C[:, panels p0 ..< p1] (+)= A · op(B) on this thread, with the kernel B was packed for.
static void fk_gemm_prepacked_block(const fk_prepacked_job *job, long p0, long p1) {
    const fk_packed_b *pb = job->b;
    const fk_gemm_kernel *kern = &fk_gemm_kernels[pb->level];
    const long MR = kern->MR, NR = kern->NR, blocks = (pb->N + NR - 1) / NR;
    const long MCmax = (FK_GEMM_MC + MR - 1) / MR * MR;
    size_t need = (size_t)FK_GEMM_KC * MCmax + FK_GEMM_KC + MR * NR + 64;
    float *buf = fk_gemm_scratch(need);
    if (!buf) abort();   // out of memory for a few hundred KB of scratch
    float *Ap = buf, *tmp = Ap + FK_GEMM_KC * MCmax, *tile = tmp + FK_GEMM_KC;
    tile = (float *)(((uintptr_t)tile + 63) & ~(uintptr_t)63);
    fk_view A = fk_view_matrix(job->a, job->lda, 0);
    fk_out o = {job->c, job->ldc, 0, 0, NULL};
    for (long pc = 0; pc < pb->K; pc += FK_GEMM_KC) {
        long kc = pb->K - pc < FK_GEMM_KC ? pb->K - pc : FK_GEMM_KC;
        int accumulate = pc > 0 || job->beta;
        const float *Bp = pb->panels + pc * blocks * NR;
        for (long ic = 0; ic < job->M; ic += MCmax) {
            long mc = job->M - ic < MCmax ? job->M - ic : MCmax;
            fk_pack_a(&A, ic, mc, pc, kc, MR, Ap, tmp);
            for (long ir = 0; ir < mc; ir += MR) {
                long h = mc - ir < MR ? mc - ir : MR;
                const float *ap = Ap + (ir / MR) * kc * MR;
                for (long jb = p0; jb < p1; jb++) {
                    long jr = jb * NR, w = pb->N - jr < NR ? pb->N - jr : NR;
                    const float *bp = Bp + jb * kc * NR;
                    float *d = job->c + (ic + ir) * job->ldc + jr;
                    if (h == MR && w == NR) {
                        kern->fn(kc, ap, bp, d, job->ldc, accumulate, NULL);
                    } else {
                        kern->fn(kc, ap, bp, tile, NR, 0, NULL);
                        fk_store_tile(&o, ic + ir, jr, h, w, tile, NR, accumulate, NULL);
                    }
                }
            }
        }
    }
}

static void fk_gemm_prepacked_chunk(void *ctx, long part) {
    const fk_prepacked_job *job = ctx;
    const long NR = fk_gemm_kernels[job->b->level].NR, blocks = (job->b->N + NR - 1) / NR;
    long p0 = part * job->panelsPerPart, p1 = p0 + job->panelsPerPart < blocks ? p0 + job->panelsPerPart : blocks;
    if (p0 < p1) fk_gemm_prepacked_block(job, p0, p1);
}

void fk_gemm_prepacked(const float *a, long lda, long M, const fk_packed_b *b, float *c, long ldc, int beta, long threads) {
    if (M <= 0 || !b) return;
    const long NR = fk_gemm_kernels[b->level].NR, blocks = (b->N + NR - 1) / NR;
    fk_prepacked_job job = {a, lda, M, b, c, ldc, beta, blocks};
    // Whole panels per thread: each element's sum runs in the same order whoever computes it.
    if (threads > 1 && !fk_in_parallel_region() && blocks > 1 && (double)M * b->N * b->K >= (double)(1 << 21)) {
        long parts = threads < blocks ? threads : blocks;
        job.panelsPerPart = (blocks + parts - 1) / parts;
        fk_pool_run((blocks + job.panelsPerPart - 1) / job.panelsPerPart, fk_gemm_prepacked_chunk, &job);
        return;
    }
    fk_gemm_prepacked_block(&job, 0, blocks);
}
