"""Wall time of k epochs vs 1 epoch at the same total predictions, with K tasks in flight, and engine busy time.

The real loop (TaskSolver states driven by the Scheduler, as a worker drives them) with a
real backend (`--backend hf` or `vllm`), by default on the generated tiny model on CPU
(`--model` for another, e.g. an 8B-shaped random model on a GPU), on real ARC tasks.
A random tiny model writes no valid program, so nothing would be relabeled or trained;
to make every epoch pay for real learning, half of the generated completions are
swapped for planted valid programs after the real engine call (the generation cost is
real, the programs are known).

    python bench/bench_epochs.py [--backend hf] [--in-flight 1 2 4] [--epochs 1 2 4] [--predictions 16]

On a GPU, the Kaggle engine on the 8B shape under an L4's memory (docs/benchmarks.md):

    python bench/bench_epochs.py --backend unsloth --model DIR --challenges C --median-tasks 4 \
        --in-flight 4 --epochs 1 4 --predictions 64 --n-per-prompt 8 --max-tokens 512 --samples 4 \
        --set unsloth.memory_cap_gib=22

Prints one row per (K, k): wall time, ratio to k=1 at the same K, the time breakdown
summed over tasks, the engine's busy fraction and tokens/s, and the fixed overhead
per epoch (reset + relabel: everything that is neither generation, execution,
optimizer steps nor waiting).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from arc25.backends import load_backend
from arc25.config import Config, load_config
from arc25.execution import Executor
from arc25.prompts import PromptSpec, build_messages, format_answer, tokenize_prompt
from arc25.scheduler import EngineLog
from arc25.slots import adapter_slots
from arc25.solve import solve_tasks
from arc25.task_result import TIME_PHASES
from arc25.tasks import load_tasks
from arc25.devmodels.tiny_model import tiny_model_path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TASKS = ["3c9b0459", "6150a2bd", "67a3c6ac", "68b16354"]  # small training tasks: CPU prompts stay short
PLANTED = [
    format_answer(f"from common import *\n\nimport numpy as np\n\ndef transform(input_grid):\n    return {body}")
    for body in ("input_grid", "np.fliplr(input_grid)", "np.flipud(input_grid)", "np.rot90(input_grid)",
                 "input_grid.T", "np.rot90(input_grid, 2)", "np.where(input_grid == 0, 1, input_grid)",
                 "np.tile(input_grid, (1, 2))[:30, :30]")
]


class PlantedBackend:
    """The real backend, with half of each prompt's completions replaced by known valid programs.

    With `lora_slots`, a request for the base model goes out under one of these adapters instead,
    reset (untrained: the base model's outputs), in turn: the cost of vLLM's LoRA kernels alone.
    """

    def __init__(self, backend) -> None:
        self.backend, self.calls = backend, 0
        self.lora_slots: list[str] = []
        self._turn = 0

    def _lora(self, request):
        if not self.lora_slots or request.adapter is not None:
            return request
        name = self.lora_slots[self._turn % len(self.lora_slots)]
        self._turn += 1
        self.backend.reset_adapter(name)
        return replace(request, adapter=name)

    def generate(self, requests):
        out = self.backend.generate([self._lora(r) for r in requests])
        for answer in out:
            self._plant(answer)
        return out

    def submit(self, key, request):
        return self.backend.submit(key, self._lora(request))

    def step(self):  # every backend: answers come back from step()
        answers = self.backend.step()
        for _, answer in answers:
            self._plant(answer)
        return answers

    def _plant(self, answer) -> None:
        for completions in answer:
            for i in range(0, len(completions), 2):
                completions[i] = replace(completions[i], text=PLANTED[self.calls % len(PLANTED)],
                                         finish_reason="stop")
                self.calls += 1

    def __getattr__(self, name):
        return getattr(self.backend, name)


MODES = {"stream": False, "stream+train": True}  # run.concurrent_training (the scheduler has one mode: issue 20)


def bench_config(args, k: int, mode: str = "config") -> Config:
    config = load_config(None, args.set)
    config.seed = 0
    if mode in MODES:
        config.run.concurrent_training = MODES[mode]
    config.model.path, config.model.backend = str(args.model), args.backend
    config.sampling.max_tokens = args.max_tokens
    config.sampling.n_per_prompt = args.n_per_prompt
    config.search.max_predictions = args.predictions
    config.search.predictions_per_epoch = args.predictions // k
    config.search.max_epochs = k
    config.search.stop_agreeing_programs = 10**6  # run every epoch: we measure, not solve
    config.search.stop_distinct_outputs = 10**6
    config.training.max_samples_per_epoch = args.samples
    config.run.tasks_per_worker = max(args.in_flight)  # adapters (vLLM LoRA slots) the backend is built for
    return config


def median_tasks(tasks: dict, tokenizer, n: int) -> list[str]:
    """The n tasks whose first prompt is nearest the file's median prompt length (typical, not extreme)."""
    lengths = {tid: len(tokenize_prompt(tokenizer, build_messages(t, PromptSpec(test_index=0)))) for tid, t in tasks.items()}
    median = statistics.median(lengths.values())
    return sorted(lengths, key=lambda tid: (abs(lengths[tid] - median), tid))[:n]


def bench(in_flight: int, k: int, args, tasks, backend, executor, mode: str = "config") -> dict:
    config = bench_config(args, k, mode)
    # k = 1 never trains, so its requests would all go to the base model
    backend.lora_slots = adapter_slots(backend.backend, in_flight) if args.lora_at_k1 and k == 1 else []
    engine = EngineLog()
    start = time.perf_counter()
    results = solve_tasks(tasks, backend, executor, config, 1e9, tasks_in_flight=in_flight, engine_log=engine)
    wall = time.perf_counter() - start
    for r in results:
        assert len(r.epochs) == k and r.predictions == args.predictions, (r.task_id, len(r.epochs), r.predictions)
    totals = {p: sum(r.timings[p] for r in results) for p in TIME_PHASES}
    summary = engine.summary()
    overhead = totals["reset"] + totals["relabel"]
    return {"mode": mode, "lora_at_k1": bool(backend.lora_slots), "K": in_flight, "k": k, "wall": wall, **totals, "busy": summary["busy_fraction"],
            "tok_s": summary["tokens_per_s"], "seq_per_call": summary["sequences_per_call"],
            "running": summary["tokens_per_step"],
            "overhead_per_epoch": overhead / (k * len(tasks))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="hf", choices=["hf", "vllm", "unsloth"])
    parser.add_argument("--in-flight", type=int, nargs="+", default=[1, 2, 4], help="tasks in flight (K)")
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--predictions", type=int, default=16, help="total predictions per task")
    parser.add_argument("--n-per-prompt", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--samples", type=int, default=4, help="relabeled samples per epoch")
    parser.add_argument("--tasks", nargs="+", default=TASKS)
    parser.add_argument("--challenges", type=Path, default=DATA / "arc-prize-2025" / "arc-agi_training_challenges.json")
    parser.add_argument("--median-tasks", type=int, default=0, metavar="N",
                        help="instead of --tasks: the N tasks of --challenges nearest its median prompt length")
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: the tiny model)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--modes", nargs="+", default=["config"], choices=["config", *MODES],
                        help="training modes to compare: stream (training between engine steps), stream+train "
                             "(training on a thread beside the engine, where the backend can)")
    parser.add_argument("--lora-at-k1", action="store_true",
                        help="k = 1 rows sample under untrained adapters (one per task), not the base model: "
                             "what serving a LoRA costs, apart from epochs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    args.model = args.model or tiny_model_path(Path(tempfile.gettempdir()) / "arc25-bench")
    all_tasks = load_tasks(args.challenges)
    backend = PlantedBackend(load_backend(bench_config(args, 1)))
    if args.median_tasks:
        from transformers import AutoTokenizer  # the model's own: any backend

        args.tasks = median_tasks(all_tasks, AutoTokenizer.from_pretrained(args.model), args.median_tasks)
    tasks = [all_tasks[t] for t in args.tasks]
    print(f"tasks: {' '.join(args.tasks)}", flush=True)
    rows = []
    with Executor(timeout_s=1.0) as executor:
        # warm-up on one task: allocation, CUDA graphs, the first training step's compilation
        # (two small epochs: a large --predictions would make the warm-up as long as a measured row)
        warm = argparse.Namespace(**{**vars(args), "predictions": 2 * args.n_per_prompt})
        bench(max(args.in_flight), 2, warm, tasks[:1], backend, executor)
        for mode, in_flight, k in itertools.product(args.modes, args.in_flight, args.epochs):
            rows.append(bench(in_flight, k, args, tasks, backend, executor, mode))
            r = rows[-1]
            print(f"{mode}, K={in_flight} k={k}: {r['wall']:.1f} s, busy {100 * r['busy']:.0f}%, "
                  f"{r['tok_s']:.0f} tok/s, {r['seq_per_call']:.0f} sequences per call, {r['running']} running",
                  flush=True)
            if args.json:
                args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}))
    cols = ["mode", "K", "k", "wall s", "vs k=1", *[f"{p} s" for p in TIME_PHASES], "busy", "tok/s",
            "seq/call", "running", "overhead/epoch s"]
    print(f"\n{len(tasks)} tasks x {args.predictions} predictions, backend {args.backend}, model {args.model.name}, "
          f"max_tokens {args.max_tokens}, n {args.n_per_prompt}; time phases summed over tasks")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        base = next(b["wall"] for b in rows if (b["mode"], b["K"]) == (r["mode"], r["K"])
                    and b["k"] == min(args.epochs))
        cells = [r["mode"] + (" +lora" if r["lora_at_k1"] else ""), str(r["K"]), str(r["k"]), f"{r['wall']:.1f}", f"{r['wall'] / base:.2f}"]
        cells += [f"{r[p]:.1f}" for p in TIME_PHASES]
        cells += [f"{100 * r['busy']:.0f}%", f"{r['tok_s']:.0f}", f"{r['seq_per_call']:.0f}", f"{r['running']}",
                  f"{r['overhead_per_epoch']:.3f}"]
        print("| " + " | ".join(cells) + " |")
    print_gpu_memory(backend)
    backend.close()


def print_gpu_memory(backend) -> None:
    """Peak memory and the engine's KV cache, where the run was on a GPU."""
    import torch

    if not torch.cuda.is_available():
        return
    free, total = torch.cuda.mem_get_info()
    line = f"GPU: peak allocated {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB, device used {(total - free) / 2**30:.2f} GiB"
    llm = getattr(getattr(backend, "engine", None), "llm", None)
    if llm is not None:
        cache = llm.llm_engine.vllm_config.cache_config
        line += f", KV cache {(cache.num_gpu_blocks or 0) * cache.block_size} tokens"
    print(line)


if __name__ == "__main__":
    main()
