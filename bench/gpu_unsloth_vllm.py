"""GPU probe: unsloth `fast_inference=True` (one copy of the 8B weights shared by training and vLLM)
under an L4-sized memory cap. Prints a table; writes the numbers to OUT/gpu_unsloth_vllm.json.

What it does, in one process:
  1. builds the 8B Llama-3.1 shape with random weights on local disk (the tiny model's tokenizer,
     whose Llama-3.1 special tokens sit at their real ids), unless --model-dir already holds it;
  2. caps the process (torch.cuda.set_per_process_memory_fraction) and gives vLLM
     gpu_memory_utilization = --vllm-gib / card memory;
  3. loads through unsloth with fast_inference=True, max_loras=K, wraps a LoRA (rsLoRA, r from the config);
  4. trains --steps steps on the longest real ARC prompt (arc25's prompt builder and tokenizer) plus a
     --answer-tokens answer, with the project's loss (arc25.backends.unsloth.UnslothBackend.loss);
  5. hands K adapter versions to vLLM from memory and generates 8 x K completions of --max-tokens
     tokens (ignore_eos: random weights would otherwise stop anywhere), K different adapters in one call;
  6. trains once more after generation (alternation must not fragment into an OOM);
  7. --workload: the Kaggle round on real ARC-AGI-2 prompt lengths: K tasks (the prompts at the K
     quantiles of the --workload-challenges file that fit max_seq_len), each 8 dihedral prompts x n = 8
     (64 predictions) under its own trained adapter, new tokens from 512 (first task) to 1024 (last), all
     submitted at once to the running engine and stepped until done or --workload-window-s: decode
     tokens/s, sequences vLLM runs at once per step, preemptions, hand-over of the K adapters;
  8. --parity DIR: training loss on a fixed sample (a real prompt + a planted program) over
     --parity-steps steps from the same LoRA init, and next-token log-probabilities on the sample's answer
     positions through the training model under the base model and under one adapter. The bf16 run
     writes them with its trained adapter to DIR; the --fp8 run imports that adapter and reports the KL
     divergence KL(bf16 || fp8), top-1 agreement and both entropies at the same positions. Random
     weights give broad distributions (logit std ~1.3 over 128k entries); the trained adapter makes the
     answer positions peaked, the case a real model is in.

--fp8 loads the weights as FP8 (unsloth.load_in_fp8). Needs CUDA, vLLM and unsloth (see
docs/benchmarks.md for the offline wheel set).
Run: python bench/gpu_unsloth_vllm.py --cap-gib 22 --vllm-gib 18.5 --k 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "arc25_src"))
os.environ.setdefault("UNSLOTH_VLLM_MERGED_ROLLOUT", "0")  # K adapters per call: never fold one into the base
os.environ.setdefault("VLLM_USE_FLASHINFER_SAMPLER", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")

GIB = 1024**3
LLAMA_8B = dict(hidden=4096, layers=32, heads=32, kv_heads=8, intermediate=14336)


def make_8b(out_dir: Path, seed: int = 0) -> Path:
    """The 8B Llama-3.1 shape, random bf16 weights written shard by shard from the GPU (fast)."""
    import torch
    from safetensors.torch import save_file
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from arc25.tiny_model import EOS_IDS, VOCAB_SIZE, _save_tokenizer, build_tokenizer

    if (out_dir / "model.safetensors.index.json").exists():
        return out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    s = LLAMA_8B
    config = LlamaConfig(
        vocab_size=VOCAB_SIZE, hidden_size=s["hidden"], intermediate_size=s["intermediate"],
        num_hidden_layers=s["layers"], num_attention_heads=s["heads"], num_key_value_heads=s["kv_heads"],
        head_dim=s["hidden"] // s["heads"], max_position_embeddings=131072, rms_norm_eps=1e-5,
        tie_word_embeddings=False, rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 8192},
        bos_token_id=128000, eos_token_id=EOS_IDS, torch_dtype="bfloat16")
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in LlamaForCausalLM(config).state_dict().items()}
    gen = torch.Generator(device="cuda").manual_seed(seed)
    weight_map, shard, shard_bytes, n = {}, {}, 0, 0

    def flush() -> None:
        nonlocal shard, shard_bytes, n
        name = f"model-{n:05d}.safetensors"
        save_file(shard, str(out_dir / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in shard})
        shard, shard_bytes, n = {}, 0, n + 1

    for key, shape in shapes.items():
        if key.endswith("norm.weight"):
            t = torch.ones(shape, dtype=torch.bfloat16)
        else:
            t = (torch.randn(shape, generator=gen, device="cuda", dtype=torch.float32) * 0.02).to(torch.bfloat16).cpu()
        shard[key] = t
        shard_bytes += t.numel() * 2
        if shard_bytes > 4 * GIB:
            flush()
    if shard:
        flush()
    total = sum(v.numel() for v in shapes.values()) * 2
    (out_dir / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    config.save_pretrained(out_dir)
    GenerationConfig(bos_token_id=128000, eos_token_id=EOS_IDS).save_pretrained(out_dir)
    _save_tokenizer(build_tokenizer(seed), out_dir)
    return out_dir


def all_prompts(challenges: list[str], tokenizer, limit: int | None = None):
    """(tokens, task id, messages) of every test input's plain prompt, at most `limit` tokens long."""
    from arc25.prompts import PromptSpec, build_messages, tokenize_prompt
    from arc25.tasks import load_tasks

    found = []
    for path in challenges:
        for task_id, task in load_tasks(path).items():
            for i in range(len(task.test_inputs)):
                messages = build_messages(task, PromptSpec(test_index=i))
                n = len(tokenize_prompt(tokenizer, messages))
                if limit is None or n <= limit:
                    found.append((n, task_id, messages))
    return found


def longest_prompts(challenges: list[str], tokenizer, count: int, limit: int | None = None):
    """(tokens, task id, messages) of the `count` longest real ARC prompts (of at most `limit` tokens),
    longest first, one per task."""
    found = all_prompts(challenges, tokenizer, limit)
    found.sort(key=lambda item: -item[0])
    seen, out = set(), []
    for item in found:
        if item[1] not in seen:
            seen.add(item[1])
            out.append(item)
        if len(out) == count:
            break
    return out


def mem() -> dict[str, float]:
    import torch

    free, total = torch.cuda.mem_get_info()
    return {"allocated": torch.cuda.memory_allocated() / GIB, "reserved": torch.cuda.memory_reserved() / GIB,
            "peak_allocated": torch.cuda.max_memory_allocated() / GIB, "device_used": (total - free) / GIB}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", default=str(Path(tempfile.gettempdir()) / "llama8b"))
    ap.add_argument("--cap-gib", type=float, default=22.0)
    ap.add_argument("--vllm-gib", type=float, default=17.0, help="vLLM's share: weights + LoRA slots + KV + its activations")
    ap.add_argument("--k", type=int, default=2, help="tasks (adapters) in flight")
    ap.add_argument("--n", type=int, default=8, help="completions per task")
    ap.add_argument("--max-tokens", type=int, default=1024)
    ap.add_argument("--answer-tokens", type=int, default=500)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--fp8-kv", action="store_true")
    ap.add_argument("--max-num-seqs", type=int, default=64)
    ap.add_argument("--max-num-batched-tokens", type=int, default=8192)
    ap.add_argument("--enforce-eager", action="store_true")
    shared = Path(__file__).resolve().parents[1].parent / "shared" / "data"  # ../shared beside the checkout
    ap.add_argument("--challenges", nargs="+", default=[str(shared / "arc-prize-2024" / "arc-agi_evaluation_challenges.json")])
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args()
    results: dict = {"args": vars(args)}
    out = Path(args.out) / "gpu_unsloth_vllm.json"

    def save() -> None:
        out.write_text(json.dumps(results, indent=2, default=str))

    import torch

    t0 = time.time()
    make_8b(Path(args.model_dir))
    results["build_s"] = time.time() - t0
    total = torch.cuda.get_device_properties(0).total_memory / GIB
    torch.cuda.set_per_process_memory_fraction(min(1.0, args.cap_gib / total))
    gmu = args.vllm_gib / total
    results.update(card=torch.cuda.get_device_name(0), card_gib=total, gpu_memory_utilization=gmu)

    from arc25.backends.base import GenerationRequest, SamplingParams, TrainSample
    from arc25.backends.unsloth import UnslothBackend
    from arc25.config import Config

    config = Config()
    config.model.path, config.model.backend = args.model_dir, "unsloth"
    config.unsloth.memory_cap_gib, config.unsloth.vllm_gib = args.cap_gib, args.vllm_gib
    config.unsloth.fp8_kv_cache, config.unsloth.max_num_seqs = args.fp8_kv, args.max_num_seqs
    config.unsloth.max_num_batched_tokens = args.max_num_batched_tokens
    config.run.tasks_per_worker, config.lora.rank, config.lora.alpha = args.k, args.rank, 2 * args.rank
    t0 = time.time()
    import unsloth  # noqa: F401  (before transformers/peft: it patches them)
    import vllm

    results["import_s"] = time.time() - t0
    results["versions"] = {"torch": torch.__version__, "vllm": vllm.__version__, "unsloth": unsloth.__version__,
                           "cuda": torch.version.cuda}
    t0 = time.time()
    backend = UnslothBackend(config)
    results["load_s"] = time.time() - t0
    results["mem_after_load"] = mem()
    cache = backend.engine.llm.llm_engine.vllm_config.cache_config
    kv_bytes_per_token = 2 * LLAMA_8B["layers"] * LLAMA_8B["kv_heads"] * 128 * (1 if args.fp8_kv else 2)
    results["kv_tokens"] = (cache.num_gpu_blocks or 0) * cache.block_size
    results["kv_gib"] = results["kv_tokens"] * kv_bytes_per_token / GIB
    results["lora_slot"] = {"tensors": len(backend.slot), "params": sum(p.numel() for p in backend.slot),
                            "dtype": str(backend.slot[0].dtype)}
    save()

    prompts = longest_prompts(args.challenges, backend.tokenizer, max(2, args.k))
    results["prompts"] = [(n, task_id) for n, task_id, _ in prompts]
    unit = "def transform(input_grid):\n    output_grid = np.copy(input_grid)\n"
    answer = unit
    while len(backend.tokenizer(answer, add_special_tokens=False)["input_ids"]) < args.answer_tokens:
        answer += unit
    names = [f"task{i}" for i in range(args.k)]
    for name in names:
        backend.create_adapter(name)
    samples = [TrainSample(m, answer) for _, _, m in prompts]
    results["train_tokens"] = len(backend.encode(samples[0])[0])

    def train(name: str, sample: TrainSample) -> dict:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / GIB
        t = time.time()
        stats = backend.train(name, [sample])
        torch.cuda.synchronize()
        return {"task": name, "s": time.time() - t, "loss": stats.mean_loss, "tokens": stats.tokens,
                "peak_over_base_gib": torch.cuda.max_memory_allocated() / GIB - base, **mem()}

    steps = []
    for step in range(args.steps):
        steps.append(train(names[0], samples[0]))
        results["train_steps"] = steps
        save()
    for i, name in enumerate(names[1:], start=1):  # every task trains once: the slot swaps
        steps.append(train(name, samples[i % len(samples)]))
    steps.append(train(names[0], samples[0]))  # back to task 0: its weights and moments come back in
    results["train_steps"] = steps
    results["timings_after_train"] = backend.timings.as_dict()
    save()

    params = SamplingParams(n=args.n, temperature=1.0, top_p=0.95, max_tokens=args.max_tokens, seed=0)
    requests = [GenerationRequest([prompts[i % len(prompts)][2]], params, adapter=name) for i, name in enumerate(names)]
    for label in ("generate_first", "generate"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / GIB
        before = dict(backend.timings.as_dict())
        t0 = time.time()
        completions = backend.generate(requests)
        seconds = time.time() - t0
        flat = [c for per_request in completions for per_prompt in per_request for c in per_prompt]
        new = sum(c.completion_tokens for c in flat)
        results[label] = {"s": seconds, "completions": len(flat), "new_tokens": new, "tok_per_s": new / seconds,
                          "finish": sorted({c.finish_reason for c in flat}),
                          "handover_s": backend.timings.as_dict().get("handover", 0) - before.get("handover", 0),
                          "peak_over_base_gib": torch.cuda.max_memory_allocated() / GIB - base, **mem()}
        save()
        steps.append(train(names[0], samples[0]))  # a new version: the next call hands it over

    t0 = time.time()
    backend.reset_adapter(names[0])
    results["reset_s"] = time.time() - t0
    results["train_after_generate"] = train(names[0], samples[0])
    results["timings"] = backend.timings.as_dict()
    results["swaps"] = backend.swaps
    results["ok"] = True
    save()
    print_table(results)
    return 0


def print_table(r: dict) -> None:
    rows = [("card", r["card"]), ("cap / vLLM share (GiB)", f"{r['args']['cap_gib']} / {r['args']['vllm_gib']}"),
            ("versions", r["versions"]), ("import / load (s)", f"{r['import_s']:.0f} / {r['load_s']:.0f}"),
            ("after load: allocated / device used (GiB)", f"{r['mem_after_load']['allocated']:.2f} / {r['mem_after_load']['device_used']:.2f}"),
            ("KV cache (tokens, GiB)", f"{r['kv_tokens']} / {r['kv_gib']:.2f}"),
            ("LoRA slot", r["lora_slot"]),
            ("train tokens", r["train_tokens"])]
    for i, s in enumerate(r["train_steps"]):
        rows.append((f"train {s['task']} ({s['tokens']} tok): s / peak over base / peak alloc / device used (GiB)",
                     f"{s['s']:.2f} / {s['peak_over_base_gib']:.2f} / {s['peak_allocated']:.2f} / {s['device_used']:.2f}"))
    for label in ("generate_first", "generate"):
        g = r[label]
        rows.append((f"{label}: completions x tokens, s, tok/s, hand-over s, peak alloc, device used (GiB)",
                     f"{g['completions']} x {g['new_tokens'] // max(1, g['completions'])}, {g['s']:.1f}, "
                     f"{g['tok_per_s']:.0f}, {g['handover_s']:.3f}, {g['peak_allocated']:.2f}, {g['device_used']:.2f}"))
    rows.append(("reset (s)", f"{r['reset_s']:.4f}"))
    rows.append(("timings (s)", {k: round(v, 3) for k, v in r["timings"].items()}))
    rows.append(("swaps through the slot: count, s each", f"{r['swaps']}, {r['timings'].get('swap', 0) / max(1, r['swaps']):.3f}"))
    t = r["train_after_generate"]
    rows.append(("train after generate: s / peak alloc / device used", f"{t['s']:.2f} / {t['peak_allocated']:.2f} / {t['device_used']:.2f}"))
    width = max(len(k) for k, _ in rows)
    print("\n| what | value |\n|---|---|")
    for k, v in rows:
        print(f"| {k.ljust(width)} | {v} |")


if __name__ == "__main__":
    sys.exit(main())
