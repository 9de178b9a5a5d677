#!/usr/bin/env python3
"""EmbeddingGemma-300M on the CPU: gemma-encoder next to the engines a user would pick instead, one run.

Usage (normally through scripts/bench-peers, which sets up the venv and the thread count):
  bench-peers.py --bin GEMMA_ENCODER --model MODEL_DIR --input TEXTS.jsonl [--prompt document]
                 [--n N] [--threads T] [--json OUT] [--work .build/peers]

Every engine gets the same texts (the first N of the file), the same prompt and the same thread count:
  ours     `gemma-encoder bench --json --precision P` for P = f32, bf16, int8 (tokens/s, 10-token query p50),
           then `gemma-encoder embed` of the same texts for the cosine to sentence-transformers f32
  st       sentence-transformers, PyTorch f32 (the reference every cosine is taken to)
  st-bf16  the same model under torch.autocast(bfloat16)
  ort      ONNX Runtime f32 on the sentence-transformers pipeline exported with torch's exporter
  ov-f32   OpenVINO on that ONNX file, INFERENCE_PRECISION_HINT f32
  ov       OpenVINO at its default precision (bf16 on CPUs with AMX or AVX512-BF16)
Per engine: tokens/s over the whole file (batch 32, texts sorted by length), the p50 of a single 10-token
query, and the min cosine of its embeddings to sentence-transformers f32. Then the ratios issue 20 sets
goals for. Timings are one warm pass each: run on a quiet machine.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

PEERS = ("st", "st-bf16", "ort", "ov-f32", "ov")
OURS = ("f32", "bf16", "int8")
BATCH = 32          # the peers' batch size, as sentence-transformers' default and the shared tool use
QUERIES = 50        # latency runs per engine, as `gemma-encoder bench --queries` defaults to
QUERY_TOKENS = 10   # <bos> and <eos> included, as `gemma-encoder bench --query-tokens` defaults to
# The text ours builds its latency query from (BenchCommand.latencyQuery): the query prompt + this, cut to
# QUERY_TOKENS ids. The peers get exactly those ids, so every engine runs the same 10 tokens.
QUERY_TEXT = "best text editor for programmers"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", required=True, help="the gemma-encoder binary")
    p.add_argument("--model", required=True, help="EmbeddingGemma's sentence-transformers directory")
    p.add_argument("--input", required=True, help='JSON Lines with a "text" field')
    p.add_argument("--prompt", default="document", help="prompt name, for every engine")
    p.add_argument("--n", type=int, default=0, help="first N texts (0: all)")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--json", help="also write every figure here as JSON")
    p.add_argument("--work", default=".build/peers", help="the ONNX export and temporary files")
    p.add_argument("--only", default=",".join(("ours",) + PEERS), help="comma-separated: ours," + ",".join(PEERS))
    return p.parse_args()


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def p50(samples):
    """The same percentile as ours: the sorted sample at index floor(n * 0.5)."""
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * 0.5))]


def min_cosine(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    c = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return float(c.min())


def latency_query(tokenizer, prompts):
    """Ours' latency query, id for id: <bos>, the body of query prompt + QUERY_TEXT repeated or cut to
    QUERY_TOKENS - 2 ids, <eos>."""
    q = tokenizer(prompts["query"] + QUERY_TEXT)["input_ids"]
    body = q[1:-1]
    return [q[0]] + [body[i % len(body)] for i in range(QUERY_TOKENS - 2)] + [q[-1]]


# ---------------------------------------------------------------------------------------------- ours

def run_ours(args, subset, query_ids):
    """gemma-encoder's own bench for each precision, then its embeddings of the file for the cosines.
    Run before torch is imported, so no idle PyTorch/OpenMP threads sit in this process meanwhile. Ours
    takes no thread count: it starts one worker per online core, on the CPUs the wrapper pinned the run to."""
    results = {}
    for precision in OURS:
        log(f"ours {precision}: bench")
        out = subprocess.run([args.bin, "bench", "--json", "--model", args.model, "--input", subset,
                              "--prompt", args.prompt, "--precision", precision, "--scaling-lengths", "16"],
                             check=True, capture_output=True, text=True).stdout
        bench = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
        if bench.get("query_tokens") != len(query_ids):
            log(f"note: ours' query has {bench.get('query_tokens')} tokens, the peers' {len(query_ids)}")
        # The embeddings of the same texts, for the cosine to sentence-transformers (bench itself only
        # compares a precision with our own f32, on the first 64 texts).
        npy = os.path.join(args.work, f"ours-{precision}.npy")
        log(f"ours {precision}: embed")
        subprocess.run([args.bin, "embed", "--model", args.model, "--input", subset, "--prompt", args.prompt,
                        "--precision", precision, "--output", npy], check=True, stdout=subprocess.DEVNULL)
        results[precision] = {"bench": bench, "embeddings": np.load(npy)}
    return results


# --------------------------------------------------------------------------------------------- peers

class Peers:
    def __init__(self, args, texts):
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer
        transformers.logging.disable_progress_bar()   # its weight-loading bar is noise in a report
        self.torch, self.args, self.texts = torch, args, texts
        torch.set_num_threads(args.threads)
        self.st = SentenceTransformer(args.model, device="cpu").eval()
        self.prompt_text = self.st.prompts[args.prompt]
        tok = self.st.tokenizer
        # The ids sentence-transformers itself runs: prompt + text, <bos> … <eos>, cut at max_seq_length
        # (2,048 for EmbeddingGemma, as ours). ORT and OpenVINO get these same ids.
        self.ids = [tok(self.prompt_text + t, truncation=True, max_length=self.st.max_seq_length)["input_ids"]
                    for t in texts]
        self.tokens = sum(len(i) for i in self.ids)
        self.query_ids = latency_query(tok, self.st.prompts)
        self.query_text = tok.decode(self.query_ids[1:-1])

    # Each engine is two functions: embed(texts in file order) -> array, and query() -> one embedding
    # of the 10 query ids. measure() times both the same way for all of them.
    def measure(self, name, embed, query):
        embed(self.texts[:8])                      # warm-up: first-call allocations, kernel selection
        start = time.perf_counter()
        e = np.asarray(embed(self.texts), np.float32)
        seconds = time.perf_counter() - start
        query()
        lat = []
        for _ in range(QUERIES):
            t = time.perf_counter(); query(); lat.append((time.perf_counter() - t) * 1000)
        log(f"{name}: {self.tokens / seconds:.1f} tokens/s, query p50 {p50(lat):.2f} ms")
        return {"tokens_per_s": self.tokens / seconds, "seconds": seconds, "query_p50_ms": p50(lat),
                "query_p90_ms": sorted(lat)[int(len(lat) * 0.9)], "embeddings": e}

    def query_tensors(self):
        t = self.torch.tensor([self.query_ids], dtype=self.torch.long)
        return t, self.torch.ones_like(t)

    def st_forward(self, ids, mask):
        """The whole sentence-transformers pipeline (transformer, mean pooling, two Dense, normalize) on
        ready ids: what encode() runs per batch, without its tokenizer."""
        return self.st({"input_ids": ids, "attention_mask": mask})["sentence_embedding"]

    def st_f32(self):
        torch = self.torch
        ids, mask = self.query_tensors()
        def query():
            with torch.inference_mode():
                return self.st_forward(ids, mask)
        return self.measure("st", lambda x: self.st.encode(x, batch_size=BATCH, prompt_name=self.args.prompt),
                            query)

    def st_bf16(self):
        torch = self.torch
        ids, mask = self.query_tensors()
        def embed(x):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return self.st.encode(x, batch_size=BATCH, prompt_name=self.args.prompt)
        def query():
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                return self.st_forward(ids, mask)
        return self.measure("st-bf16", embed, query)

    def onnx_file(self):
        """The sentence-transformers pipeline as one ONNX graph (ids, mask -> normalized embedding), made
        once by torch's exporter (torch.export + onnxscript) and cached: ORT and OpenVINO both run it, so
        they compute exactly what sentence-transformers does."""
        torch = self.torch
        # A directory per model: the graph and its weights file (external data, past protobuf's 2 GB limit),
        # whose name is written inside the graph, so the two stay together. Delete it to export again.
        folder = os.path.join(self.args.work, os.path.basename(os.path.normpath(self.args.model)) + "-onnx")
        path = os.path.join(folder, "model.onnx")
        if os.path.exists(path):
            return path
        log(f"exporting the sentence-transformers pipeline to {path}")
        st = self.st

        class Pipeline(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.st = st

            def forward(self, input_ids, attention_mask):
                return self.st({"input_ids": input_ids, "attention_mask": attention_mask})["sentence_embedding"]

        batch = torch.export.Dim("batch", min=1, max=1024)
        length = torch.export.Dim("length", min=2, max=self.st.max_seq_length)
        # Example inputs larger than 1 in both dimensions, so the exporter does not specialize on them.
        ids = torch.full((3, 17), 100, dtype=torch.long)
        mask = torch.ones_like(ids)
        # Into a scratch directory renamed at the end, so an interrupted export leaves no half file behind.
        scratch = folder + ".partial"
        shutil.rmtree(scratch, ignore_errors=True)
        os.makedirs(scratch)
        torch.onnx.export(Pipeline().eval(), (ids, mask), os.path.join(scratch, "model.onnx"), dynamo=True,
                          external_data=True,
                          input_names=["input_ids", "attention_mask"], output_names=["sentence_embedding"],
                          dynamic_shapes={"input_ids": {0: batch, 1: length},
                                          "attention_mask": {0: batch, 1: length}})
        os.replace(scratch, folder)
        return path

    def batches(self):
        """Batches of 32 in order of decreasing length, right-padded (pad id 0, mask 0) to their longest:
        what sentence-transformers' encode does, on the same ids."""
        order = sorted(range(len(self.ids)), key=lambda i: -len(self.ids[i]))
        for start in range(0, len(order), BATCH):
            idx = order[start:start + BATCH]
            width = max(len(self.ids[i]) for i in idx)
            ids = np.zeros((len(idx), width), np.int64)
            mask = np.zeros((len(idx), width), np.int64)
            for r, i in enumerate(idx):
                ids[r, :len(self.ids[i])] = self.ids[i]
                mask[r, :len(self.ids[i])] = 1
            yield idx, ids, mask

    def graph_engine(self, name, run):
        """Time an engine that takes (ids, mask) arrays. These get the ids tokenized up front (the
        sentence-transformers rows include their tokenizer: a small share of a 300M-parameter forward)."""
        def embed(texts):
            if len(texts) != len(self.ids):  # the warm-up: just run the first batch
                _, ids, mask = next(self.batches())
                return run(ids[:len(texts)], mask[:len(texts)])
            out = [None] * len(self.ids)
            for idx, ids, mask in self.batches():
                for r, e in zip(idx, run(ids, mask)):
                    out[r] = e
            return out
        q = np.array([self.query_ids], np.int64)
        qm = np.ones_like(q)
        return self.measure(name, embed, lambda: run(q, qm))

    def ort(self):
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.args.threads
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(self.onnx_file(), so, providers=["CPUExecutionProvider"])
        r = self.graph_engine("ort", lambda i, m: sess.run(None, {"input_ids": i, "attention_mask": m})[0])
        r["precision"] = "f32"
        return r

    def openvino(self, name, hint):
        import openvino as ov
        config = {"INFERENCE_NUM_THREADS": self.args.threads}
        if hint:
            config["INFERENCE_PRECISION_HINT"] = hint
        compiled = ov.Core().compile_model(self.onnx_file(), "CPU", config)
        # What the plugin settled on: "bf16" by default on CPUs with AMX or AVX512-BF16, else "f32".
        chosen = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        request = compiled.create_infer_request()   # one reused request: the cheapest call per query
        def run(ids, mask):
            return request.infer({"input_ids": ids, "attention_mask": mask})[0].copy()
        r = self.graph_engine(name, run)
        r["precision"] = chosen
        return r


# ---------------------------------------------------------------------------------------------- main

def cpu_features():
    want = ("amx_bf16", "avx512_bf16", "avx512_vnni", "avx512f", "avx2")
    flags = set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags |= set(line.split(":", 1)[1].split())
    return sorted(w for w in want if w in flags)


def versions():
    out = {}
    for m in ("torch", "sentence_transformers", "transformers", "onnxruntime", "openvino"):
        try:
            out[m] = __import__(m).__version__
        except Exception:  # an engine left out with --only may not be installed
            pass
    return out


def main():
    args = parse_args()
    only = set(args.only.split(","))
    os.makedirs(args.work, exist_ok=True)
    features = cpu_features()   # the wrapper prints them first; kept here for the JSON and the goals
    print(f"threads: {args.threads}")
    rows = [json.loads(l) for l in open(args.input) if l.strip()]
    if args.n:
        rows = rows[:args.n]
    texts = [r["text"] for r in rows]
    # Ours reads a file: the first N texts, written as {"text"} rows.
    subset = os.path.join(args.work, "input.jsonl")
    with open(subset, "w") as f:
        for t in texts:
            f.write(json.dumps({"text": t}) + "\n")

    # The query ids without loading torch yet (ours runs first): the tokenizer alone.
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(args.model)
    prompts = json.load(open(os.path.join(args.model, "config_sentence_transformers.json")))["prompts"]
    query_ids = latency_query(tok, prompts)

    ours = run_ours(args, subset, query_ids) if "ours" in only else {}

    peers = Peers(args, texts)
    assert peers.query_ids == query_ids
    print(f"texts: {len(texts)} ({args.input}), tokens: {peers.tokens} with the {args.prompt!r} prompt; "
          f"query: {len(query_ids)} tokens <bos>{peers.query_text!r}<eos>")
    results = {}
    for name, fn in (("st", peers.st_f32), ("st-bf16", peers.st_bf16), ("ort", peers.ort),
                     ("ov-f32", lambda: peers.openvino("ov-f32", "f32")), ("ov", lambda: peers.openvino("ov", None))):
        if name in only or name == "st" and ours:   # st f32 is the reference for every cosine
            log(f"{name} …")
            try:
                results[name] = fn()
            except Exception as e:  # one engine failing should not lose the others' figures
                log(f"error: {name}: {type(e).__name__}: {e}")
                results[name] = {"error": f"{type(e).__name__}: {e}"}
    reference = results.get("st", {}).get("embeddings")

    # One row per engine.
    labels = {"st": ("sentence-transformers", "f32"), "st-bf16": ("PyTorch autocast", "bf16"),
              "ort": ("ONNX Runtime", "f32"), "ov-f32": ("OpenVINO", "f32"), "ov": ("OpenVINO default", None)}
    table = []
    for p, o in ours.items():
        b = o["bench"]
        table.append({"key": f"ours-{p}", "engine": "gemma-encoder", "precision": p,
                      "tokens_per_s": b["tokens_per_s"], "query_p50_ms": b["query_latency_ms_p50"],
                      "cosine_to_st_f32_min": min_cosine(o["embeddings"], reference) if reference is not None else None,
                      "cosine_to_own_f32_min": b.get("cosine_to_f32_min", 1.0 if p == "f32" else None),
                      "peak_rss_mib": b.get("peak_rss_mib"), "tokens": b.get("tokens"), "bench": b})
    for name, r in results.items():
        engine, precision = labels[name]
        row = {"key": name, "engine": engine, "precision": r.get("precision", precision)}
        if "error" in r:
            row["error"] = r["error"]
        else:
            row.update(tokens_per_s=r["tokens_per_s"], query_p50_ms=r["query_p50_ms"],
                       query_p90_ms=r["query_p90_ms"], seconds=r["seconds"], tokens=peers.tokens,
                       cosine_to_st_f32_min=min_cosine(r["embeddings"], reference) if reference is not None else None)
        table.append(row)
    for row in table:
        if row["engine"] == "gemma-encoder" and row["tokens"] != peers.tokens:
            print(f"note: ours counted {row['tokens']} tokens, sentence-transformers {peers.tokens}")
            break

    by = {r["key"]: r for r in table if "tokens_per_s" in r}
    # Ours' best: the fastest of our precisions whose embeddings stay within cosine 0.9999 of the
    # reference (the issue's bar for every figure); the peers' fastest counts whatever its cosine.
    def ok(r):
        c = r.get("cosine_to_st_f32_min")
        return c is None or c >= 0.9999
    ours_rows = [r for r in table if r["engine"] == "gemma-encoder"]
    best = max((r for r in ours_rows if ok(r)), key=lambda r: r["tokens_per_s"], default=None)
    for r in ours_rows:
        if not ok(r):
            print(f"note: ours {r['precision']} left out of 'ours best': cosine {r['cosine_to_st_f32_min']:.6f} < 0.9999")

    print()
    print(f"{'engine':22s} {'precision':9s} {'tokens/s':>9s} {'best/it':>8s} {'query p50 ms':>12s} {'cos to ST f32':>13s}")
    for r in table:
        if "error" in r:
            print(f"{r['engine']:22s} {r['precision'] or '':9s} error: {r['error'][:80]}")
            continue
        ratio = best["tokens_per_s"] / r["tokens_per_s"] if best else float("nan")
        cos = r["cosine_to_st_f32_min"]
        print(f"{r['engine']:22s} {r['precision']:9s} {r['tokens_per_s']:9.1f} {ratio:7.2f}x "
              f"{r['query_p50_ms']:12.2f} {cos if cos is not None else float('nan'):13.6f}")

    # The ratios issue 20 sets goals for (points 3 and 5).
    bf16_units = "amx_bf16" in features or "avx512_bf16" in features
    where = "this CPU has bf16 units" if bf16_units else "this CPU has no bf16 units (AVX2-only goals apply)"
    print(f"\ngoals (issue 20; {where}):")
    ratios = {}

    def line(key, label, value, goal, applies=True):
        ratios[key] = value
        if value is None:
            print(f"  {label}: n/a")
            return
        verdict = ("met" if goal(value) else "NOT met") if applies else "not this CPU's goal"
        print(f"  {label}: {value:.2f}  [{verdict}]")

    peer_rows = [r for r in table if r["engine"] != "gemma-encoder" and "tokens_per_s" in r]
    fastest = max(peer_rows, key=lambda r: r["tokens_per_s"], default=None)
    if best and fastest:
        line("ours_best_over_fastest_peer", f"ours best ({best['precision']}) / fastest peer ({fastest['key']}, "
             f"{fastest['precision']}), goal >= 1.3", best["tokens_per_s"] / fastest["tokens_per_s"],
             lambda v: v >= 1.3, bf16_units)
    if "ours-f32" in by and "ov-f32" in by:
        line("ours_f32_over_openvino_f32", "ours f32 / OpenVINO f32, goal >= 1.3",
             by["ours-f32"]["tokens_per_s"] / by["ov-f32"]["tokens_per_s"], lambda v: v >= 1.3, not bf16_units)
    if best and "st" in by:
        line("ours_best_over_st_f32", f"ours best ({best['precision']}) / sentence-transformers f32, goal >= 2",
             best["tokens_per_s"] / by["st"]["tokens_per_s"], lambda v: v >= 2, not bf16_units)
    ov_rows = [by[k] for k in ("ov-f32", "ov") if k in by]
    if ours_rows and ov_rows:
        oq = min(ours_rows, key=lambda r: r["query_p50_ms"])
        vq = min(ov_rows, key=lambda r: r["query_p50_ms"])
        line("ours_query_p50_over_openvino", f"query p50: ours fastest ({oq['precision']}, {oq['query_p50_ms']:.2f} ms) "
             f"/ OpenVINO fastest ({vq['precision']}, {vq['query_p50_ms']:.2f} ms), goal <= 0.8",
             oq["query_p50_ms"] / vq["query_p50_ms"], lambda v: v <= 0.8)
        if "ours-f32" in by and "ov-f32" in by:
            line("ours_f32_query_p50_over_openvino_f32", "query p50: ours f32 / OpenVINO f32",
                 by["ours-f32"]["query_p50_ms"] / by["ov-f32"]["query_p50_ms"], lambda v: v <= 0.8)
    if "ours-int8" in by and "ours-f32" in by:
        i8, f32 = by["ours-int8"], by["ours-f32"]
        tput = i8["tokens_per_s"] >= f32["tokens_per_s"]
        lat = i8["query_p50_ms"] <= f32["query_p50_ms"]
        ratios["int8_tokens_per_s_ge_f32"], ratios["int8_query_p50_le_f32"] = tput, lat
        print(f"  int8 >= f32: tokens/s {i8['tokens_per_s']:.1f} vs {f32['tokens_per_s']:.1f} "
              f"[{'yes' if tput else 'NO'}], query p50 {i8['query_p50_ms']:.2f} vs {f32['query_p50_ms']:.2f} ms "
              f"[{'yes' if lat else 'NO'}]")
    # The goal is ours' (every precision we offer); the peers' lowest is printed beside it for reference.
    def lowest(rows):
        rows = [r for r in rows if r.get("cosine_to_st_f32_min") is not None]
        return min(rows, key=lambda r: r["cosine_to_st_f32_min"]) if rows else None
    ours_worst = lowest([r for r in table if r["engine"] == "gemma-encoder"])
    peers_worst = lowest([r for r in table if r["engine"] != "gemma-encoder"])
    if ours_worst:
        c = ours_worst["cosine_to_st_f32_min"]
        ratios["min_cosine_to_st_f32"] = c
        peers_note = (f"; peers' lowest {peers_worst['cosine_to_st_f32_min']:.6f} ({peers_worst['key']})"
                      if peers_worst else "")
        print(f"  ours' lowest cosine to ST f32 ({ours_worst['key']}), goal >= 0.9999: {c:.6f}  "
              f"[{'met' if c >= 0.9999 else 'NOT met'}]{peers_note}")

    if args.json:
        report = {"cpu_features": features, "threads": args.threads, "input": args.input, "texts": len(texts),
                  "tokens": peers.tokens, "prompt": args.prompt, "batch_size": BATCH,
                  "query": {"tokens": len(query_ids), "ids": query_ids, "text": peers.query_text, "runs": QUERIES},
                  "versions": versions(), "engines": table, "ours_best": best and best["key"],
                  "fastest_peer": fastest and fastest["key"], "ratios": ratios}
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
