"""HF backend: fixed overhead per learning epoch, and generation / training throughput.

An "epoch" is what the search-and-learn loop does between two sampling rounds:
reset the task's adapter, prepare the new relabeled samples, train on them. Its
fixed overhead is everything but the optimizer steps themselves:
reset (copy initial LoRA weights back) + prep (tokenize, collate) + setup (select the
adapter, new optimizer, train/eval switch). Target: < 0.5 s per epoch (the reference
implementation paid ~22 s: PEFT reset 5 s, data prep 2 s, HF Trainer start 15 s).

Every sample gets a fresh random colour permutation, so its prompt is never in the
backend's prompt cache: the prep figure is the cold-cache worst case.

    PYTHONPATH=arc25_src python bench/bench_backend.py                  # tiny model, CPU
    PYTHONPATH=arc25_src python bench/bench_backend.py --make hidden=4096,layers=4,heads=32,kv_heads=8,intermediate=14336
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "arc-prize-2025" / "arc-agi_training_challenges.json"

CODE = """from common import *

import numpy as np
from typing import *

# concepts:
# color mapping, objects, epoch {epoch} sample {sample}

# description:
# In the input you will see {color} objects. Recolor every object larger than {size} pixels.

def transform(input_grid):
    output_grid = np.copy(input_grid)
    for obj in find_connected_components(input_grid, background=Color.BLACK, connectivity=4):
        if np.sum(obj != Color.BLACK) > {size}:
            output_grid[obj != Color.BLACK] = Color.{color}
    return output_grid"""


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model folder (default: the tiny model, built in --cache-dir)")
    p.add_argument("--make", help="build a random model of this shape instead, e.g. hidden=512,layers=4")
    p.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "arc25-bench"))
    p.add_argument("--data", default=str(DATA), help="ARC challenges JSON for real prompts")
    p.add_argument("--task", help="task id (default: the task of median size)")
    p.add_argument("--prompt-tokens", type=int, help="instead of --task: the task with the longest prompt up to this")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--samples", type=int, default=8, help="training samples per epoch")
    p.add_argument("--gen-prompts", type=int, default=1)
    p.add_argument("--gen-n", type=int, default=8)
    p.add_argument("--gen-tokens", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    p.add_argument("--device", default="auto")
    p.add_argument("--gradient-checkpointing", action="store_true")
    return p.parse_args()


def model_path(args: argparse.Namespace) -> Path:
    from arc25.devmodels.tiny_model import make_tiny_model, tiny_model_path

    if args.model:
        return Path(args.model)
    if args.make:
        shape = {k: int(v) for k, v in (kv.split("=") for kv in args.make.split(","))}
        out = Path(args.cache_dir) / ("model-" + args.make.replace(",", "-").replace("=", ""))
        return out if (out / "config.json").exists() else make_tiny_model(out, **shape)
    return tiny_model_path(args.cache_dir)


def epoch_samples(task, epoch: int, k: int, rng: random.Random) -> list:
    from arc25.augment import Augmentation
    from arc25.backends.base import TrainSample
    from arc25.prompts import PromptSpec, build_messages, format_answer

    samples = []
    for i in range(k):
        colors = (0, *rng.sample(range(1, 10), 9))  # new colours: an uncached prompt
        spec = PromptSpec(0, Augmentation(rng.random() < 0.5, rng.randrange(4), colors), shuffle_seed=rng.randrange(10**6))
        code = CODE.format(epoch=epoch, sample=i, color=rng.choice(["RED", "BLUE", "GREEN"]), size=rng.randint(1, 9))
        samples.append(TrainSample(build_messages(task, spec), format_answer(code)))
    return samples


def pick_task(tasks: dict, args: argparse.Namespace, backend):
    from arc25.prompts import build_messages

    if args.task:
        return tasks[args.task]
    by_size = sorted(tasks.values(), key=lambda t: (t.n_cells, t.task_id))
    if not args.prompt_tokens:
        return by_size[len(by_size) // 2]
    lengths = {t.task_id: len(backend.loras.prompt_ids(build_messages(t))) for t in by_size}
    fitting = [t for t in by_size if lengths[t.task_id] <= args.prompt_tokens] or by_size[:1]
    return max(fitting, key=lambda t: lengths[t.task_id])


def main() -> int:
    args = parse_args()
    import torch

    from arc25.backends.base import GenerationRequest, SamplingParams
    from arc25.backends.hf import HFBackend
    from arc25.config import LoraConfig, ModelConfig, TrainingConfig
    from arc25.tasks import load_tasks

    if args.threads:
        torch.set_num_threads(args.threads)
    path = model_path(args)
    tasks = load_tasks(args.data)
    backend = HFBackend(ModelConfig(path=str(path), device=args.device), LoraConfig(),
                        TrainingConfig(learning_rate=1e-4, gradient_checkpointing=args.gradient_checkpointing))
    task = pick_task(tasks, args, backend)
    rng = random.Random(0)
    t0 = time.perf_counter()
    backend.create_adapter("bench")
    create_s = time.perf_counter() - t0

    rows, tokens, steps_s, n_steps = [], 0, 0.0, 0
    for epoch in range(args.epochs):
        samples = epoch_samples(task, epoch, args.samples, rng)
        before = dict(backend.timings.seconds)
        backend.reset_adapter("bench")
        stats = backend.train("bench", samples)
        if backend.loras.device.type == "cuda":
            torch.cuda.synchronize()
        d = {k: backend.timings.seconds[k] - before.get(k, 0.0) for k in ("reset", "train_prep", "train_setup", "train")}
        steps = d["train"] - d["train_prep"] - d["train_setup"]
        rows.append((d["reset"], d["train_prep"], d["train_setup"], steps))
        if epoch > 0:  # epoch 0 pays one-off warm-up (allocator, autograd, kernels)
            tokens, steps_s, n_steps = tokens + stats.tokens, steps_s + steps, n_steps + stats.steps

    train_peak = torch.cuda.max_memory_allocated() if backend.loras.device.type == "cuda" else 0
    prompts = [s.messages for s in epoch_samples(task, -1, args.gen_prompts, rng)]
    params = SamplingParams(n=args.gen_n, temperature=1.0, top_p=0.95, max_tokens=args.gen_tokens, seed=0)
    backend.generate([GenerationRequest(prompts[:1], SamplingParams(n=1, max_tokens=2))])  # warm-up
    t0 = time.perf_counter()
    [out] = backend.generate([GenerationRequest(prompts, params, "bench")])
    gen_s = time.perf_counter() - t0
    gen_tokens = sum(c.completion_tokens for cs in out for c in cs)

    prompt_len = len(backend.loras.prompt_ids(samples[0].messages))
    answer_len = len(backend.loras.tokenizer(samples[0].answer, add_special_tokens=False)["input_ids"]) + 1
    print(f"model {path.name} on {backend.loras.device} ({backend.loras.dtype}), torch threads {torch.get_num_threads()}, "
          f"task {task.task_id}: prompt ~{prompt_len} tokens, answer {answer_len} tokens, "
          f"{args.samples} samples/epoch, {args.epochs} epochs, create_adapter {create_s * 1000:.1f} ms")
    print()
    print(f"{'per epoch (ms)':<22}{'reset':>9}{'prep':>9}{'setup':>9}{'overhead':>10}{'steps':>10}")
    def line(name: str, values: list[tuple[float, ...]]) -> None:
        cols = [statistics.fmean(v[i] for v in values) * 1000 for i in range(4)]
        print(f"{name:<22}{cols[0]:>9.1f}{cols[1]:>9.1f}{cols[2]:>9.1f}{sum(cols[:3]):>10.1f}{cols[3]:>10.1f}")
    line("epoch 0 (cold)", rows[:1])
    if len(rows) > 1:
        line(f"epochs 1-{len(rows) - 1} mean", rows[1:])
        worst = max(rows[1:], key=lambda r: sum(r[:3]))
        line("worst epoch (overhead)", [worst])
    print()
    if n_steps:
        print(f"training   {tokens / steps_s:10.0f} tokens/s  ({steps_s / n_steps * 1000:.0f} ms/step, "
              f"{tokens / n_steps:.0f} tokens/step)")
    print(f"generation {gen_tokens / gen_s:10.0f} tokens/s  ({len(prompts)} prompts x n={args.gen_n}, "
          f"{args.gen_tokens} new tokens max, {gen_s:.2f} s)")
    if backend.loras.device.type == "cuda":
        print(f"peak GPU memory: {train_peak / 2**30:.1f} GiB after training, "
              f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB after generation")
    overhead = statistics.fmean(sum(r[:3]) for r in rows[1:] or rows)
    print(f"\nfixed overhead per epoch: {overhead * 1000:.1f} ms (target < 500 ms): {'OK' if overhead < 0.5 else 'OVER'}")
    backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
