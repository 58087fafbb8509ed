// The CPU's FP32 FMA peak, measured the way ../shared/bench/peak.c does: 16 independent chains of
// vfmadd231ps in registers (enough to hide a 4-cycle latency on 2 FMA ports), written in asm so the
// compiler cannot spill, reorder or fold them. `forge bench core` quotes speeds as a share of it.
#include "CKernels.h"
#include <time.h>

#define FK_FMA16(R)                                                                                   \
    "vfmadd231ps %%" R "30, %%" R "31, %%" R "0\n\tvfmadd231ps %%" R "30, %%" R "31, %%" R "1\n\t"    \
    "vfmadd231ps %%" R "30, %%" R "31, %%" R "2\n\tvfmadd231ps %%" R "30, %%" R "31, %%" R "3\n\t"    \
    "vfmadd231ps %%" R "30, %%" R "31, %%" R "4\n\tvfmadd231ps %%" R "30, %%" R "31, %%" R "5\n\t"    \
    "vfmadd231ps %%" R "30, %%" R "31, %%" R "6\n\tvfmadd231ps %%" R "30, %%" R "31, %%" R "7\n\t"    \
    "vfmadd231ps %%" R "30, %%" R "31, %%" R "8\n\tvfmadd231ps %%" R "30, %%" R "31, %%" R "9\n\t"    \
    "vfmadd231ps %%" R "30, %%" R "31, %%" R "10\n\tvfmadd231ps %%" R "30, %%" R "31, %%" R "11\n\t"  \
    "vfmadd231ps %%" R "30, %%" R "31, %%" R "12\n\tvfmadd231ps %%" R "30, %%" R "31, %%" R "13\n\t"  \
    "vfmadd231ps %%" R "30, %%" R "31, %%" R "14\n\tvfmadd231ps %%" R "30, %%" R "31, %%" R "15\n\t"

#define FK_FMA_CLOBBERS "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", \
    "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm30", "xmm31", "cc"

__attribute__((target("avx512f"))) static void fk_fma_loop_zmm(long iters) {
    __asm__ volatile(
        "vpxord %%zmm0, %%zmm0, %%zmm0\n\t"
        "vmovaps %%zmm0, %%zmm1\n\tvmovaps %%zmm0, %%zmm2\n\tvmovaps %%zmm0, %%zmm3\n\t"
        "vmovaps %%zmm0, %%zmm4\n\tvmovaps %%zmm0, %%zmm5\n\tvmovaps %%zmm0, %%zmm6\n\t"
        "vmovaps %%zmm0, %%zmm7\n\tvmovaps %%zmm0, %%zmm8\n\tvmovaps %%zmm0, %%zmm9\n\t"
        "vmovaps %%zmm0, %%zmm10\n\tvmovaps %%zmm0, %%zmm11\n\tvmovaps %%zmm0, %%zmm12\n\t"
        "vmovaps %%zmm0, %%zmm13\n\tvmovaps %%zmm0, %%zmm14\n\tvmovaps %%zmm0, %%zmm15\n\t"
        "vmovaps %%zmm0, %%zmm30\n\tvmovaps %%zmm0, %%zmm31\n\t"
        "1:\n\t" FK_FMA16("zmm") "dec %0\n\tjnz 1b\n\t"
        "vzeroupper\n\t"
        : "+r"(iters) : : FK_FMA_CLOBBERS);
}

// AVX2 has only ymm0-15: the two sources are ymm14/ymm15 and 14 chains accumulate (still enough
// independent chains to fill 2 ports at 4-cycle latency).
#define FK_FMA14_YMM                                                                                    \
    "vfmadd231ps %%ymm14, %%ymm15, %%ymm0\n\tvfmadd231ps %%ymm14, %%ymm15, %%ymm1\n\t"                \
    "vfmadd231ps %%ymm14, %%ymm15, %%ymm2\n\tvfmadd231ps %%ymm14, %%ymm15, %%ymm3\n\t"                \
    "vfmadd231ps %%ymm14, %%ymm15, %%ymm4\n\tvfmadd231ps %%ymm14, %%ymm15, %%ymm5\n\t"                \
    "vfmadd231ps %%ymm14, %%ymm15, %%ymm6\n\tvfmadd231ps %%ymm14, %%ymm15, %%ymm7\n\t"                \
    "vfmadd231ps %%ymm14, %%ymm15, %%ymm8\n\tvfmadd231ps %%ymm14, %%ymm15, %%ymm9\n\t"                \
    "vfmadd231ps %%ymm14, %%ymm15, %%ymm10\n\tvfmadd231ps %%ymm14, %%ymm15, %%ymm11\n\t"              \
    "vfmadd231ps %%ymm14, %%ymm15, %%ymm12\n\tvfmadd231ps %%ymm14, %%ymm15, %%ymm13\n\t"

__attribute__((target("avx2,fma"))) static void fk_fma_loop_ymm(long iters) {
    __asm__ volatile(
        "vxorps %%ymm0, %%ymm0, %%ymm0\n\t"
        "vmovaps %%ymm0, %%ymm1\n\tvmovaps %%ymm0, %%ymm2\n\tvmovaps %%ymm0, %%ymm3\n\t"
        "vmovaps %%ymm0, %%ymm4\n\tvmovaps %%ymm0, %%ymm5\n\tvmovaps %%ymm0, %%ymm6\n\t"
        "vmovaps %%ymm0, %%ymm7\n\tvmovaps %%ymm0, %%ymm8\n\tvmovaps %%ymm0, %%ymm9\n\t"
        "vmovaps %%ymm0, %%ymm10\n\tvmovaps %%ymm0, %%ymm11\n\tvmovaps %%ymm0, %%ymm12\n\t"
        "vmovaps %%ymm0, %%ymm13\n\tvmovaps %%ymm0, %%ymm14\n\tvmovaps %%ymm0, %%ymm15\n\t"
        "1:\n\t" FK_FMA14_YMM "dec %0\n\tjnz 1b\n\t"
        "vzeroupper\n\t"
        : "+r"(iters)
        : : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
            "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "cc");
}

typedef struct { long iters; int wide; } fk_peak_job;

static void fk_peak_chunk(void *ctx, long chunk) {
    (void)chunk;
    const fk_peak_job *job = ctx;
    if (job->wide) fk_fma_loop_zmm(job->iters); else fk_fma_loop_ymm(job->iters);
}

static double fk_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

double fk_fma_peak_gflops(long threads, long iters, int avx512) {
    if (avx512 && !fk_cpu_has_avx512()) return 0.0;
    if (!avx512 && !fk_cpu_has_avx2_fma()) return 0.0;
    if (threads < 1) threads = 1;
    fk_peak_job job = { iters, avx512 };
    const double t0 = fk_seconds();
    fk_pool_run(threads, fk_peak_chunk, &job);
    const double t = fk_seconds() - t0;
    const double lanes = avx512 ? 16.0 : 8.0, chains = avx512 ? 16.0 : 14.0;
    return (double)threads * (double)iters * chains * lanes * 2.0 / t * 1e-9;
}
