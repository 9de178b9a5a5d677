// oneDNN (Debian libdnnl-dev 2.6) matmul beside OpenBLAS sgemm on EmbeddingGemma-300M's Linear shapes: the measurement
// behind issue 20's choice of our own AMX kernel over oneDNN's (README, Speed). C[M,N] = A[M,K] · Wᵀ, W N × K
// row-major (PyTorch's layout); oneDNN's weights reordered once, outside the timing. Built and run by
// scripts/bench-onednn; options: --threads N (OpenBLAS; oneDNN follows OMP_NUM_THREADS), --m a,b,c (default
// 10,128,512,2048), --kinds bf16,int8,f32,blas[,bf32], --once (one call each, for ONEDNN_VERBOSE=1), --mintime s.
#include <oneapi/dnnl/dnnl.hpp>
#include <cblas.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

extern "C" void openblas_set_num_threads(int);

using namespace dnnl;
using tag = memory::format_tag;
using dt = memory::data_type;

static double now() {
    return std::chrono::duration<double>(
            std::chrono::steady_clock::now().time_since_epoch())
            .count();
}

static double g_mintime = 0.3;

// Fastest single execution seen during the timed runs (robust against a busy
// neighbour core; reported as an extra column "best1").
static double g_min1 = 1e30;

// Warm-up, calibrate repetitions for >= g_mintime, best of 3 runs. Returns s/iter.
static double time_best(const std::function<void()> &f) {
    g_min1 = 1e30;
    for (int i = 0; i < 3; ++i) f();
    int reps = 1;
    for (;;) {
        double t0 = now();
        for (int i = 0; i < reps; ++i) f();
        double dt_ = now() - t0;
        if (dt_ >= g_mintime * 0.5) {
            reps = (int)std::ceil(reps * g_mintime / dt_) + 1;
            break;
        }
        reps *= 4;
    }
    double best = 1e30;
    for (int r = 0; r < 3; ++r) {
        double t0 = now(), tp = t0;
        for (int i = 0; i < reps; ++i) {
            f();
            double tn = now();
            if (tn - tp < g_min1) g_min1 = tn - tp;
            tp = tn;
        }
        double per = (now() - t0) / reps;
        if (per < best) best = per;
    }
    return best;
}

static unsigned long xcomp_perm() {
    unsigned long mask = 0;
    if (syscall(SYS_arch_prctl, 0x1022 /*ARCH_GET_XCOMP_PERM*/, &mask) != 0)
        return ~0ul;
    return mask;
}

static const char *isa_name(cpu_isa isa) {
    switch ((int)isa) {
        case dnnl_cpu_isa_all: return "all";
        case dnnl_cpu_isa_avx2: return "avx2";
        case dnnl_cpu_isa_avx512_core: return "avx512_core";
        case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
        case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
        case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
        case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
        default: return "?";
    }
}

struct Shape {
    int K, N;
};

int main(int argc, char **argv) {
    int threads = 1;
    bool once = false;
    std::vector<int> Ms = {10, 128, 512, 2048};
    std::string kinds = "bf16,int8,f32,blas";
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--threads" && i + 1 < argc) threads = atoi(argv[++i]);
        else if (a == "--once") once = true;
        else if (a == "--mintime" && i + 1 < argc) g_mintime = atof(argv[++i]);
        else if (a == "--kinds" && i + 1 < argc) kinds = argv[++i];
        else if (a == "--m" && i + 1 < argc) {
            Ms.clear();
            std::stringstream ss(argv[++i]);
            std::string t;
            while (std::getline(ss, t, ',')) Ms.push_back(atoi(t.c_str()));
        } else {
            fprintf(stderr, "unknown arg %s\n", a.c_str());
            return 1;
        }
    }
    auto want = [&](const char *k) {
        return ("," + kinds + ",").find(std::string(",") + k + ",")
                != std::string::npos;
    };
    openblas_set_num_threads(threads);

    const Shape shapes[] = {{768, 1280}, {768, 768}, {768, 2304}, {1152, 768}};

    unsigned long perm0 = xcomp_perm();
    engine eng(engine::kind::cpu, 0);
    stream strm(eng);
    const dnnl_version_t *v = dnnl_version();
    printf("# oneDNN %d.%d.%d (hash %s), cpu_runtime=%s, effective ISA=%s\n",
            v->major, v->minor, v->patch, v->hash,
            v->cpu_runtime == DNNL_RUNTIME_OMP ? "OMP" : "other",
            isa_name(get_effective_cpu_isa()));
    printf("# OMP_NUM_THREADS=%s, openblas threads=%d, once=%d, mintime=%.2f\n",
            getenv("OMP_NUM_THREADS") ? getenv("OMP_NUM_THREADS") : "(unset)",
            threads, (int)once, g_mintime);
    printf("# XCOMP_PERM mask before dnnl=0x%lx\n", perm0);
    printf("%-5s %5s %5s %5s %10s %10s %10s  %s\n", "kind", "M", "K", "N",
            "GFLOP/s", "us/iter", "best1", "impl / check");
    fflush(stdout);

    std::mt19937 rng(42);
    std::uniform_real_distribution<float> ud(-1.f, 1.f);

    for (const Shape &s : shapes) {
        const int K = s.K, N = s.N;
        // W: N x K row-major (PyTorch Linear layout).
        std::vector<float> W((size_t)N * K), Wi((size_t)N * K);
        for (auto &x : W) x = ud(rng);
        for (auto &x : Wi) x = (float)((int)(rng() % 11) - 5); // s8 values
        for (int M : Ms) {
            std::vector<float> A((size_t)M * K), Ai((size_t)M * K);
            for (auto &x : A) x = ud(rng);
            for (auto &x : Ai) x = (float)(rng() % 16); // u8 values
            std::vector<float> Cref((size_t)M * N, 0.f);
            double flops = 2.0 * M * N * K;

            // OpenBLAS reference (always computed once for checks).
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.f,
                    A.data(), K, W.data(), K, 0.f, Cref.data(), N);
            if (want("blas")) {
                std::vector<float> C((size_t)M * N);
                auto f = [&] {
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N,
                            K, 1.f, A.data(), K, W.data(), K, 0.f, C.data(), N);
                };
                if (once) f();
                else {
                    double t = time_best(f);
                    printf("%-5s %5d %5d %5d %10.1f %10.1f %10.1f  openblas sgemm NT\n",
                            "blas", M, K, N, flops / t * 1e-9, t * 1e6,
                            flops / g_min1 * 1e-9);
                }
            }

            struct Cfg {
                const char *name;
                dt sdt, wdt, ddt;
                bool bf32; // f32 tensors, attr fpmath_mode::bf16 (implicit bf16 math)
            };
            const Cfg cfgs[] = {{"bf16", dt::bf16, dt::bf16, dt::f32, false},
                    {"int8", dt::u8, dt::s8, dt::f32, false},
                    {"f32", dt::f32, dt::f32, dt::f32, false},
                    {"bf32", dt::f32, dt::f32, dt::f32, true}};
            for (const Cfg &c : cfgs) {
                if (!want(c.name)) continue;
                bool isint = c.sdt == dt::u8;
                const std::vector<float> &Asrc = isint ? Ai : A;
                const std::vector<float> &Wsrc = isint ? Wi : W;

                memory::desc a_md({M, K}, c.sdt, tag::ab);
                memory::desc w_any({K, N}, c.wdt, tag::any);
                memory::desc c_md({M, N}, c.ddt, tag::ab);
                matmul::desc d(a_md, w_any, c_md);
                primitive_attr attr;
                if (c.bf32) attr.set_fpmath_mode(fpmath_mode::bf16);
                matmul::primitive_desc pd(d, attr, eng);
                matmul prim(pd);

                // user f32 data -> reorder (converts type/layout) once.
                memory a_user({{M, K}, dt::f32, tag::ab}, eng,
                        (void *)Asrc.data());
                // W is N x K row-major == logical K x N in format "ba".
                memory w_user({{K, N}, dt::f32, tag::ba}, eng,
                        (void *)Wsrc.data());
                memory a_mem(pd.src_desc(), eng);
                memory w_mem(pd.weights_desc(), eng);
                memory c_mem(pd.dst_desc(), eng);
                reorder(a_user, a_mem).execute(strm, a_user, a_mem);
                reorder(w_user, w_mem).execute(strm, w_user, w_mem);
                strm.wait();

                std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, a_mem},
                        {DNNL_ARG_WEIGHTS, w_mem}, {DNNL_ARG_DST, c_mem}};
                auto f = [&] {
                    prim.execute(strm, args);
                    strm.wait();
                };
                f();
                // Check against f32 result.
                const float *C = (const float *)c_mem.get_data_handle();
                double maxerr = 0, maxref = 0;
                if (isint) {
                    // exact integer reference
                    std::vector<float> Ci((size_t)M * N);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N,
                            K, 1.f, Ai.data(), K, Wi.data(), K, 0.f, Ci.data(),
                            N);
                    for (size_t i = 0; i < Ci.size(); ++i) {
                        maxerr = std::max(maxerr, (double)std::fabs(C[i] - Ci[i]));
                        maxref = std::max(maxref, (double)std::fabs(Ci[i]));
                    }
                } else {
                    for (size_t i = 0; i < Cref.size(); ++i) {
                        maxerr = std::max(maxerr, (double)std::fabs(C[i] - Cref[i]));
                        maxref = std::max(maxref, (double)std::fabs(Cref[i]));
                    }
                }
                memory::desc wmd = pd.weights_desc();
                char buf[64];
                snprintf(buf, sizeof buf, "wfmt_ndims=%d inner_nblks=%d",
                        wmd.data.ndims,
                        wmd.data.format_desc.blocking.inner_nblks);
                if (once) {
                    printf("%-5s %5d %5d %5d %10s %10s %10s  %s  maxerr=%.3g/%.3g %s\n",
                            c.name, M, K, N, "-", "-", "-", pd.impl_info_str(),
                            maxerr, maxref, buf);
                } else {
                    // Cost of converting the f32 activations to the src type
                    // (f32->bf16 / f32->u8 reorder), i.e. what a caller holding
                    // f32 activations would pay per call on top of the matmul.
                    double tconv = 0;
                    if (c.sdt != dt::f32) {
                        reorder ra(a_user, a_mem);
                        double keep = g_mintime;
                        g_mintime = 0.05;
                        tconv = time_best([&] {
                            ra.execute(strm, a_user, a_mem);
                            strm.wait();
                        });
                        g_mintime = keep;
                    }
                    double t = time_best(f);
                    printf("%-5s %5d %5d %5d %10.1f %10.1f %10.1f  %s  maxerr=%.3g/%.3g\n",
                            c.name, M, K, N, flops / t * 1e-9, t * 1e6,
                            flops / g_min1 * 1e-9,
                            pd.impl_info_str(), maxerr, maxref);
                    if (tconv > 0)
                        printf("      (src f32->%s conversion: %.1f us)\n",
                                c.sdt == dt::u8 ? "u8" : "bf16", tconv * 1e6);
                }
                fflush(stdout);
            }
        }
    }
    printf("# XCOMP_PERM mask after dnnl=0x%lx (bit 18 = AMX TILEDATA permitted)\n",
            xcomp_perm());
    return 0;
}
