// What the CPU can run, found once with cpuid and xgetbv (the OS must also save the wider registers), and
// capped by GEMMA_ENCODER_MAX_ISA so tests and benchmarks can run the lower paths on the same machine.
#include "ckernels.h"
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

// Linux keeps AMX's 8 KiB of tile state off until a process asks for it (arch/x86/include/uapi/asm/prctl.h);
// without the request the first tile instruction faults. The permission is per process, so asking once covers
// every thread, including those started later.
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

static int amx_permitted(void) { return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0; }

static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static uint32_t detect(void) {
    uint32_t a, b, c, d, features = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    if (!osxsave) return 0;
    uint64_t xcr0 = xgetbv0();
    int ymm = (xcr0 & 0x6) == 0x6, zmm = ymm && (xcr0 & 0xE0) == 0xE0;
    if (__get_cpuid_max(0, 0) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    uint32_t b7 = b, c7 = c, d7 = d;
    __cpuid_count(7, 1, a, b, c, d);
    uint32_t a71 = a;
    if (ymm && fma && f16c && ((b7 >> 5) & 1)) features |= CK_ISA_AVX2;
    // F + BW + VL + DQ: what the AVX-512 paths are compiled for.
    int avx512 = zmm && ((b7 >> 16) & 1) && ((b7 >> 30) & 1) && ((b7 >> 31) & 1) && ((b7 >> 17) & 1);
    if (avx512 && (features & CK_ISA_AVX2)) {
        features |= CK_ISA_AVX512;
        if ((a71 >> 5) & 1) features |= CK_ISA_AVX512_BF16;
        if ((c7 >> 11) & 1) features |= CK_ISA_AVX512_VNNI;
        // AMX-TILE and AMX-BF16, the OS saving tile configuration and data (XCR0 bits 17, 18), and the permission.
        int tiles = ((d7 >> 24) & 1) && ((d7 >> 22) & 1) && (xcr0 & (3ull << 17)) == (3ull << 17);
        if (tiles && (features & CK_ISA_AVX512_BF16) && amx_permitted()) features |= CK_ISA_AMX_BF16;
    }
    return features;
}
#else
static uint32_t detect(void) { return 0; }
#endif

// The cap from the environment: each name allows itself and what it implies.
static uint32_t limit_from_environment(void) {
    const char *v = getenv("GEMMA_ENCODER_MAX_ISA");
    if (!v || !*v) return ~0u;
    if (!strcmp(v, "baseline")) return 0;
    if (!strcmp(v, "avx2")) return CK_ISA_AVX2;
    if (!strcmp(v, "avx512")) return CK_ISA_AVX2 | CK_ISA_AVX512;
    if (!strcmp(v, "avx512_vnni")) return CK_ISA_AVX2 | CK_ISA_AVX512 | CK_ISA_AVX512_VNNI;
    if (!strcmp(v, "avx512_bf16")) return CK_ISA_AVX2 | CK_ISA_AVX512 | CK_ISA_AVX512_VNNI | CK_ISA_AVX512_BF16;
    return ~0u;
}

// Read-mostly: set once (the value is the same on every thread, so a race only repeats the same work).
static _Atomic uint32_t cached_detected = 0xFFFFFFFFu, cached = 0xFFFFFFFFu;

uint32_t ck_cpu_features_detected(void) {
    uint32_t f = atomic_load_explicit(&cached_detected, memory_order_relaxed);
    if (f == 0xFFFFFFFFu) {
        f = detect();
        atomic_store_explicit(&cached_detected, f, memory_order_relaxed);
    }
    return f;
}

uint32_t ck_cpu_features(void) {
    uint32_t f = atomic_load_explicit(&cached, memory_order_relaxed);
    if (f == 0xFFFFFFFFu) {
        f = ck_cpu_features_detected() & limit_from_environment();
        atomic_store_explicit(&cached, f, memory_order_relaxed);
    }
    return f;
}
