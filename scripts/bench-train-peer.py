#!/usr/bin/env python3
"""The PyTorch side of `gemma-encoder bench-train`: the same fine-tuning step in transformers, timed.

Usage: bench-train-peer.py --model HF_DIR --input texts.jsonl --finetune all|top:K|lora:R[:ALPHA]
                           [--batch-size N] [--max-length L] [--steps S] [--threads T]
                           [--mode bidirectional|causal] [--prompt STR] [--attn eager|sdpa]
                           [--train-embeddings]

The step: a transformers text model in float32 (AutoModel, dropout 0) -> mean over the real tokens -> a
linear head (hidden -> 8 classes, random labels from a fixed seed) -> cross-entropy -> backward -> AdamW
(lr 2e-5, weight decay 0.01). The token embeddings are frozen in every mode, unless --train-embeddings
with --finetune all (for EmbeddingGemma they are 2/3 of the weights; the step under test is the
transformer's).
  all       every transformer weight (and the head) trains;
  top:K     the last K layers, the final norm and the head train;
  lora:R    PEFT LoRA (r=R, alpha=ALPHA or 2R, dropout 0) on q/k/v/o/gate/up/down of the base model, plus
            the head.
Batches: the texts in file order, N at a time, each batch tokenized with the directory's tokenizer
(special tokens added, truncated to L, right-padded to the longest in the batch). One warm-up step on the
first batch, then min(S, one pass over the texts) timed steps from the first batch on. tokens = real
(non-pad) tokens of the timed steps. Prints one JSON object.
"""
import argparse
import json
import os
import resource
import sys
import time

CLASSES = 8
SEED = 0


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="Hugging Face model directory (config.json, weights, tokenizer)")
    p.add_argument("--input", required=True, help='JSON Lines with a "text" field')
    p.add_argument("--finetune", default="all", help="all | top:K | lora:R[:ALPHA]")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--mode", choices=["bidirectional", "causal"], default="bidirectional")
    p.add_argument("--prompt", default=None,
                   help="prefix for every text: a prompt name from config_sentence_transformers.json "
                        "(e.g. document) or the literal prefix")
    # eager is the default: it was the faster for training here. AMD EPYC with AVX-512 (avx512f/bf16/vnni), torch
    # 2.13 CPU, transformers 5.23, 2 threads, batch 8 of bench-512 (187 and 204 tokens padded), full fine-tuning,
    # one process switching attn_implementation between steps so the shared machine's load hits both alike:
    # eager took 0.79-0.80x sdpa's time for EmbeddingGemma (two runs) and 0.84x for Gemma 3 270M. sdpa's peak
    # RSS was ~8% lower (5.2 vs 5.6-5.7 GiB, EmbeddingGemma): eager keeps the attention probabilities for
    # backward. Separate runs under load (18.1-18.5 vs 16.8-21.6 tokens/s) could not tell them apart.
    p.add_argument("--attn", choices=["eager", "sdpa"], default="eager", help="transformers attn_implementation")
    p.add_argument("--adamw", choices=["default", "foreach", "fused"], default="default",
                   help="torch.optim.AdamW implementation (default: torch's choice, the per-tensor loop on CPU)")
    p.add_argument("--train-embeddings", action="store_true", help="also train the token embeddings")
    p.add_argument("--precision", choices=["f32", "bf16"], default="f32",
                   help="bf16: the forward under torch.autocast(cpu, bfloat16), f32 master weights and AdamW (what "
                        "a PyTorch user turns on for bf16 training on a CPU with bf16 units)")
    args = p.parse_args()
    if args.batch_size < 1 or args.max_length < 2 or args.steps < 1 or args.threads < 1:
        p.error("--batch-size, --steps and --threads must be positive, --max-length at least 2")
    return args


def parse_finetune(spec):
    """("all", None) | ("top", K) | ("lora", (R, alpha))"""
    parts = spec.split(":")
    try:
        if parts == ["all"]:
            return "all", None
        if parts[0] == "top" and len(parts) == 2 and int(parts[1]) > 0:
            return "top", int(parts[1])
        if parts[0] == "lora" and len(parts) in (2, 3) and int(parts[1]) > 0:
            r = int(parts[1])
            return "lora", (r, float(parts[2]) if len(parts) == 3 else 2.0 * r)
    except ValueError:
        pass
    sys.exit(f"error: --finetune {spec!r}: expected all, top:K or lora:R[:ALPHA]")


def read_texts(path, prompt):
    texts = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not isinstance(row.get("text"), str):
                sys.exit(f"error: {path}:{number}: no \"text\" field")
            texts.append(row["text"])
    if not texts:
        sys.exit(f"error: {path}: no texts")
    return [prompt + t for t in texts] if prompt else texts


def resolve_prompt(model_dir, prompt):
    if prompt is None:
        return ""
    try:
        with open(os.path.join(model_dir, "config_sentence_transformers.json"), encoding="utf-8") as f:
            return json.load(f).get("prompts", {}).get(prompt, prompt)
    except FileNotFoundError:
        return prompt


def load_config(model_dir, mode):
    from transformers import AutoConfig
    config = AutoConfig.from_pretrained(model_dir)
    if mode == "bidirectional" and hasattr(config, "use_bidirectional_attention") \
            and not config.use_bidirectional_attention:
        # Rebuilt from its dict, so that Gemma3TextConfig.__post_init__ sees the flag and turns sliding_window w
        # into w // 2 + 1 (exclusive), i.e. |i - j| <= w // 2, the window our encoder uses for Gemma 3
        # (GemmaConfig.attentionSpan). Neither setting the attribute on a loaded config nor
        # AutoConfig.from_pretrained(..., use_bidirectional_attention=True) does (transformers 5.23 applies such
        # kwargs after __post_init__): both keep w.
        d = config.to_dict()
        d["use_bidirectional_attention"] = True
        config = type(config).from_dict(d)
    elif mode == "causal" and getattr(config, "use_bidirectional_attention", False):
        # A bidirectional checkpoint (EmbeddingGemma) run causally keeps its converted window, as in ours.
        config.use_bidirectional_attention = False
    for name in list(config.to_dict()):
        if name.endswith("dropout") and isinstance(getattr(config, name, None), (int, float)):
            setattr(config, name, 0.0)
    return config


def main():
    args = parse_args()
    kind, value = parse_finetune(args.finetune)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import warnings
    warnings.filterwarnings("ignore", category=FutureWarning)  # peft asks transformers a deprecated question
    import torch
    import transformers
    from transformers import AutoModel, AutoTokenizer
    transformers.utils.logging.disable_progress_bar()

    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)

    texts = read_texts(args.input, resolve_prompt(args.model, args.prompt))
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    tokenizer.padding_side = "right"
    if tokenizer.pad_token_id is None:
        sys.exit(f"error: {args.model}: the tokenizer has no pad token")

    config = load_config(args.model, args.mode)
    model = AutoModel.from_pretrained(args.model, config=config, dtype=torch.float32,
                                      attn_implementation=args.attn)
    layers = model.layers if hasattr(model, "layers") else model.model.layers
    norm = model.norm if hasattr(model, "norm") else model.model.norm

    # What trains.
    if kind == "top":
        if value > len(layers):
            sys.exit(f"error: --finetune top:{value}: the model has {len(layers)} layers")
        for p in model.parameters():
            p.requires_grad_(False)
        for module in list(layers[-value:]) + [norm]:
            for p in module.parameters():
                p.requires_grad_(True)
    model.get_input_embeddings().weight.requires_grad_(args.train_embeddings and kind == "all")
    if kind == "lora":
        from peft import LoraConfig, get_peft_model
        r, alpha = value
        lora = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, bias="none",
                          target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
        model = get_peft_model(model, lora)
    model.train()

    hidden = config.hidden_size
    head = torch.nn.Linear(hidden, CLASSES)
    generator = torch.Generator().manual_seed(SEED)
    labels = torch.randint(0, CLASSES, (len(texts),), generator=generator)
    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    impl = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}[args.adamw]
    optimizer = torch.optim.AdamW(params, lr=2e-5, weight_decay=0.01, **impl)

    batches = []
    for start in range(0, len(texts), args.batch_size):
        enc = tokenizer(texts[start:start + args.batch_size], add_special_tokens=True, truncation=True,
                        max_length=args.max_length, padding="longest", return_tensors="pt")
        batches.append((enc["input_ids"], enc["attention_mask"], labels[start:start + args.batch_size]))
    steps = min(args.steps, len(batches))

    def step(ids, mask, y):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            states = model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        m = mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * m).sum(1) / m.sum(1)
        loss = torch.nn.functional.cross_entropy(head(pooled), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    step(*batches[0])  # warm-up: allocations, optimizer state, oneDNN primitives
    tokens = 0
    start = time.perf_counter()
    for ids, mask, y in batches[:steps]:
        loss = step(ids, mask, y)
        tokens += int(mask.sum())
    seconds = time.perf_counter() - start

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({
        "engine": "pytorch", "torch": torch.__version__, "transformers": transformers.__version__,
        "finetune": args.finetune, "tokens_per_s": round(tokens / seconds, 1), "steps": steps, "tokens": tokens,
        "peak_rss_mib": round(peak, 1), "threads": torch.get_num_threads(), "attn_implementation": args.attn,
        "adamw": args.adamw, "precision": args.precision,
        "batch_size": args.batch_size, "max_length": args.max_length, "mode": args.mode,
        "sliding_window": getattr(config, "sliding_window", None),
        "trainable_params": sum(p.numel() for p in params), "train_embeddings": bool(args.train_embeddings and kind == "all"),
        "last_loss": round(loss, 4),
    }))


if __name__ == "__main__":
    main()
