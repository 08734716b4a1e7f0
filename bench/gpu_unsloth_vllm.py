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

--fp8 loads the weights as FP8 (unsloth.weights=fp8; without it bf16, or an FP8 checkpoint as is). Needs CUDA, vLLM and unsloth (see
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

    from arc25.devmodels.tiny_model import EOS_IDS, VOCAB_SIZE, _save_tokenizer, build_tokenizer

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
    ap.add_argument("--fp8", action="store_true", help="FP8 weights (unsloth.weights=fp8)")
    ap.add_argument("--generate-calls", type=int, default=2, help="K x n completions over the longest prompts (0: skip)")
    ap.add_argument("--workload", action="store_true", help="K tasks x --predictions on real ARC-AGI-2 prompt lengths")
    ap.add_argument("--workload-challenges", nargs="+", help="default: --challenges")
    ap.add_argument("--predictions", type=int, default=64, help="per task: 8 dihedral prompts x predictions / 8")
    ap.add_argument("--workload-tokens", type=int, nargs=2, default=[512, 1024], help="new tokens, first and last task")
    ap.add_argument("--workload-window-s", type=float, default=150.0, help="rows still running then are cut")
    ap.add_argument("--parity", help="folder for the bf16 reference (written by the bf16 run, read by --fp8)")
    ap.add_argument("--parity-steps", type=int, default=10)
    ap.add_argument("--parity-lr", type=float, default=5e-4)
    ap.add_argument("--parity-positions", type=int, default=256)
    ap.add_argument("--parity-wait-s", type=float, default=0.0, help="--fp8: wait this long for the bf16 reference")
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
    from arc25.config import Weights
    from arc25.fp8_checkpoint import is_fp8_checkpoint

    config.unsloth.weights = (Weights.FP8 if args.fp8 else Weights.AUTO if is_fp8_checkpoint(args.model_dir)
                              else Weights.BF16)
    results["weights"] = "fp8" if args.fp8 else "bf16"
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
    results["vllm_weights_gib"] = vllm_weights_gib(backend)
    cache = backend.engine.llm.llm_engine.vllm_config.cache_config
    kv_bytes_per_token = 2 * LLAMA_8B["layers"] * LLAMA_8B["kv_heads"] * 128 * (1 if args.fp8_kv else 2)
    results["kv_tokens"] = (cache.num_gpu_blocks or 0) * cache.block_size
    results["kv_gib"] = results["kv_tokens"] * kv_bytes_per_token / GIB
    results["lora_slot"] = {"tensors": len(backend.slot), "params": sum(p.numel() for p in backend.slot),
                            "dtype": str(backend.slot[0].dtype)}
    save()

    fits = config.training.max_seq_len - args.answer_tokens - 1  # the training sample must fit
    prompts = longest_prompts(args.challenges, backend.tokenizer, max(2, args.k), limit=fits)
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
    for label in ("generate_first", "generate")[:args.generate_calls]:
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

    if args.workload:
        results["workload"] = workload(backend, config, args, names)
        save()
    t0 = time.time()
    backend.reset_adapter(names[0])
    results["reset_s"] = time.time() - t0
    results["train_after_generate"] = train(names[0], samples[0])
    results["timings"] = backend.timings.as_dict()
    results["swaps"] = backend.swaps
    save()
    if args.parity:
        results["parity"] = parity(backend, args, prompts[-1][2])
        save()
    results["ok"] = True
    save()
    print_table(results)
    return 0


def vllm_weights_gib(backend) -> float | None:
    """What vLLM's model runner reports for the loaded weights (+ LoRA slots), if this vLLM exposes it."""
    try:
        core = backend.engine.llm.llm_engine.engine_core.engine_core
        return core.model_executor.driver_worker.worker.model_runner.model_memory_usage / GIB
    except Exception:
        return None


def workload_tasks(challenges: list[str], tokenizer, k: int, limit: int) -> list[tuple[int, str]]:
    """(prompt tokens, task id) of K tasks at the K quantiles (i + 0.5) / K of the file's first-test-input
    prompt lengths, among the prompts that fit `limit`."""
    seen, lengths = set(), []
    for n, task_id, _ in all_prompts(challenges, tokenizer, limit):
        if task_id not in seen:  # the first test input's prompt
            seen.add(task_id)
            lengths.append((n, task_id))
    lengths.sort()
    return [lengths[min(len(lengths) - 1, int((i + 0.5) / k * len(lengths)))] for i in range(k)]


def workload(backend, config, args, names: list[str]) -> dict:
    """K tasks x 64 predictions (8 dihedral prompts x n = 8) in the running engine at once, each under its own
    adapter: decode tokens/s, sequences running per engine step (vLLM's scheduler), preemptions."""
    import torch

    from arc25.augment import all_dihedral
    from arc25.backends.base import GenerationRequest, SamplingParams
    from arc25.prompts import PromptSpec, build_messages
    from arc25.tasks import load_tasks
    from gpu_overlap import Probe

    challenges = args.workload_challenges or args.challenges
    low, high = args.workload_tokens
    chosen = workload_tasks(challenges, backend.tokenizer, args.k, config.training.max_seq_len - high)
    tasks = {t: task for path in challenges for t, task in load_tasks(path).items()}
    augmentations = all_dihedral()
    n = max(1, args.predictions // len(augmentations))
    probe = Probe(backend.engine.llm)
    torch.cuda.reset_peak_memory_stats()
    before = backend.timings.as_dict().get("handover", 0.0)
    t0 = time.time()
    deadline = t0 + args.workload_window_s
    max_tokens = [round(low + (high - low) * i / max(1, args.k - 1)) for i in range(args.k)]
    for i, (_, task_id) in enumerate(chosen):
        prompts = [build_messages(tasks[task_id], PromptSpec(test_index=0, augmentation=a)) for a in augmentations]
        params = SamplingParams(n=n, temperature=1.0, top_p=0.95, max_tokens=max_tokens[i], seed=i)
        backend.submit(i, GenerationRequest(prompts, params, adapter=names[i % len(names)], deadline=deadline))
    handover = backend.timings.as_dict().get("handover", 0.0) - before
    done, most = {}, 0
    while len(done) < len(chosen):
        probe.sample()
        if probe.scheduler is not None:
            most = max(most, len(probe.scheduler.running))
        done.update(backend.step())
    seconds = time.time() - t0
    flat = [c for key in done for per_prompt in done[key] for c in per_prompt]
    new_tokens = sum(c.completion_tokens for c in flat)
    preemptions, steps, running = probe.snapshot()
    return {"tasks": [{"task": t, "prompt_tokens": tokens, "max_tokens": m} for (tokens, t), m in zip(chosen, max_tokens)],
            "completions": len(flat), "finished": sum(c.finish_reason in ("stop", "length") for c in flat),
            "cut_at_window": sum(c.finish_reason == "deadline" for c in flat), "new_tokens": new_tokens,
            "s": seconds, "tok_per_s": new_tokens / seconds, "handover_s": handover,
            "running_mean": running / max(1, steps), "running_max": most, "preemptions": preemptions,
            "engine_steps": steps, **mem()}


def answer_logprobs(backend, sample, adapter: str, positions: int):
    """log p(next token) at the sample's first `positions` answer positions, through the training model
    (the trainer's view of the shared weights) with `adapter` in the slot; and the labelled targets."""
    import torch
    import torch.nn.functional as F

    from arc25.backends.trainer import collate

    backend._activate(adapter)
    batch = collate([backend.encode(sample)], backend.pad_id, backend.device)
    with torch.no_grad():
        hidden = backend.base.get_decoder()(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                            use_cache=False).last_hidden_state
        selected = hidden[:, :-1][batch.target_mask][:positions]
        logits = F.linear(selected, backend.base.get_output_embeddings().weight).float()
        return torch.log_softmax(logits, dim=-1), batch.targets[:positions]


def parity(backend, args, messages) -> dict:
    """Training loss on a fixed sample from the same LoRA init, and next-token distributions against the bf16
    run's (same inputs, same adapter: the bf16-trained one, imported here), see the module docstring."""
    import torch

    from arc25.backends.base import TrainSample
    from bench_epochs import PLANTED

    folder = Path(args.parity)
    folder.mkdir(parents=True, exist_ok=True)
    sample = TrainSample(messages, "\n".join(PLANTED))  # a real prompt, ~250 answer tokens of 8 programs
    backend.training_config.learning_rate = args.parity_lr  # the parity adapter's optimizer is created below
    backend.create_adapter("parity")
    losses = [backend.train("parity", [sample]).mean_loss for _ in range(args.parity_steps)]
    backend.create_adapter("parity_base")  # B = 0: the base model
    base, targets = answer_logprobs(backend, sample, "parity_base", args.parity_positions)
    out = {"sample_tokens": len(backend.encode(sample)[0]), "positions": int(base.shape[0]), "losses": losses}
    if not args.fp8:
        trained, _ = answer_logprobs(backend, sample, "parity", args.parity_positions)
        torch.save({"adapter": backend.export_adapter("parity"), "base": base.cpu(), "trained": trained.cpu(),
                    "targets": targets.cpu(), "losses": losses}, folder / "bf16.pt.tmp")
        os.replace(folder / "bf16.pt.tmp", folder / "bf16.pt")  # whole, for a process waiting for it
        out["reference"] = str(folder / "bf16.pt")
        return out
    waited = time.time()
    while not (folder / "bf16.pt").is_file() and time.time() - waited < args.parity_wait_s:
        time.sleep(2)  # the bf16 process on another GPU writes it at its end
    if not (folder / "bf16.pt").is_file():
        out["kl"] = "no bf16 reference: run the bf16 process first with the same --parity folder"
        return out
    ref = torch.load(folder / "bf16.pt")
    backend.create_adapter("parity_ref")
    backend.import_adapter("parity_ref", ref["adapter"])
    trained, _ = answer_logprobs(backend, sample, "parity_ref", args.parity_positions)
    out["bf16_losses"] = ref["losses"]
    t = ref["targets"].to(trained.device)
    for name, key, mine in (("base", "base", base), ("trained_adapter", "trained", trained)):
        p = ref[key].to(mine.device)
        kl = (p.exp() * (p - mine)).sum(-1)
        out[name] = {"kl_mean": kl.mean().item(), "kl_max": kl.max().item(),
                     "top1_agree": (p.argmax(-1) == mine.argmax(-1)).float().mean().item(),
                     "entropy_bf16": -(p.exp() * p).sum(-1).mean().item(),
                     "entropy_fp8": -(mine.exp() * mine).sum(-1).mean().item(),
                     "answer_loss_bf16": -p.gather(1, t[:, None]).mean().item(),
                     "answer_loss_fp8": -mine.gather(1, t[:, None]).mean().item()}
    return out


def print_table(r: dict) -> None:
    rows = [("card", r["card"]), ("weights", r.get("weights", "bf16")),
            ("cap / vLLM share (GiB)", f"{r['args']['cap_gib']} / {r['args']['vllm_gib']}"),
            ("versions", r["versions"]), ("import / load (s)", f"{r['import_s']:.0f} / {r['load_s']:.0f}"),
            ("after load: allocated / device used (GiB)", f"{r['mem_after_load']['allocated']:.2f} / {r['mem_after_load']['device_used']:.2f}"),
            ("KV cache (tokens, GiB)", f"{r['kv_tokens']} / {r['kv_gib']:.2f}"),
            ("vLLM weights + LoRA slots (GiB, its model runner)", f"{r['vllm_weights_gib'] or 0:.2f}"),
            ("LoRA slot", r["lora_slot"]),
            ("train tokens", r["train_tokens"])]
    for i, s in enumerate(r["train_steps"]):
        rows.append((f"train {s['task']} ({s['tokens']} tok): s / peak over base / peak alloc / device used (GiB)",
                     f"{s['s']:.2f} / {s['peak_over_base_gib']:.2f} / {s['peak_allocated']:.2f} / {s['device_used']:.2f}"))
    for label in [x for x in ("generate_first", "generate") if x in r]:
        g = r[label]
        rows.append((f"{label}: completions x tokens, s, tok/s, hand-over s, peak alloc, device used (GiB)",
                     f"{g['completions']} x {g['new_tokens'] // max(1, g['completions'])}, {g['s']:.1f}, "
                     f"{g['tok_per_s']:.0f}, {g['handover_s']:.3f}, {g['peak_allocated']:.2f}, {g['device_used']:.2f}"))
    if "workload" in r:
        w = r["workload"]
        rows += [("workload: tasks (prompt tokens, new tokens)",
                  ", ".join(f"{t['task']} ({t['prompt_tokens']}, {t['max_tokens']})" for t in w["tasks"])),
                 ("workload: completions finished / cut at the window, new tokens, s, tok/s",
                  f"{w['finished']} / {w['cut_at_window']}, {w['new_tokens']}, {w['s']:.1f}, {w['tok_per_s']:.0f}"),
                 ("workload: running sequences per step mean / max, preemptions",
                  f"{w['running_mean']:.1f} / {w['running_max']}, {w['preemptions']}"),
                 ("workload: hand-over of the K adapters (s), peak alloc / device used (GiB)",
                  f"{w['handover_s']:.3f}, {w['peak_allocated']:.2f} / {w['device_used']:.2f}")]
    rows.append(("reset (s)", f"{r['reset_s']:.4f}"))
    rows.append(("timings (s)", {k: round(v, 3) for k, v in r["timings"].items()}))
    rows.append(("swaps through the slot: count, s each", f"{r['swaps']}, {r['timings'].get('swap', 0) / max(1, r['swaps']):.3f}"))
    t = r["train_after_generate"]
    rows.append(("train after generate: s / peak alloc / device used", f"{t['s']:.2f} / {t['peak_allocated']:.2f} / {t['device_used']:.2f}"))
    if "parity" in r:
        p = r["parity"]
        rows.append(("parity: sample tokens / positions compared", f"{p['sample_tokens']} / {p['positions']}"))
        rows.append(("parity: training loss, steps 1..N (this run)", " ".join(f"{x:.3f}" for x in p["losses"])))
        if "bf16_losses" in p:
            rows.append(("parity: training loss, steps 1..N (bf16 run)", " ".join(f"{x:.3f}" for x in p["bf16_losses"])))
        for name in ("base", "trained_adapter"):
            if isinstance(p.get(name), dict):
                q = p[name]
                rows.append((f"parity, {name}: KL(bf16||fp8) mean / max, top-1 agree, entropy bf16 / fp8, "
                             "answer loss bf16 / fp8",
                             f"{q['kl_mean']:.4f} / {q['kl_max']:.4f}, {q['top1_agree']:.3f}, {q['entropy_bf16']:.2f} / "
                             f"{q['entropy_fp8']:.2f}, {q['answer_loss_bf16']:.3f} / {q['answer_loss_fp8']:.3f}"))
        if isinstance(p.get("kl"), str):
            rows.append(("parity: KL", p["kl"]))
    width = max(len(k) for k, _ in rows)
    print("\n| what | value |\n|---|---|")
    for k, v in rows:
        print(f"| {k.ljust(width)} | {v} |")


if __name__ == "__main__":
    sys.exit(main())
