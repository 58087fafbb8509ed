// Forge's worker pool: runs chunk i of a job on worker i (chunk 0 on the calling thread).
//
// Why not libdispatch's concurrentPerform: a training step of a small model (the char baby preset,
// the MLP VAE) is hundreds of ops of 10-100 µs each, and waking a parked dispatch worker for every
// one cost ~10% of the step in futex wake-ups and context switches. Here a worker spins for a short
// while (FORGE_SPIN_US, default 50 µs) after each chunk, so the next op's chunk starts at once,
// and only then parks on a condition variable. OpenBLAS runs single-threaded inside these workers.
//
// Waiting never spins blind for long: after ~2,000 pause instructions (tens of µs) a waiting thread
// calls sched_yield on each turn, so when other processes compete for the cores (a compiler, another
// training run) the thread it waits for gets the core instead of a spinner.
//
// Protocol, per worker w: the caller writes the job (fn, ctx), then publishes it by bumping
// w.posted; w runs chunk w and stores w.finished = w.posted; the caller returns only when every
// worker it posted to has finished, so no worker reads a job after its caller moved on, and the
// next job's fields are never written while a worker could read them.
#include "CKernels.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#define FK_MAX_WORKERS 63
#define FK_PAUSE_SPINS 2048   // pure spinning before a waiter starts yielding its core

typedef struct {
    _Atomic long posted;     // jobs handed to this worker
    _Atomic long finished;   // jobs this worker has completed
    _Atomic int sleeping;    // parked on `wake`
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t thread;
} fk_worker;

static fk_worker fk_workers[FK_MAX_WORKERS];
static int fk_worker_count = 0;                       // started so far (grows on demand)
static pthread_mutex_t fk_pool_lock = PTHREAD_MUTEX_INITIALIZER;   // one job at a time
static fk_chunk_fn fk_job_fn;
static void *fk_job_ctx;
static long fk_spin_ns = 50000;   // 50 µs: as fast as 200 on a quiet machine (VAE ~52k, char baby ~50k), ~45 % faster VAE beside a CPU hog

static long fk_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long)t.tv_sec * 1000000000L + t.tv_nsec;
}

static inline void fk_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void *fk_worker_main(void *arg) {
    long index = (long)arg;
    fk_worker *w = &fk_workers[index - 1];
    fk_set_parallel_region(1);   // everything a worker runs is inside a parallel region
    long seen = 0;
    for (;;) {
        // wait for the next job: spin first, then park
        long start = fk_now_ns();
        int spins = 0;
        while (atomic_load_explicit(&w->posted, memory_order_acquire) == seen) {
            if (++spins < FK_PAUSE_SPINS) fk_cpu_relax(); else sched_yield();
            if ((spins & 255) == 0 && fk_now_ns() - start > fk_spin_ns) {
                pthread_mutex_lock(&w->lock);
                atomic_store(&w->sleeping, 1);
                while (atomic_load(&w->posted) == seen) pthread_cond_wait(&w->wake, &w->lock);
                atomic_store(&w->sleeping, 0);
                pthread_mutex_unlock(&w->lock);
                break;
            }
        }
        seen = atomic_load_explicit(&w->posted, memory_order_acquire);
        fk_job_fn(fk_job_ctx, index);
        atomic_store_explicit(&w->finished, seen, memory_order_release);
    }
    return NULL;
}

static int fk_start_workers(int needed) {
    if (fk_worker_count == 0) {
        const char *s = getenv("FORGE_SPIN_US");
        if (s) { long us = atol(s); if (us >= 0) fk_spin_ns = us * 1000; }
    }
    while (fk_worker_count < needed && fk_worker_count < FK_MAX_WORKERS) {
        fk_worker *w = &fk_workers[fk_worker_count];
        atomic_init(&w->posted, 0);
        atomic_init(&w->finished, 0);
        atomic_init(&w->sleeping, 0);
        pthread_mutex_init(&w->lock, NULL);
        pthread_cond_init(&w->wake, NULL);
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 8 << 20);   // Swift code runs here: give it a main-sized stack
        int rc = pthread_create(&w->thread, &attr, fk_worker_main, (void *)(long)(fk_worker_count + 1));
        pthread_attr_destroy(&attr);
        if (rc != 0) break;
        pthread_detach(w->thread);
        fk_worker_count++;
    }
    return fk_worker_count;
}

void fk_pool_run(long chunks, fk_chunk_fn fn, void *ctx) {
    // Another thread already runs a job (or we could not start workers): do it all here.
    if (chunks <= 1 || pthread_mutex_trylock(&fk_pool_lock) != 0) {
        int outer = fk_in_parallel_region();
        fk_set_parallel_region(1);
        for (long i = 0; i < chunks; i++) fn(ctx, i);
        fk_set_parallel_region(outer);
        return;
    }
    long helpers = fk_start_workers((int)(chunks - 1));
    if (helpers > chunks - 1) helpers = chunks - 1;
    fk_job_fn = fn;
    fk_job_ctx = ctx;
    long target[FK_MAX_WORKERS];
    for (long w = 0; w < helpers; w++) {
        fk_worker *wk = &fk_workers[w];
        target[w] = atomic_load(&wk->posted) + 1;
        atomic_store(&wk->posted, target[w]);              // seq_cst: pairs with the worker's `sleeping` store
        if (atomic_load(&wk->sleeping)) {
            pthread_mutex_lock(&wk->lock);
            pthread_cond_signal(&wk->wake);
            pthread_mutex_unlock(&wk->lock);
        }
    }
    fk_set_parallel_region(1);
    fn(ctx, 0);
    for (long i = helpers + 1; i < chunks; i++) fn(ctx, i);   // more chunks than workers: run the rest here
    fk_set_parallel_region(0);
    for (long w = 0; w < helpers; w++) {
        fk_worker *wk = &fk_workers[w];
        int spins = 0;
        while (atomic_load_explicit(&wk->finished, memory_order_acquire) != target[w]) {
            if (++spins < FK_PAUSE_SPINS) fk_cpu_relax(); else sched_yield();
        }
    }
    pthread_mutex_unlock(&fk_pool_lock);
}
