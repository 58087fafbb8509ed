// See CMPI.h. The handle objects' types are opaque here: MPI passes them by address, so `void *`
// from dlsym is all a call needs (mpi.h's MPI_COMM_WORLD is `(MPI_Comm) &ompi_mpi_comm_world`).
#include "CMPI.h"
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int (*init_thread_fn)(int *, char ***, int, int *);
typedef int (*flag_fn)(int *);
typedef int (*finalize_fn)(void);
typedef int (*comm_int_fn)(void *, int *);
typedef int (*allreduce_fn)(const void *, void *, int, void *, void *, void *);
typedef int (*bcast_fn)(void *, int, void *, int, void *);
typedef int (*abort_fn)(void *, int);
typedef int (*error_string_fn)(int, char *, int *);
typedef int (*gather_fn)(const void *, int, void *, void *, int, void *, int, void *);
typedef int (*gatherv_fn)(const void *, int, void *, void *, const int *, const int *, void *, int, void *);

static void *library;
static init_thread_fn mpi_init_thread;
static flag_fn mpi_query_thread;
static int thread_level = -1;
static flag_fn mpi_initialized, mpi_finalized;
static finalize_fn mpi_finalize;
static comm_int_fn mpi_comm_rank, mpi_comm_size;
static allreduce_fn mpi_allreduce;
static bcast_fn mpi_bcast;
static abort_fn mpi_abort;
static error_string_fn mpi_error_string;
static gather_fn mpi_gather;
static gatherv_fn mpi_gatherv;
static void *comm_world, *type_float, *type_byte, *op_sum, *op_max;

#define MPI_IN_PLACE_ADDRESS ((void *)1)  /* mpi.h: #define MPI_IN_PLACE ((void *) 1) */
/* MPI counts are int: longer buffers go in pieces of this many elements. */
#define CHUNK (INT_MAX / 8)

static int fail(char *err, size_t len, const char *what, const char *detail) {
    if (err && len) snprintf(err, len, "%s%s%s", what, detail ? ": " : "", detail ? detail : "");
    return -1;
}

static int mpi_fail(char *err, size_t len, const char *call, int code) {
    char text[512] = {0};
    int n = 0;
    if (!mpi_error_string || mpi_error_string(code, text, &n) != 0) snprintf(text, sizeof text, "error %d", code);
    return fail(err, len, call, text);
}

int forge_mpi_load(char *err, size_t err_len) {
    if (library) return 0;
    // RTLD_GLOBAL: Open MPI's plugins (mca_*.so) resolve their symbols against libmpi's.
    const char *explicit_path = getenv("FORGE_LIBMPI");
    void *handle = NULL;
    if (explicit_path && *explicit_path) {
        handle = dlopen(explicit_path, RTLD_NOW | RTLD_GLOBAL);
    } else {
        handle = dlopen("libmpi.so.40", RTLD_NOW | RTLD_GLOBAL);
        if (!handle) handle = dlopen("libmpi.so", RTLD_NOW | RTLD_GLOBAL);
    }
    if (!handle) return fail(err, err_len, "cannot load Open MPI's libmpi", dlerror());
    struct { void **slot; const char *name; } symbols[] = {
        {(void **)&mpi_init_thread, "MPI_Init_thread"}, {(void **)&mpi_initialized, "MPI_Initialized"}, {(void **)&mpi_query_thread, "MPI_Query_thread"},
        {(void **)&mpi_finalized, "MPI_Finalized"}, {(void **)&mpi_finalize, "MPI_Finalize"},
        {(void **)&mpi_comm_rank, "MPI_Comm_rank"}, {(void **)&mpi_comm_size, "MPI_Comm_size"},
        {(void **)&mpi_allreduce, "MPI_Allreduce"}, {(void **)&mpi_bcast, "MPI_Bcast"},
        {(void **)&mpi_abort, "MPI_Abort"}, {(void **)&mpi_error_string, "MPI_Error_string"},
        {(void **)&mpi_gather, "MPI_Gather"}, {(void **)&mpi_gatherv, "MPI_Gatherv"},
        {&comm_world, "ompi_mpi_comm_world"}, {&type_float, "ompi_mpi_float"}, {&type_byte, "ompi_mpi_byte"},
        {&op_sum, "ompi_mpi_op_sum"}, {&op_max, "ompi_mpi_op_max"},
    };
    for (size_t i = 0; i < sizeof symbols / sizeof symbols[0]; i++) {
        *symbols[i].slot = dlsym(handle, symbols[i].name);
        if (!*symbols[i].slot) {
            char what[160];
            snprintf(what, sizeof what, "libmpi lacks %s (is it Open MPI?)", symbols[i].name);
            dlclose(handle);
            return fail(err, err_len, what, NULL);
        }
    }
    library = handle;
    return 0;
}

int forge_mpi_init(int *rank, int *size, char *err, size_t err_len) {
    if (forge_mpi_load(err, err_len) != 0) return -1;
    int initialized = 0;
    mpi_initialized(&initialized);
    if (!initialized) {
        // MPI_THREAD_SERIALIZED (2 in Open MPI's mpi.h): the gradient reducer calls MPI from its own
        // thread while the main thread runs backward, never at the same time as the main thread.
        int provided = 0;
        int code = mpi_init_thread(NULL, NULL, 2, &provided);
        if (code != 0) return mpi_fail(err, err_len, "MPI_Init_thread failed", code);
        thread_level = provided;
    } else if (mpi_query_thread(&thread_level) != 0) {
        thread_level = 0;
    }
    int code = mpi_comm_rank(comm_world, rank);
    if (code != 0) return mpi_fail(err, err_len, "MPI_Comm_rank failed", code);
    code = mpi_comm_size(comm_world, size);
    if (code != 0) return mpi_fail(err, err_len, "MPI_Comm_size failed", code);
    return 0;
}

int forge_mpi_finalize(void) {
    if (!library) return 0;
    int initialized = 0, finalized = 0;
    mpi_initialized(&initialized);
    mpi_finalized(&finalized);
    if (!initialized || finalized) return 0;
    return mpi_finalize() == 0 ? 0 : -1;
}

void forge_mpi_abort(int code) {
    if (library) mpi_abort(comm_world, code);
    exit(code);
}

static int allreduce(float *values, long count, void *op, char *err, size_t err_len) {
    if (!library) return fail(err, err_len, "MPI is not loaded", NULL);
    for (long start = 0; start < count; start += CHUNK) {
        int n = (int)(count - start < CHUNK ? count - start : CHUNK);
        int code = mpi_allreduce(MPI_IN_PLACE_ADDRESS, values + start, n, type_float, op, comm_world);
        if (code != 0) return mpi_fail(err, err_len, "MPI_Allreduce failed", code);
    }
    return 0;
}

int forge_mpi_allreduce_sum_float(float *values, long count, char *err, size_t err_len) {
    return allreduce(values, count, op_sum, err, err_len);
}

int forge_mpi_allreduce_max_float(float *values, long count, char *err, size_t err_len) {
    return allreduce(values, count, op_max, err, err_len);
}

int forge_mpi_broadcast_bytes(void *bytes, long count, int root, char *err, size_t err_len) {
    if (!library) return fail(err, err_len, "MPI is not loaded", NULL);
    for (long start = 0; start < count; start += CHUNK) {
        int n = (int)(count - start < CHUNK ? count - start : CHUNK);
        int code = mpi_bcast((char *)bytes + start, n, type_byte, root, comm_world);
        if (code != 0) return mpi_fail(err, err_len, "MPI_Bcast failed", code);
    }
    return 0;
}

int forge_mpi_gather_counts(long count, long *counts, int root, char *err, size_t err_len) {
    if (!library) return fail(err, err_len, "MPI is not loaded", NULL);
    // longs as bytes: no MPI_LONG handle needed, and every rank runs the same binary
    int code = mpi_gather(&count, (int)sizeof count, type_byte, counts, (int)sizeof count, type_byte, root, comm_world);
    return code == 0 ? 0 : mpi_fail(err, err_len, "MPI_Gather failed", code);
}

int forge_mpi_gather_bytes(const void *bytes, long count, void *received, const long *counts, int size, int root,
                           char *err, size_t err_len) {
    if (!library) return fail(err, err_len, "MPI is not loaded", NULL);
    if (count > INT_MAX) return fail(err, err_len, "MPI_Gatherv: a rank's share exceeds 2 GiB", NULL);
    int *int_counts = NULL, *displacements = NULL;
    if (counts) {  // the root
        int_counts = malloc(sizeof(int) * (size_t)size);
        displacements = malloc(sizeof(int) * (size_t)size);
        if (!int_counts || !displacements) { free(int_counts); free(displacements); return fail(err, err_len, "out of memory", NULL); }
        long offset = 0;
        for (int r = 0; r < size; r++) {
            if (offset + counts[r] > INT_MAX) {
                free(int_counts); free(displacements);
                return fail(err, err_len, "MPI_Gatherv: the gathered bytes exceed 2 GiB", NULL);
            }
            int_counts[r] = (int)counts[r];
            displacements[r] = (int)offset;
            offset += counts[r];
        }
    }
    int code = mpi_gatherv(bytes, (int)count, type_byte, received, int_counts, displacements, type_byte, root, comm_world);
    free(int_counts); free(displacements);
    return code == 0 ? 0 : mpi_fail(err, err_len, "MPI_Gatherv failed", code);
}

int forge_mpi_thread_level(void) { return thread_level; }
