#!/usr/bin/env python3
"""Peer throughput for the tokenizer: HF `tokenizers` (Rust) on one thread, one text at a time.

Usage: bench-tokenizer-peer.py MODEL_DIR BENCH.jsonl
Prints one JSON line {"tokens_per_s": ..., "texts_per_s": ...} (best of 3 passes; tokens include <bos>/<eos>).
"""
import os

# Must be set before tokenizers is imported: keep the Rust side single-threaded.
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["RAYON_RS_NUM_CPUS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import json
import sys
import time

from tokenizers import Tokenizer


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    model_dir, bench = sys.argv[1], sys.argv[2]
    t0 = time.perf_counter()
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    load_s = time.perf_counter() - t0
    with open(bench, encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()]
    best, tokens = float("inf"), 0
    for _ in range(3):
        start = time.perf_counter()
        n = 0
        for t in texts:
            n += len(tok.encode(t).ids)
        best = min(best, time.perf_counter() - start)
        tokens = n
    print(json.dumps({"tokens_per_s": round(tokens / best), "texts_per_s": round(len(texts) / best),
                      "tokens": tokens, "load_s": round(load_s, 3)}))


if __name__ == "__main__":
    main()
