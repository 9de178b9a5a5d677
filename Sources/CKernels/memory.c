// Weight storage on transparent huge pages.
#include "ckernels.h"
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#define HUGE_PAGE (2L << 20)
#define PAGE 4096L

static long mapped_bytes(long bytes) { return (bytes + PAGE - 1) / PAGE * PAGE; }

void *ck_alloc_weights(long bytes) {
    if (bytes < HUGE_PAGE) return aligned_alloc(64, (size_t)((bytes + 63) / 64 * 64));
    // Our own mapping, trimmed to a 2 MiB-aligned range, so nothing else shares its huge pages.
    long size = mapped_bytes(bytes);
    char *raw = mmap(NULL, (size_t)(size + HUGE_PAGE), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return NULL;
    char *p = (char *)(((uintptr_t)raw + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (p > raw) munmap(raw, (size_t)(p - raw));
    munmap(p + size, (size_t)(raw + HUGE_PAGE - p));  // never empty: p < raw + HUGE_PAGE
    // Before the first touch, so the pages fault in huge; an error (no THP) only costs speed. The tail past
    // the last whole huge page stays on small pages: a huge one there would be mostly unused memory.
    (void)madvise(p, (size_t)(bytes / HUGE_PAGE * HUGE_PAGE), MADV_HUGEPAGE);
    return p;
}

void ck_free_weights(void *p, long bytes) {
    if (!p) return;
    if (bytes < HUGE_PAGE) free(p);
    else munmap(p, (size_t)mapped_bytes(bytes));
}

// glibc serves large allocations with fresh mappings that are faulted in and zeroed again on every use; a
// training step allocates the same buffers each step, so they are kept in the heap instead.
#include <malloc.h>
void ck_keep_freed_buffers(void) {
    mallopt(M_MMAP_THRESHOLD, 32 << 20);  // glibc's largest allowed value on 64-bit
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
}
