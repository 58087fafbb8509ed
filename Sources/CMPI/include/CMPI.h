#pragma once
// Open MPI loaded at run time. Forge does not link libmpi: a plain build (and `make demo`) needs no
// MPI installed, and the libraries stay usable as SwiftPM dependencies without unsafeFlags. When a
// process runs under `mpirun`, `forge_mpi_load` dlopens Open MPI's libmpi.so.40 and resolves the few
// functions and predefined handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, …, which Open MPI exports as
// global objects) that data-parallel training and generation need. Every function returns 0 on success, or
// -1 with a message in `err`.
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Loads libmpi (the FORGE_LIBMPI path, else libmpi.so.40, else libmpi.so) and resolves its symbols.
/// Idempotent. Returns -1 with the reason (e.g. dlopen's message) in `err` when it cannot.
int forge_mpi_load(char *err, size_t err_len);
/// MPI_Init_thread asking for MPI_THREAD_SERIALIZED (once; nothing when MPI is already initialised), then
/// this process's rank and the world size.
int forge_mpi_init(int *rank, int *size, char *err, size_t err_len);
/// The thread support MPI granted (0 single, 1 funneled, 2 serialized, 3 multiple), -1 before init.
int forge_mpi_thread_level(void);
/// MPI_Finalize (nothing when MPI was not initialised or is already finalised).
int forge_mpi_finalize(void);
/// MPI_Abort(MPI_COMM_WORLD, code): ends every rank of the job.
void forge_mpi_abort(int code);
/// In-place MPI_Allreduce(MPI_SUM) of `count` floats over MPI_COMM_WORLD.
int forge_mpi_allreduce_sum_float(float *values, long count, char *err, size_t err_len);
/// In-place MPI_Allreduce(MPI_MAX) of `count` floats over MPI_COMM_WORLD.
int forge_mpi_allreduce_max_float(float *values, long count, char *err, size_t err_len);
/// MPI_Bcast of `count` bytes from `root` over MPI_COMM_WORLD.
int forge_mpi_broadcast_bytes(void *bytes, long count, int root, char *err, size_t err_len);
/// MPI_Gather of one long per rank to `root`: `counts` (size entries) is filled on the root only
/// (it may be NULL elsewhere).
int forge_mpi_gather_counts(long count, long *counts, int root, char *err, size_t err_len);
/// MPI_Gatherv of `count` bytes per rank to `root`, which passes every rank's count (`counts`, from
/// `forge_mpi_gather_counts`) and a buffer of their sum, filled in rank order; the other ranks pass
/// NULL for both. Fails when the total exceeds 2 GiB (MPI counts are int).
int forge_mpi_gather_bytes(const void *bytes, long count, void *received, const long *counts, int size, int root,
                           char *err, size_t err_len);

#ifdef __cplusplus
}
#endif
