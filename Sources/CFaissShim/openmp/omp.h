// The part of OpenMP's <omp.h> that FAISS's HNSW headers need, for clang, which does not ship omp.h here
// (FAISS itself is built with GCC and libgomp). Only the lock type appears in those headers (in signatures of
// functions the shim never calls); its layout is libgomp's on Linux (GCC 12's omp.h: 4 bytes, 4-aligned).
#ifndef GEMMA_ENCODER_OMP_STUB_H
#define GEMMA_ENCODER_OMP_STUB_H

typedef struct {
    unsigned char _x[4] __attribute__((__aligned__(4)));
} omp_lock_t;

#ifdef __cplusplus
extern "C" {
#endif
void omp_set_num_threads(int threads);
int omp_get_max_threads(void);
int omp_get_thread_num(void);
int omp_get_num_threads(void);
void omp_init_lock(omp_lock_t* lock);
void omp_destroy_lock(omp_lock_t* lock);
void omp_set_lock(omp_lock_t* lock);
void omp_unset_lock(omp_lock_t* lock);
#ifdef __cplusplus
}
#endif

#endif
