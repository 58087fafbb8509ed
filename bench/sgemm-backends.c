// cblas_sgemm GFLOP/s at the GEMM shapes of the bench workloads, for comparing BLAS libraries (#22:
// "Debian's BLIS is worth one measurement"). The same source is linked against each library:
//
//   cc -O2 bench/sgemm-backends.c -o /tmp/sgemm-openblas -lopenblas
//   cc -O2 bench/sgemm-backends.c -o /tmp/sgemm-blis -L/usr/lib/x86_64-linux-gnu/blis-openmp -lblis
//   OPENBLAS_NUM_THREADS=2 /tmp/sgemm-openblas; BLIS_NUM_THREADS=2 OMP_NUM_THREADS=2 /tmp/sgemm-blis
//
// Shapes: the DCGAN 64 convolutions' forward products (batch 64, kernel 4, stride 2; not the backward
// ones) as one whole-batch im2col GEMM each
// (D: weights (cout, cin·16) × columns (cin·16, 64·hout·wout); G: weightsᵀ (cout·16, cin) × input
// (cin, 64·h·w), the product col2im scatters), matmul1024, and char-shakespeare's widest linear layer.
// Forge itself cuts the conv GEMMs into runs of images, so these are the library's rates, not Forge's.
// Each figure is the best of 5 timings of at least 0.2 s each. Declares the one CBLAS function it uses,
// so it builds against either library's headers or none.
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { RowMajor = 101, NoTrans = 111, Trans = 112 };
void cblas_sgemm(int order, int transA, int transB, int m, int n, int k, float alpha, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc);

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

int main(void) {
    struct { const char *name; int m, n, k, transA, transB; } shapes[] = {
        {"matmul1024", 1024, 1024, 1024, NoTrans, NoTrans},
        {"char-shakespeare c_fc x.Wt", 64 * 256, 4 * 384, 384, NoTrans, Trans},
        {"D conv 3->64 @64", 64, 64 * 32 * 32, 3 * 16, NoTrans, NoTrans},
        {"D conv 64->128 @32", 128, 64 * 16 * 16, 64 * 16, NoTrans, NoTrans},
        {"D conv 128->256 @16", 256, 64 * 8 * 8, 128 * 16, NoTrans, NoTrans},
        {"D conv 256->512 @8", 512, 64 * 4 * 4, 256 * 16, NoTrans, NoTrans},
        {"G convT 512->256 @4", 256 * 16, 64 * 4 * 4, 512, Trans, NoTrans},
        {"G convT 256->128 @8", 128 * 16, 64 * 8 * 8, 256, Trans, NoTrans},
        {"G convT 128->64 @16", 64 * 16, 64 * 16 * 16, 128, Trans, NoTrans},
        {"G convT 64->3 @32", 3 * 16, 64 * 32 * 32, 64, Trans, NoTrans},
    };
    double total_flops = 0, total_seconds = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int m = shapes[s].m, n = shapes[s].n, k = shapes[s].k;
        float *a = malloc(sizeof(float) * m * k), *b = malloc(sizeof(float) * k * n), *c = malloc(sizeof(float) * m * n);
        for (long i = 0; i < (long)m * k; i++) a[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
        for (long i = 0; i < (long)k * n; i++) b[i] = (float)((i * 104729) % 1000) / 1000.0f - 0.5f;
        int lda = shapes[s].transA == Trans ? m : k, ldb = shapes[s].transB == Trans ? k : n;
        double best = 1e30;
        for (int round = 0; round < 5; round++) {
            int calls = 0;
            double start = now(), elapsed;
            do {
                cblas_sgemm(RowMajor, shapes[s].transA, shapes[s].transB, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, n);
                calls++;
                elapsed = now() - start;
            } while (elapsed < 0.2);
            if (elapsed / calls < best) best = elapsed / calls;
        }
        double flops = 2.0 * m * n * k;
        printf("%-28s %6d x %6d x %5d  %7.1f GFLOP/s\n", shapes[s].name, m, n, k, flops / best / 1e9);
        if (s >= 2) { total_flops += flops; total_seconds += best; }
        free(a); free(b); free(c);
    }
    printf("%-28s %24s  %7.1f GFLOP/s\n", "DCGAN 64 conv GEMMs, total", "", total_flops / total_seconds / 1e9);
    return 0;
}
