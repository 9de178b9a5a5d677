// A pool of worker threads for the forward pass's parallel regions. A short query runs a few hundred of them
// (every product, attention, RoPE), each 20-300 µs long; libdispatch's concurrentPerform wakes a sleeping
// worker for each, and on Linux that wake-up costs about as much as the region itself (two 70 µs halves took
// 160 µs, longer than running them one after the other). Here workers spin for a while after each region
// before sleeping on a futex, so back-to-back regions start at once, and a region's parts are claimed from
// one counter, so a late worker only takes what the caller has not already done.
#define _GNU_SOURCE  // pthread_setname_np
#include "ckernels.h"

#if defined(__linux__)
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

// How long a worker spins for the next region before sleeping: longer than the serial stretches between a
// forward pass's regions (norms, residuals), short enough that an idle pool gives its cores back at once.
#define SPIN_NS 200000L

struct ck_pool {
    // The current region: its generation (high 32 bits) and the next unclaimed part (low 32 bits), so a claim
    // made for an older region fails instead of taking a part of the new one.
    _Atomic unsigned long long state;
    _Atomic long parts;
    _Atomic(ck_pool_task) task;
    _Atomic(void *) context;
    _Atomic unsigned int done;     // futex word: parts of the current region finished
    _Atomic int caller_sleeps;     // the caller sleeps on `done`: the part that finishes the region wakes it
    _Atomic long contended_until;  // a caller found the pool busy: until then, workers sleep at once
    _Atomic int busy;              // a caller owns the pool
    _Atomic int stopping;
    _Atomic int sleepers;
    int workers;
    pthread_t *threads;
    // On its own cache line, apart from the words every claim writes: idle workers spin reading it.
    _Alignas(64) _Atomic unsigned int generation;  // futex word: the generation of the newest region
};

static long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

static void futex_wait(_Atomic unsigned int *word, unsigned int expected) {
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

static void futex_wake_all(_Atomic unsigned int *word) {
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 0x7fffffff, NULL, NULL, 0);
}

// Claims and runs parts of region `gen` until none is left or the region is no longer current.
static void work_on(ck_pool *pool, unsigned int gen) {
    long parts = atomic_load(&pool->parts);
    ck_pool_task task = atomic_load(&pool->task);
    void *context = atomic_load(&pool->context);
    unsigned long long s = atomic_load(&pool->state);
    for (;;) {
        if ((unsigned int)(s >> 32) != gen || (long)(s & 0xffffffffULL) >= parts) return;
        if (!atomic_compare_exchange_weak(&pool->state, &s, s + 1)) continue;
        // The claim succeeded while `state` still named `gen`. ck_pool_run moves `state` to a new generation
        // before it writes a new region's parts, task and context (every access here is sequentially
        // consistent), so had any value read above belonged to a newer region, this claim would have failed:
        // they are `gen`'s own, and its caller waits for this part.
        task(context, (long)(s & 0xffffffffULL));
        if ((long)atomic_fetch_add(&pool->done, 1) + 1 == parts && atomic_load(&pool->caller_sleeps))
            futex_wake_all(&pool->done);
        s = atomic_load(&pool->state);
    }
}

// The moment a worker stops spinning: now when callers are competing for the pool (on a few cores a spinning
// worker would only take a core from them), else SPIN_NS from now.
static long spin_deadline(ck_pool *pool) {
    long now = now_ns();
    return now < atomic_load(&pool->contended_until) ? now : now + SPIN_NS;
}

static void *worker_main(void *arg) {
    ck_pool *pool = arg;
    unsigned int seen = atomic_load(&pool->generation);
    while (!atomic_load(&pool->stopping)) {
        long deadline = spin_deadline(pool);
        unsigned int gen;
        int spins = 0;
        while ((gen = atomic_load(&pool->generation)) == seen && !atomic_load(&pool->stopping)) {
            CPU_RELAX();
            if (++spins % 256 == 0 && now_ns() >= deadline) {
                // Announce the sleep before the last look, so a caller publishing now sees a sleeper to wake.
                atomic_fetch_add(&pool->sleepers, 1);
                if (atomic_load(&pool->generation) == seen && !atomic_load(&pool->stopping))
                    futex_wait(&pool->generation, seen);
                atomic_fetch_sub(&pool->sleepers, 1);
                deadline = spin_deadline(pool);
            }
        }
        if (atomic_load(&pool->stopping)) break;
        seen = gen;
        work_on(pool, gen);
    }
    return NULL;
}

ck_pool *ck_pool_create(int workers) {
    if (workers < 1) return NULL;
    ck_pool *pool = aligned_alloc(64, (sizeof(ck_pool) + 63) / 64 * 64);
    if (!pool) return NULL;
    memset(pool, 0, sizeof *pool);
    pool->threads = calloc((size_t)workers, sizeof(pthread_t));
    if (!pool->threads) {
        free(pool);
        return NULL;
    }
    for (int i = 0; i < workers; i++) {
        if (pthread_create(&pool->threads[i], NULL, worker_main, pool) != 0) break;
        pthread_setname_np(pool->threads[i], "ck-pool");
        pool->workers++;
    }
    if (pool->workers == 0) {
        free(pool->threads);
        free(pool);
        return NULL;
    }
    return pool;
}

void ck_pool_destroy(ck_pool *pool) {
    if (!pool) return;
    atomic_store(&pool->stopping, 1);
    atomic_fetch_add(&pool->generation, 1);
    futex_wake_all(&pool->generation);
    for (int i = 0; i < pool->workers; i++) pthread_join(pool->threads[i], NULL);
    free(pool->threads);
    free(pool);
}

int ck_pool_workers(const ck_pool *pool) { return pool ? pool->workers : 0; }

int ck_pool_run(ck_pool *pool, long parts, ck_pool_task task, void *context) {
    if (!pool || parts < 1 || parts > 0x7fffffffL) return 1;
    int expected = 0;
    // Another caller (a concurrent request, or a part of this pool's own region) has it: the caller runs the
    // region some other way, and the workers stop spinning for a while.
    if (!atomic_compare_exchange_strong(&pool->busy, &expected, 1)) {
        atomic_store(&pool->contended_until, now_ns() + 2 * SPIN_NS);
        return 1;
    }
    unsigned int gen = atomic_load(&pool->generation) + 1;
    // `state` first: from here on no claim against the previous generation succeeds (see work_on), so the
    // fields after it can be rewritten. `generation` last: a worker that sees it finds the fields complete.
    atomic_store(&pool->state, (unsigned long long)gen << 32);
    atomic_store(&pool->parts, parts);
    atomic_store(&pool->task, task);
    atomic_store(&pool->context, context);
    atomic_store(&pool->done, 0);
    atomic_store(&pool->caller_sleeps, 0);
    atomic_store(&pool->generation, gen);
    if (atomic_load(&pool->sleepers) > 0) futex_wake_all(&pool->generation);
    work_on(pool, gen);
    // Wait for the parts the workers claimed: spin briefly (a product's halves end together), then sleep until
    // the part that finishes the region wakes this thread (a training region's parts can be long and uneven).
    long deadline = now_ns() + SPIN_NS / 4;
    int spins = 0;
    unsigned int done;
    while ((long)(done = atomic_load(&pool->done)) < parts) {
        CPU_RELAX();
        if (++spins % 256 == 0 && now_ns() >= deadline) {
            // Announced before the last look, as the workers do: the finishing part sees it or this sees done.
            atomic_store(&pool->caller_sleeps, 1);
            if ((long)(done = atomic_load(&pool->done)) < parts) futex_wait(&pool->done, done);
        }
    }
    atomic_store(&pool->busy, 0);
    return 0;
}

#else

ck_pool *ck_pool_create(int workers) {
    (void)workers;
    return NULL;
}
void ck_pool_destroy(ck_pool *pool) { (void)pool; }
int ck_pool_workers(const ck_pool *pool) {
    (void)pool;
    return 0;
}
int ck_pool_run(ck_pool *pool, long parts, ck_pool_task task, void *context) {
    (void)pool, (void)parts, (void)task, (void)context;
    return 1;
}

#endif
