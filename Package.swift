// swift-tools-version: 6.1
import PackageDescription

// FAISS 1.7.3 from Debian is a static library; these are what it needs at link time.
let faissLinker: [LinkerSetting] = [
    .linkedLibrary("faiss"), .linkedLibrary("openblas"), .linkedLibrary("lapack"),
    .linkedLibrary("gomp"), .linkedLibrary("stdc++"), .linkedLibrary("m"),
]

let package = Package(
    name: "GemmaEncoder",
    // Linux only, on x86-64: the weights go on transparent huge pages (madvise MADV_HUGEPAGE), directories are
    // swapped with renameat2, FAISS is Debian's static build, and the C kernels are tuned for x86 (AVX2 /
    // AVX-512 clones, 512-bit vectors preferred). `platforms:` can name only Apple platforms, so it is left out.
    products: [
        .library(name: "GemmaEncoder", targets: ["GemmaEncoder"]),
        .executable(name: "gemma-encoder", targets: ["gemma-encoder"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        // HTTP service; its optional swift-configuration support is not needed.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        // Already in Hummingbird's graph; named here because the service imports them directly.
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.14.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.0.0"),
    ],
    targets: [
        // System BLAS: OpenBLAS's CBLAS header and library.
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS",
                       providers: [.apt(["libopenblas-dev"])]),
        // Vectorized C kernels (exp/tanh loops, reductions, skinny GEMM), clang target_clones per ISA.
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O3", "-ffp-contract=fast", "-mprefer-vector-width=512"])]),
        // Self-contained HTML reports with SVG plots (train, eval, eval-retrieval write them).
        .target(name: "Reports", dependencies: ["AtomicFiles", "ModelFormats"]),
        // Atomic replacement of files and directories: temporary sibling, fsync, rename, fsync the directory.
        .target(name: "AtomicFiles"),
        // Containers: memory-mapped files, safetensors, GGUF, JSON config decoding, SHA-256.
        .target(name: "ModelFormats"),
        // Numeric kernels over Float buffers: GEMM, norms, activations, RoPE, attention, the seeded RNG of dropout.
        .target(name: "EncoderKernels", dependencies: ["CBLAS", "CKernels"],
                swiftSettings: [.unsafeFlags(["-Ounchecked"])]),
        // Tokenizer: tokenizer.json and GGUF vocabularies, BPE with byte fallback.
        .target(name: "GemmaTokenizer", dependencies: ["ModelFormats"]),
        // Models: the encoder-model interface and registry; Gemma, Gemma 2, Gemma 3 (config, blocks, weights).
        .target(name: "GemmaModel", dependencies: ["ModelFormats", "EncoderKernels"]),
        // Training the encoder itself: f32 master weights, backward through every layer, dropout, LoRA.
        .target(name: "GemmaTraining", dependencies: ["GemmaModel", "ModelFormats", "EncoderKernels", "CKernels"],
                swiftSettings: [.unsafeFlags(["-Ounchecked"])]),
        // Public API: model sources and cache, TextEncoder, pooling, sentence-transformers layout, Dense.
        .target(name: "GemmaEncoder", dependencies: ["GemmaModel", "GemmaTokenizer", "ModelFormats", "EncoderKernels",
                                                     "AtomicFiles"]),
        // C ABI over FAISS's C++ API (Debian ships the C-API headers without their implementation).
        .target(name: "CFaissShim", exclude: ["openmp"],
                cxxSettings: [.unsafeFlags(["-std=c++17"]), .headerSearchPath("openmp")], linkerSettings: faissLinker),
        // System SQLite 3 (FTS5 enabled in Debian's build).
        .systemLibrary(name: "CSQLite", path: "Sources/CSQLite", providers: [.apt(["libsqlite3-dev"])]),
        // FAISS vector index and SQLite document store (FTS5 keyword search).
        .target(name: "VectorSearch", dependencies: ["CFaissShim", "CSQLite", "AtomicFiles"]),
        // Index directories: manifest, resumable builds, vector / keyword / hybrid search.
        .target(name: "DocumentIndex", dependencies: ["GemmaEncoder", "ModelFormats", "VectorSearch", "AtomicFiles", "EncoderKernels"]),
        // Task heads: head network (pooling from GemmaEncoder), dropout, MLP, training on a frozen encoder (exact
        // L-BFGS fits of linear heads, in double precision through CBLAS; AdamW otherwise) or a fine-tuned one, metrics, reranker.
        .target(name: "TaskHeads", dependencies: ["GemmaEncoder", "GemmaTraining", "GemmaModel", "GemmaTokenizer", "ModelFormats",
                                                  "EncoderKernels", "AtomicFiles", "CBLAS"]),
        // Training retrievers: contrastive bi-encoder losses (multiple negatives, CoSENT, Matryoshka, the gradient
        // cache), the trainable pipeline after the encoder (pooling, Dense, Normalize), sentence-transformers export.
        .target(name: "RetrieverTraining", dependencies: ["TaskHeads", "GemmaTraining", "GemmaEncoder", "GemmaModel", "GemmaTokenizer",
                                                          "ModelFormats", "EncoderKernels", "AtomicFiles"],
                swiftSettings: [.unsafeFlags(["-Ounchecked"])]),
        // HTTP service: OpenAI and TEI routes on Hummingbird, dynamic batching, Prometheus metrics.
        .target(name: "EncoderService", dependencies: [
            "GemmaEncoder", "DocumentIndex", "TaskHeads",
            // Their error types, which the service maps to status codes by kind.
            "ModelFormats", "EncoderKernels", "VectorSearch",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdCore", package: "hummingbird"),
            .product(name: "HummingbirdTLS", package: "hummingbird"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "UnixSignals", package: "swift-service-lifecycle"),
        ]),
        .executableTarget(name: "gemma-encoder", dependencies: [
            "GemmaEncoder", "EncoderKernels", "DocumentIndex", "VectorSearch", "TaskHeads", "GemmaTraining", "EncoderService",
            "AtomicFiles", "RetrieverTraining", "Reports",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // Helpers shared by the test targets (fixture paths, the models loaded once, file writers, cosine).
        .target(name: "TestSupport", dependencies: ["GemmaEncoder", "GemmaModel", "EncoderKernels", "CKernels", "ModelFormats"],
                path: "Tests/TestSupport"),
        // Used only by AtomicFilesTests: a writer that replaces a file or directory in a loop until killed.
        .executableTarget(name: "atomic-write-helper", dependencies: ["AtomicFiles", "TestSupport"], path: "Tests/AtomicWriteHelper"),
        .testTarget(name: "AtomicFilesTests", dependencies: ["AtomicFiles", "TestSupport"]),
        .testTarget(name: "ModelFormatsTests", dependencies: ["ModelFormats", "TestSupport"]),
        .testTarget(name: "EncoderKernelsTests", dependencies: ["EncoderKernels", "CKernels"]),
        .testTarget(name: "GemmaModelTests", dependencies: ["GemmaModel", "GemmaTraining", "ModelFormats", "EncoderKernels", "CKernels", "TestSupport"]),
        .testTarget(name: "GemmaTrainingTests", dependencies: ["GemmaTraining", "GemmaModel", "GemmaEncoder", "TaskHeads",
                                                              "ModelFormats", "EncoderKernels", "TestSupport"]),
        .testTarget(name: "GemmaTokenizerTests", dependencies: ["GemmaTokenizer", "ModelFormats", "TestSupport"]),
        .testTarget(name: "GemmaEncoderTests", dependencies: ["GemmaEncoder", "EncoderKernels", "TestSupport"]),
        .testTarget(name: "VectorSearchTests", dependencies: ["VectorSearch", "AtomicFiles"]),
        .testTarget(name: "DocumentIndexTests", dependencies: ["DocumentIndex", "AtomicFiles", "VectorSearch", "TestSupport"]),
        .testTarget(name: "TaskHeadsTests", dependencies: ["TaskHeads", "EncoderKernels", "ModelFormats", "TestSupport"]),
        .testTarget(name: "RetrieverTrainingTests", dependencies: ["RetrieverTraining", "TaskHeads", "GemmaTraining", "GemmaEncoder",
                                                                  "GemmaModel", "ModelFormats", "TestSupport"]),
        .testTarget(name: "CLITests", dependencies: ["TestSupport"]),
        // The service built on the tiny models (two models, a head, a reranker, an index), for the service tests
        // and the HTTP fuzz target.
        .target(name: "ServiceFixtures", dependencies: ["EncoderService", "GemmaEncoder", "DocumentIndex", "TaskHeads", "TestSupport"],
                path: "Tests/ServiceFixtures"),
        // The fuzz targets (issue 22) as a library: the libFuzzer binary runs them, FuzzRegressionTests replays
        // the minimized findings through them.
        .target(name: "FuzzTargets", dependencies: [
            "ModelFormats", "GemmaModel", "GemmaTokenizer", "GemmaEncoder", "DocumentIndex", "TaskHeads", "RetrieverTraining",
            "EncoderService", "ServiceFixtures", "TestSupport",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdTesting", package: "hummingbird"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
        ], path: "Tests/FuzzTargets"),
        .testTarget(name: "FuzzRegressionTests", dependencies: ["FuzzTargets", "TestSupport"]),
        .testTarget(name: "EncoderServiceTests", dependencies: [
            "ServiceFixtures", "EncoderService", "GemmaEncoder", "DocumentIndex", "TaskHeads", "VectorSearch", "CSQLite", "TestSupport",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdTesting", package: "hummingbird"),
        ]),
    ]
)

// libFuzzer harnesses for every parser of outside input (issue 22), built only by `scripts/fuzz`, which sets
// GEMMA_ENCODER_FUZZ and builds with -sanitize=fuzzer,address into a scratch path of its own: the main build
// and `swift test` never see this target.
if Context.environment["GEMMA_ENCODER_FUZZ"] != nil {
    package.targets.append(.executableTarget(
        name: "gemma-encoder-fuzz",
        dependencies: ["FuzzTargets"],
        path: "Tests/Fuzz",
        swiftSettings: [.unsafeFlags(["-parse-as-library"])]))
    package.products.append(.executable(name: "gemma-encoder-fuzz", targets: ["gemma-encoder-fuzz"]))
}
