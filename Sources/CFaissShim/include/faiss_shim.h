// C ABI over the FAISS C++ API (libfaiss 1.7.x).
//
// Debian's libfaiss ships the C-API headers without their implementation, so
// this small shim exposes exactly what VectorSearch needs. Conventions:
// - Every function returning int32_t returns FAISS_SHIM_OK (0) on success and
//   a FaissShimStatus otherwise; the message is then available from
//   faiss_shim_last_error() on the same thread until the next failing call.
// - No C++ exception ever crosses this boundary.
// - Indices are opaque handles; one handle must not be mutated (train, add,
//   remove, set_*) concurrently with any other call on it. Concurrent
//   read-only calls (search, range_search, reconstruct, write) are safe.
#ifndef FAISS_SHIM_H
#define FAISS_SHIM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct FaissShimIndex FaissShimIndex;
typedef struct FaissShimRangeResult FaissShimRangeResult;

typedef enum {
    FAISS_SHIM_OK = 0,
    FAISS_SHIM_INVALID_ARGUMENT = 1, ///< rejected before reaching FAISS
    FAISS_SHIM_FAISS_ERROR = 2,      ///< faiss::FaissException or other std::exception
    FAISS_SHIM_UNKNOWN_ERROR = 3,    ///< non-std exception
} FaissShimStatus;

typedef enum {
    FAISS_SHIM_METRIC_INNER_PRODUCT = 0,
    FAISS_SHIM_METRIC_L2 = 1,
} FaissShimMetric;

/// Message of the last failing call on this thread ("" if none). Valid until
/// the next shim call on this thread.
const char* faiss_shim_last_error(void);

// MARK: Lifecycle

/// Builds an index from a factory string ("Flat", "HNSW32", "IVF256,PQ16", ...).
/// Indexes are wrapped in IndexIDMap2 so 64-bit external ids are stable and
/// reconstructible, except when the factory already starts with "IDMap" and for
/// IVF indexes, which store ids natively (an IDMap over IVF breaks on
/// remove_ids); those get a hashtable direct map so reconstruct works by id.
/// PQ polysemous training (FAISS factory default) is switched off: it only
/// serves Hamming-filtered search, which this API never enables.
int32_t faiss_shim_create(int32_t dimension, const char* factory, int32_t metric,
                          FaissShimIndex** out);
/// Reads an index written by faiss_shim_write (or any FAISS index file).
int32_t faiss_shim_read(const char* path, FaissShimIndex** out);
/// Writes the index to `path` (not atomic; callers rename a temp file).
int32_t faiss_shim_write(const FaissShimIndex* index, const char* path);
void faiss_shim_free(FaissShimIndex* index);

// MARK: Properties

int64_t faiss_shim_ntotal(const FaissShimIndex* index);
int32_t faiss_shim_dimension(const FaissShimIndex* index);
int32_t faiss_shim_metric(const FaissShimIndex* index);
int32_t faiss_shim_is_trained(const FaissShimIndex* index);

// MARK: Mutation

/// x: n * dimension floats.
int32_t faiss_shim_train(FaissShimIndex* index, int64_t n, const float* x);
/// x: n * dimension floats; ids: n ids, none negative, none already present.
int32_t faiss_shim_add_with_ids(FaissShimIndex* index, int64_t n, const float* x,
                                const int64_t* ids);
/// Removes the given ids; `removed` receives how many were present. Refused
/// (before FAISS) for an IDMap over a non-flat index such as HNSW or IVF,
/// where FAISS would throw or corrupt the id map.
int32_t faiss_shim_remove_ids(FaissShimIndex* index, int64_t n, const int64_t* ids,
                              int64_t* removed);
/// IVF only (through IDMap / pre-transform / refine wrappers); errors otherwise.
int32_t faiss_shim_set_nprobe(FaissShimIndex* index, int64_t nprobe);
/// HNSW, or IVF with an HNSW coarse quantizer; errors otherwise.
int32_t faiss_shim_set_ef_search(FaissShimIndex* index, int32_t ef_search);

/// Moves every vector of `src` into `dst` (FAISS's IVF merge_from: inverted lists appended, ids kept), leaving
/// `src` empty. Both must be IVF indexes of one kind, dimension, list count and code size, with no id in
/// both (checked first, nothing moved otherwise) and the same centroids (FAISS compares them); neither may
/// keep its lists on disk. dst keeps its hashtable direct map (reconstruct by id).
int32_t faiss_shim_merge_ivf(FaissShimIndex* dst, FaissShimIndex* src);

/// Fills `dst`, the empty trained index every source was started from, with the inverted lists of the IVF
/// index files in `paths`, kept on disk in `ivfdata_path` (FAISS's OnDiskInvertedLists, memory-mapped when
/// searched) for indexes larger than memory. The sources are memory-mapped, not loaded; each must have the
/// same kind, sizes and centroids as dst (checked first). dst keeps no direct map afterwards. Write dst
/// beside `ivfdata_path`: faiss_shim_read looks for the lists' file in the index file's directory.
int32_t faiss_shim_merge_ivf_ondisk(FaissShimIndex* dst, const char* const* paths, int32_t n, const char* ivfdata_path);

// MARK: Queries

/// x: n * dimension floats; distances and labels: n * k each. Missing results
/// are padded with label -1.
int32_t faiss_shim_search(const FaissShimIndex* index, int64_t n, const float* x,
                          int64_t k, float* distances, int64_t* labels);
/// faiss_shim_search with this call's own search parameters: nprobe > 0 for an IVF index, ef_search > 0 for
/// HNSW (or an IVF index's HNSW coarse quantizer); 0 keeps the index's stored value. The index is changed
/// for the call and restored after it, so this must not run concurrently with any other call on the handle.
int32_t faiss_shim_search_tuned(FaissShimIndex* index, int64_t n, const float* x, int64_t k, int64_t nprobe,
                                int32_t ef_search, float* distances, int64_t* labels);
/// FAISS's own search over the n queries, timed in C++ with nothing of ours in the loop: the baseline
/// that VectorIndex's overhead is measured against. One query per call when one_per_call is nonzero
/// (as a server searches), else one batched call. Results are discarded; *seconds gets the wall time.
int32_t faiss_shim_time_searches(const FaissShimIndex* index, int64_t n, const float* x, int64_t k,
                                 int32_t one_per_call, double* seconds);
/// One query. Inner product returns scores > radius, L2 distances < radius
/// (FAISS's strict comparisons). Free the result with faiss_shim_range_result_free.
int32_t faiss_shim_range_search(const FaissShimIndex* index, const float* x,
                                float radius, FaissShimRangeResult** out);
int64_t faiss_shim_range_result_count(const FaissShimRangeResult* result);
/// Copies count() ids and distances (unsorted, as FAISS returns them).
void faiss_shim_range_result_copy(const FaissShimRangeResult* result, int64_t* ids,
                                  float* distances);
void faiss_shim_range_result_free(FaissShimRangeResult* result);
/// out: dimension floats.
int32_t faiss_shim_reconstruct(const FaissShimIndex* index, int64_t id, float* out);

// MARK: Process-wide tuning

/// Sets faiss::distance_compute_blas_threshold (FAISS default 20): searches
/// with at least this many queries compute exhaustive distances with BLAS
/// instead of FAISS's own loop. Process-global; call before searching.
int32_t faiss_shim_set_blas_threshold(int32_t queries);

/// OpenMP threads FAISS may use in every later call, from any thread (process-global).
int32_t faiss_shim_set_omp_threads(int32_t threads);
int32_t faiss_shim_omp_threads(void);

#ifdef __cplusplus
}
#endif

#endif // FAISS_SHIM_H
