// Per-ISA code paths, chosen once at load time (ifunc), so one binary runs everywhere and uses what the CPU
// has. x86-64-v3 is AVX2 + FMA + F16C: the "avx2" feature alone would leave out FMA, and "arch=haswell" also
// demands RDRAND, which some virtual machines hide.
#ifndef GEMMA_CKERNELS_DISPATCH_H
#define GEMMA_CKERNELS_DISPATCH_H

#if defined(__x86_64__) && defined(__linux__)
#define CLONES __attribute__((target_clones("avx512f", "arch=x86-64-v3", "default")))
#define CLONES_NO_AVX512 __attribute__((target_clones("arch=x86-64-v3", "default")))
#define TARGET_AVX512 __attribute__((target("avx512f")))
#define HAVE_AVX512_PATH 1
#else
#define CLONES
#define CLONES_NO_AVX512
#define TARGET_AVX512
#define HAVE_AVX512_PATH 0
#endif

#endif
