// Implementation of faiss_shim.h. Every entry point funnels through guarded(),
// so FAISS exceptions (faiss::FaissException derives from std::exception) turn
// into status codes plus a thread-local message. Arguments FAISS would only
// check with FAISS_ASSERT (which aborts) are validated here first.
#include "faiss_shim.h"

#include <faiss/AutoTune.h>
#include <faiss/Index.h>
#include <faiss/IndexFlatCodes.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIDMap.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexPQ.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/IndexRefine.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>
#include <faiss/invlists/InvertedLists.h>
#include <faiss/invlists/OnDiskInvertedLists.h>
#include <faiss/utils/distances.h>

#include <atomic>
#include <cstdio>
#include <unistd.h>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <typeinfo>
#include <unordered_set>
#include <utility>
#include <vector>

// From libgomp (linked for FAISS); declared here because clang does not ship GCC's omp.h.
extern "C" void omp_set_num_threads(int threads);
extern "C" int omp_get_max_threads(void);

struct FaissShimIndex {
    std::unique_ptr<faiss::Index> index;
};

struct FaissShimRangeResult {
    std::vector<int64_t> ids;
    std::vector<float> distances;
};

namespace {

thread_local std::string last_error;

/// Thrown by the shim's own validation; mapped to FAISS_SHIM_INVALID_ARGUMENT.
struct InvalidArgument {
    std::string message;
};

[[noreturn]] void invalid(std::string message) {
    throw InvalidArgument{std::move(message)};
}

int32_t fail(int32_t status, std::string message) {
    last_error = std::move(message);
    return status;
}

/// OpenMP threads for FAISS's parallel regions; 0 leaves OpenMP's default. omp_set_num_threads only
/// reaches the calling thread, and FAISS is called from many threads, so every entry point applies it.
std::atomic<int32_t> omp_threads{0};

/// The single catch-all around every C++ call made by the shim. `operation`
/// only labels unknown exceptions; callers know which function failed.
template <typename Body>
int32_t guarded(const char* operation, Body&& body) noexcept {
    try {
        if (int32_t threads = omp_threads.load(std::memory_order_relaxed); threads > 0) omp_set_num_threads(threads);
        body();
        return FAISS_SHIM_OK;
    } catch (const InvalidArgument& e) {
        return fail(FAISS_SHIM_INVALID_ARGUMENT, e.message);
    } catch (const std::exception& e) {
        return fail(FAISS_SHIM_FAISS_ERROR, e.what());
    } catch (...) {
        return fail(FAISS_SHIM_UNKNOWN_ERROR, std::string("unknown C++ exception in ") + operation);
    }
}

void require_handle(const FaissShimIndex* h) {
    if (h == nullptr || !h->index) invalid("index handle is null");
}

void require_vectors(const FaissShimIndex* h, int64_t n, const void* x) {
    require_handle(h);
    if (n < 0) invalid("negative vector count " + std::to_string(n));
    if (n > 0 && x == nullptr) invalid("vector buffer is null");
}

/// Steps through wrappers that delegate to one sub-index, so parameters can be
/// set on (and ids checked against) the index that actually holds the data.
faiss::Index* inner_index(faiss::Index* index) {
    if (auto* idmap = dynamic_cast<faiss::IndexIDMap*>(index)) return idmap->index;
    if (auto* pre = dynamic_cast<faiss::IndexPreTransform*>(index)) return pre->index;
    if (auto* refine = dynamic_cast<faiss::IndexRefine*>(index)) return refine->base_index;
    return nullptr;
}

template <typename T>
T* find_inner(faiss::Index* index) {
    for (faiss::Index* i = index; i != nullptr; i = inner_index(i)) {
        if (auto* found = dynamic_cast<T*>(i)) return found;
    }
    return nullptr;
}

/// Whether `id` is already stored, for the index kinds that keep an id lookup.
bool contains_id(faiss::Index* index, int64_t id) {
    if (auto* idmap2 = dynamic_cast<faiss::IndexIDMap2*>(index)) {
        return idmap2->rev_map.count(id) != 0;
    }
    if (auto* ivf = find_inner<faiss::IndexIVF>(index)) {
        if (ivf->direct_map.type == faiss::DirectMap::Hashtable) {
            return ivf->direct_map.hashtable.count(id) != 0;
        }
    }
    return false;
}

/// FAISS 1.7.3 reports on-disk list work with printf on stdout (the .ivfdata path it resolves, the file it
/// resizes), where a command's own output goes (search --json): for the guard's life stdout goes to stderr.
struct StdoutToStderr {
    int saved = -1;
    StdoutToStderr() {
        std::fflush(stdout);
        saved = dup(1);
        if (saved >= 0) dup2(2, 1);
    }
    ~StdoutToStderr() {
        std::fflush(stdout);
        if (saved >= 0) {
            dup2(saved, 1);
            close(saved);
        }
    }
};

/// An IVF index whose lists live in another file (merged with --ondisk) is not a merge source: FAISS's merge
/// empties its source's lists (that file would be rewritten), and a memory-mapped read (IO_FLAG_MMAP) leaves
/// such lists unmapped (ptr null), while an ordinary index read that way maps its lists from the index file.
[[noreturn]] void refuse_ondisk_source(const std::string& name) {
    invalid(name + " keeps its inverted lists on disk (merged with --ondisk): merge the shards it was made of instead");
}

bool has_ondisk_lists(const faiss::IndexIVF* ivf) {
    return dynamic_cast<const faiss::OnDiskInvertedLists*>(ivf->invlists) != nullptr;
}

bool has_unmapped_lists(const faiss::IndexIVF* ivf) {
    auto* ondisk = dynamic_cast<const faiss::OnDiskInvertedLists*>(ivf->invlists);
    return ondisk != nullptr && ondisk->ptr == nullptr && ondisk->totsize > 0;
}

/// Puts a direct map type back when a merge fails half-way (FAISS merges only without one).
struct RestoreDirectMap {
    faiss::IndexIVF* ivf;
    faiss::DirectMap::Type type;
    bool done = false;
    ~RestoreDirectMap() {
        if (!done && ivf->direct_map.type != type) {
            try { ivf->set_direct_map_type(type); } catch (...) {}
        }
    }
};

} // namespace

extern "C" {

const char* faiss_shim_last_error(void) {
    return last_error.c_str();
}

int32_t faiss_shim_create(int32_t dimension, const char* factory, int32_t metric,
                          FaissShimIndex** out) {
    return guarded("create", [&] {
        if (out == nullptr) invalid("output pointer is null");
        *out = nullptr;
        if (dimension <= 0) invalid("dimension must be positive, got " + std::to_string(dimension));
        if (factory == nullptr || *factory == '\0') invalid("factory string is empty");
        faiss::MetricType faiss_metric;
        switch (metric) {
            case FAISS_SHIM_METRIC_INNER_PRODUCT: faiss_metric = faiss::METRIC_INNER_PRODUCT; break;
            case FAISS_SHIM_METRIC_L2: faiss_metric = faiss::METRIC_L2; break;
            default: invalid("unknown metric " + std::to_string(metric));
        }
        std::unique_ptr<faiss::Index> index(faiss::index_factory(dimension, factory, faiss_metric));
        if (!index) invalid(std::string("index_factory returned no index for \"") + factory + "\"");

        // index_factory enables polysemous training for PQ, which only serves
        // Hamming-threshold search (never enabled through this API) and makes
        // training ~10x slower (50 s instead of 4 s for PQ16 on 10k vectors).
        if (auto* ivfpq = find_inner<faiss::IndexIVFPQ>(index.get())) ivfpq->do_polysemous_training = false;
        if (auto* pq = find_inner<faiss::IndexPQ>(index.get())) pq->do_polysemous_training = false;

        if (std::strncmp(factory, "IDMap", 5) != 0) {
            if (auto* ivf = find_inner<faiss::IndexIVF>(index.get())) {
                // IVF lists store 64-bit ids themselves; a hashtable direct map
                // adds reconstruct-by-id and keeps remove_ids consistent.
                ivf->set_direct_map_type(faiss::DirectMap::Hashtable);
            } else {
                auto wrapped = std::make_unique<faiss::IndexIDMap2>(index.get());
                wrapped->own_fields = true;
                index.release();
                index = std::move(wrapped);
            }
        }
        *out = new FaissShimIndex{std::move(index)};
    });
}

int32_t faiss_shim_read(const char* path, FaissShimIndex** out) {
    return guarded("read", [&] {
        if (out == nullptr) invalid("output pointer is null");
        *out = nullptr;
        if (path == nullptr) invalid("path is null");
        // An index with on-disk inverted lists finds its .ivfdata beside the index file (where merge_ivf_ondisk
        // put it), not at the path it had when written: index directories are built aside and renamed. Nothing
        // writes to those lists (adding rebuilds the index in memory), so they are mapped read-only.
        StdoutToStderr quiet;
        std::unique_ptr<faiss::Index> index(faiss::read_index(path, faiss::IO_FLAG_ONDISK_SAME_DIR | faiss::IO_FLAG_READ_ONLY));
        if (!index) invalid(std::string("no index read from ") + path);
        *out = new FaissShimIndex{std::move(index)};
    });
}

int32_t faiss_shim_write(const FaissShimIndex* h, const char* path) {
    return guarded("write", [&] {
        require_handle(h);
        if (path == nullptr) invalid("path is null");
        faiss::write_index(h->index.get(), path);
    });
}

void faiss_shim_free(FaissShimIndex* h) {
    delete h; // FAISS destructors do not throw.
}

int64_t faiss_shim_ntotal(const FaissShimIndex* h) {
    return (h && h->index) ? h->index->ntotal : 0;
}

int32_t faiss_shim_dimension(const FaissShimIndex* h) {
    return (h && h->index) ? h->index->d : 0;
}

int32_t faiss_shim_metric(const FaissShimIndex* h) {
    if (!h || !h->index) return -1;
    switch (h->index->metric_type) {
        case faiss::METRIC_INNER_PRODUCT: return FAISS_SHIM_METRIC_INNER_PRODUCT;
        case faiss::METRIC_L2: return FAISS_SHIM_METRIC_L2;
        default: return -1;
    }
}

int32_t faiss_shim_is_trained(const FaissShimIndex* h) {
    return (h && h->index && h->index->is_trained) ? 1 : 0;
}

int32_t faiss_shim_train(FaissShimIndex* h, int64_t n, const float* x) {
    return guarded("train", [&] {
        require_vectors(h, n, x);
        if (n == 0) invalid("no training vectors");
        h->index->train(n, x);
    });
}

int32_t faiss_shim_add_with_ids(FaissShimIndex* h, int64_t n, const float* x,
                                const int64_t* ids) {
    return guarded("add", [&] {
        require_vectors(h, n, x);
        if (n == 0) return;
        if (ids == nullptr) invalid("id buffer is null");
        if (!h->index->is_trained) invalid("index is not trained; call train before add");
        // Duplicates would silently corrupt IDMap2's reverse map / the IVF hashtable.
        std::unordered_set<int64_t> batch;
        batch.reserve(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) {
            if (ids[i] < 0) invalid("ids must be non-negative, got " + std::to_string(ids[i]));
            if (!batch.insert(ids[i]).second) invalid("id " + std::to_string(ids[i]) + " appears twice in the batch");
            if (contains_id(h->index.get(), ids[i])) invalid("id " + std::to_string(ids[i]) + " is already in the index");
        }
        h->index->add_with_ids(n, x, ids);
    });
}

int32_t faiss_shim_remove_ids(FaissShimIndex* h, int64_t n, const int64_t* ids,
                              int64_t* removed) {
    return guarded("remove", [&] {
        require_handle(h);
        if (removed == nullptr) invalid("output pointer is null");
        *removed = 0;
        if (n < 0) invalid("negative id count");
        if (n == 0) return;
        if (ids == nullptr) invalid("id buffer is null");
        // IndexIDMap::remove_ids compacts its id map assuming the sub-index
        // renumbers survivors the same way; only flat-code indexes (Flat, SQ,
        // PQ) do. Over IVF it would return wrong ids (and read out of bounds).
        if (auto* idmap = dynamic_cast<faiss::IndexIDMap*>(h->index.get())) {
            if (!dynamic_cast<faiss::IndexFlatCodes*>(idmap->index)) {
                invalid("this index kind does not support remove: IDMap can only remove over "
                        "Flat/SQ/PQ (HNSW cannot remove at all; create IVF without an \"IDMap\" "
                        "prefix, it stores ids natively)");
            }
        }
        auto* ivf = find_inner<faiss::IndexIVF>(h->index.get());
        if (ivf && ivf->direct_map.type == faiss::DirectMap::Hashtable) {
            // The hashtable direct map only supports removal by IDSelectorArray.
            faiss::IDSelectorArray selector(static_cast<size_t>(n), ids);
            *removed = static_cast<int64_t>(h->index->remove_ids(selector));
        } else {
            faiss::IDSelectorBatch selector(static_cast<size_t>(n), ids);
            *removed = static_cast<int64_t>(h->index->remove_ids(selector));
        }
    });
}

// ParameterSpace walks IDMap / pre-transform / refine wrappers itself and
// throws when the index kind has no such parameter.
int32_t faiss_shim_set_nprobe(FaissShimIndex* h, int64_t nprobe) {
    return guarded("set_nprobe", [&] {
        require_handle(h);
        if (nprobe <= 0) invalid("nprobe must be positive, got " + std::to_string(nprobe));
        faiss::ParameterSpace().set_index_parameter(h->index.get(), "nprobe", static_cast<double>(nprobe));
    });
}

int32_t faiss_shim_set_ef_search(FaissShimIndex* h, int32_t ef_search) {
    return guarded("set_ef_search", [&] {
        require_handle(h);
        if (ef_search <= 0) invalid("efSearch must be positive, got " + std::to_string(ef_search));
        faiss::ParameterSpace().set_index_parameter(h->index.get(), "efSearch", static_cast<double>(ef_search));
    });
}

int32_t faiss_shim_search(const FaissShimIndex* h, int64_t n, const float* x, int64_t k,
                          float* distances, int64_t* labels) {
    return guarded("search", [&] {
        require_vectors(h, n, x);
        if (k <= 0) invalid("k must be positive, got " + std::to_string(k));
        if (n == 0) return;
        if (distances == nullptr || labels == nullptr) invalid("output buffer is null");
        if (!h->index->is_trained) invalid("index is not trained");
        h->index->search(n, x, k, distances, labels);
    });
}

int32_t faiss_shim_search_tuned(FaissShimIndex* h, int64_t n, const float* x, int64_t k, int64_t nprobe,
                                int32_t ef_search, float* distances, int64_t* labels) {
    return guarded("search", [&] {
        require_vectors(h, n, x);
        if (k <= 0) invalid("k must be positive, got " + std::to_string(k));
        if (distances == nullptr || labels == nullptr) invalid("output buffer is null");
        if (!h->index->is_trained) invalid("index is not trained");
        auto* ivf = find_inner<faiss::IndexIVF>(h->index.get());
        auto* hnsw = find_inner<faiss::IndexHNSW>(h->index.get());
        if (hnsw == nullptr && ivf != nullptr) hnsw = dynamic_cast<faiss::IndexHNSW*>(ivf->quantizer);
        if (nprobe > 0 && ivf == nullptr) invalid("nprobe applies to IVF indexes only");
        if (ef_search > 0 && hnsw == nullptr) invalid("ef_search applies to HNSW indexes (or IVF over an HNSW quantizer) only");
        // Set for this call and put back whatever happens: FAISS 1.7.3's SearchParameters cannot carry them
        // (IDMap wrappers refuse any, and HNSW sizes its candidate queue from the index's own efSearch).
        const size_t saved_nprobe = ivf ? ivf->nprobe : 0;
        const int saved_ef = hnsw ? hnsw->hnsw.efSearch : 0;
        struct Restore {
            faiss::IndexIVF* ivf; faiss::IndexHNSW* hnsw; size_t nprobe; int ef;
            ~Restore() {
                if (ivf) ivf->nprobe = nprobe;
                if (hnsw) hnsw->hnsw.efSearch = ef;
            }
        } restore{ivf, hnsw, saved_nprobe, saved_ef};
        if (nprobe > 0) ivf->nprobe = static_cast<size_t>(nprobe);
        if (ef_search > 0) hnsw->hnsw.efSearch = ef_search;
        if (n > 0) h->index->search(n, x, k, distances, labels);
    });
}

int32_t faiss_shim_time_searches(const FaissShimIndex* h, int64_t n, const float* x, int64_t k,
                                 int32_t one_per_call, double* seconds) {
    return guarded("time_searches", [&] {
        require_vectors(h, n, x);
        if (k <= 0) invalid("k must be positive, got " + std::to_string(k));
        if (seconds == nullptr) invalid("output pointer is null");
        if (!h->index->is_trained) invalid("index is not trained");
        const int64_t d = h->index->d, rows = one_per_call ? 1 : n;
        std::vector<float> distances(rows * k);
        std::vector<faiss::Index::idx_t> labels(rows * k);
        const auto start = std::chrono::steady_clock::now();
        if (one_per_call) {
            for (int64_t q = 0; q < n; q++) h->index->search(1, x + q * d, k, distances.data(), labels.data());
        } else {
            h->index->search(n, x, k, distances.data(), labels.data());
        }
        *seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    });
}

int32_t faiss_shim_range_search(const FaissShimIndex* h, const float* x, float radius,
                                FaissShimRangeResult** out) {
    return guarded("range_search", [&] {
        if (out == nullptr) invalid("output pointer is null");
        *out = nullptr;
        require_vectors(h, 1, x);
        if (!h->index->is_trained) invalid("index is not trained");
        faiss::RangeSearchResult raw(1);
        h->index->range_search(1, x, radius, &raw);
        const size_t count = raw.lims[1] - raw.lims[0];
        auto result = std::make_unique<FaissShimRangeResult>();
        result->ids.assign(raw.labels + raw.lims[0], raw.labels + raw.lims[0] + count);
        result->distances.assign(raw.distances + raw.lims[0], raw.distances + raw.lims[0] + count);
        *out = result.release();
    });
}

int64_t faiss_shim_range_result_count(const FaissShimRangeResult* r) {
    return r ? static_cast<int64_t>(r->ids.size()) : 0;
}

void faiss_shim_range_result_copy(const FaissShimRangeResult* r, int64_t* ids,
                                  float* distances) {
    if (!r) return;
    if (ids) std::copy(r->ids.begin(), r->ids.end(), ids);
    if (distances) std::copy(r->distances.begin(), r->distances.end(), distances);
}

void faiss_shim_range_result_free(FaissShimRangeResult* r) {
    delete r;
}

int32_t faiss_shim_reconstruct(const FaissShimIndex* h, int64_t id, float* out) {
    return guarded("reconstruct", [&] {
        require_handle(h);
        if (out == nullptr) invalid("output buffer is null");
        if (id < 0) invalid("id must be non-negative, got " + std::to_string(id));
        h->index->reconstruct(id, out);
    });
}

int32_t faiss_shim_merge_ivf(FaissShimIndex* dst, FaissShimIndex* src) {
    return guarded("merge", [&] {
        require_handle(dst);
        require_handle(src);
        if (dst == src) invalid("an index cannot be merged into itself");
        // Plain IVF only (IVFn,Flat / PQm / SQ8): a wrapper (IDMap, pre-transform, refine) keeps state of its
        // own that a merge of the inner lists would leave stale.
        auto* to = dynamic_cast<faiss::IndexIVF*>(dst->index.get());
        auto* from = dynamic_cast<faiss::IndexIVF*>(src->index.get());
        if (to == nullptr || from == nullptr) invalid("only plain IVF indexes merge (IVFn,Flat, IVFn,PQm, IVFn,SQ8: shards of one trained quantizer)");
        if (to->d != from->d || to->nlist != from->nlist || to->code_size != from->code_size ||
            typeid(*to) != typeid(*from) || to->metric_type != from->metric_type) {
            invalid("the indexes differ in kind, dimension, list count or code size");
        }
        // Ids must stay unique: check them against dst's hashtable before FAISS moves anything.
        if (to->direct_map.type == faiss::DirectMap::Hashtable) {
            for (size_t list = 0; list < from->nlist; list++) {
                const size_t size = from->invlists->list_size(list);
                if (size == 0) continue;
                faiss::InvertedLists::ScopedIds ids(from->invlists, list);
                for (size_t j = 0; j < size; j++) {
                    if (to->direct_map.hashtable.count(ids[j]) != 0) {
                        invalid("id " + std::to_string(ids[j]) + " is in both indexes");
                    }
                }
            }
        }
        if (has_ondisk_lists(from)) refuse_ondisk_source("the index merged in");
        if (has_ondisk_lists(to)) refuse_ondisk_source("the index merged into");
        // FAISS merges inverted lists only without a direct map: drop both, merge, rebuild dst's hashtable
        // from its (now merged) lists (and put both back if the merge throws).
        RestoreDirectMap restore_to{to, to->direct_map.type}, restore_from{from, from->direct_map.type};
        to->set_direct_map_type(faiss::DirectMap::NoMap);
        from->set_direct_map_type(faiss::DirectMap::NoMap);
        to->merge_from(*from, 0);
        to->set_direct_map_type(restore_to.type);
        restore_to.done = true;
    });
}

int32_t faiss_shim_merge_ivf_ondisk(FaissShimIndex* dst, const char* const* paths, int32_t n, const char* ivfdata_path) {
    return guarded("merge_ondisk", [&] {
        require_handle(dst);
        if (paths == nullptr || n <= 0) invalid("no indexes to merge");
        if (ivfdata_path == nullptr || *ivfdata_path == '\0') invalid("no path for the inverted lists");
        auto* to = dynamic_cast<faiss::IndexIVF*>(dst->index.get());
        if (to == nullptr) invalid("only plain IVF indexes merge (IVFn,Flat, IVFn,PQm, IVFn,SQ8)");
        if (to->ntotal != 0) invalid("the destination must be the empty trained index (the quantizer)");
        to->set_direct_map_type(faiss::DirectMap::NoMap);
        // The sources are memory-mapped read-only (IO_FLAG_MMAP), never loaded: the merge streams their lists.
        std::vector<std::unique_ptr<faiss::Index>> sources;
        std::vector<const faiss::InvertedLists*> lists;
        for (int32_t i = 0; i < n; i++) {
            if (paths[i] == nullptr) invalid("index path is null");
            std::unique_ptr<faiss::Index> source(faiss::read_index(paths[i], faiss::IO_FLAG_MMAP));
            auto* from = dynamic_cast<faiss::IndexIVF*>(source.get());
            if (from == nullptr) invalid(std::string(paths[i]) + ": not a plain IVF index");
            if (has_unmapped_lists(from)) refuse_ondisk_source(paths[i]);
            from->set_direct_map_type(faiss::DirectMap::NoMap);
            to->check_compatible_for_merge(*from);  // kind, sizes and the same centroids
            lists.push_back(from->invlists);
            sources.push_back(std::move(source));
        }
        StdoutToStderr quiet;
        auto ondisk = std::make_unique<faiss::OnDiskInvertedLists>(to->nlist, to->code_size, ivfdata_path);
        const size_t total = ondisk->merge_from(lists.data(), static_cast<int>(lists.size()));
        to->replace_invlists(ondisk.release(), true);
        to->ntotal = static_cast<faiss::Index::idx_t>(total);
    });
}

int32_t faiss_shim_set_blas_threshold(int32_t queries) {
    return guarded("set_blas_threshold", [&] {
        if (queries <= 0) invalid("threshold must be positive, got " + std::to_string(queries));
        faiss::distance_compute_blas_threshold = queries;
    });
}

} // extern "C"

int32_t faiss_shim_set_omp_threads(int32_t threads) {
    return guarded("set_omp_threads", [&] {
        if (threads <= 0) invalid("threads must be positive, got " + std::to_string(threads));
        omp_threads.store(threads);
        omp_set_num_threads(threads);
    });
}

int32_t faiss_shim_omp_threads(void) { return omp_get_max_threads(); }
