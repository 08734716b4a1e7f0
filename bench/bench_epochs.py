"""Wall time of k epochs vs 1 epoch at the same total predictions, with K tasks in flight, and engine busy time.

The real loop (TaskSolver states driven by the Scheduler, as a worker drives them) with a
real backend (`--backend hf` or `vllm`), by default on the generated tiny model on CPU
(`--model` for another, e.g. an 8B-shaped random model on a GPU), on real ARC tasks.
A random tiny model writes no valid program, so nothing would be relabeled or trained;
to make every epoch pay for real learning, half of the generated completions are
swapped for planted valid programs after the real engine call (the generation cost is
real, the programs are known).

    python bench/bench_epochs.py [--backend hf] [--in-flight 1 2 4] [--epochs 1 2 4] [--predictions 16]

Prints one row per (K, k): wall time, ratio to k=1 at the same K, the time breakdown
summed over tasks, the engine's busy fraction and tokens/s, and the fixed overhead
per epoch (reset + relabel: everything that is neither generation, execution,
optimizer steps nor waiting).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from arc25.backends import load_backend
from arc25.config import Config
from arc25.execution import Executor
from arc25.prompts import format_answer
from arc25.scheduler import EngineLog
from arc25.search_and_learn import solve_tasks
from arc25.task_result import TIME_PHASES
from arc25.tasks import load_tasks
from arc25.tiny_model import tiny_model_path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TASKS = ["3c9b0459", "6150a2bd", "67a3c6ac", "68b16354"]  # small training tasks: CPU prompts stay short
PLANTED = [
    format_answer(f"from common import *\n\nimport numpy as np\n\ndef transform(input_grid):\n    return {body}")
    for body in ("input_grid", "np.fliplr(input_grid)", "np.flipud(input_grid)", "np.rot90(input_grid)",
                 "input_grid.T", "np.rot90(input_grid, 2)", "np.where(input_grid == 0, 1, input_grid)",
                 "np.tile(input_grid, (1, 2))[:30, :30]")
]


class PlantedBackend:
    """The real backend, with half of each prompt's completions replaced by known valid programs."""

    def __init__(self, backend) -> None:
        self.backend, self.calls = backend, 0

    def generate(self, requests):
        out = self.backend.generate(requests)
        for answer in out:
            for completions in answer:
                for i in range(0, len(completions), 2):
                    completions[i] = replace(completions[i], text=PLANTED[self.calls % len(PLANTED)],
                                             finish_reason="stop")
                    self.calls += 1
        return out

    def __getattr__(self, name):
        return getattr(self.backend, name)


def bench_config(args, k: int) -> Config:
    config = Config(seed=0)
    config.model.path, config.model.backend = str(args.model), args.backend
    config.sampling.max_tokens = args.max_tokens
    config.sampling.n_per_prompt = args.n_per_prompt
    config.search.max_predictions = args.predictions
    config.search.predictions_per_epoch = args.predictions // k
    config.search.max_epochs = k
    config.search.stop_agreeing_programs = 10**6  # run every epoch: we measure, not solve
    config.search.stop_distinct_outputs = 10**6
    config.training.max_samples_per_epoch = args.samples
    return config


def bench(in_flight: int, k: int, args, tasks, backend, executor) -> dict:
    config = bench_config(args, k)
    engine = EngineLog()
    start = time.perf_counter()
    results = solve_tasks(tasks, backend, executor, config, 1e9, tasks_in_flight=in_flight, engine_log=engine)
    wall = time.perf_counter() - start
    for r in results:
        assert len(r.epochs) == k and r.predictions == args.predictions, (r.task_id, len(r.epochs), r.predictions)
    totals = {p: sum(r.timings[p] for r in results) for p in TIME_PHASES}
    summary = engine.summary()
    overhead = totals["reset"] + totals["relabel"]
    return {"K": in_flight, "k": k, "wall": wall, **totals, "busy": summary["busy_fraction"],
            "tok_s": summary["tokens_per_s"], "overhead_per_epoch": overhead / (k * len(tasks))}


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
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: the tiny model)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    args.model = args.model or tiny_model_path(Path(tempfile.gettempdir()) / "arc25-bench")
    challenges = args.data / "arc-prize-2025" / "arc-agi_training_challenges.json"
    tasks = [load_tasks(challenges)[t] for t in args.tasks]
    backend = PlantedBackend(load_backend(bench_config(args, 1)))
    rows = []
    with Executor(timeout_s=1.0) as executor:
        bench(max(args.in_flight), 1, args, tasks[:1], backend, executor)  # warm-up: allocate, compile
        for in_flight in args.in_flight:
            for k in args.epochs:
                rows.append(bench(in_flight, k, args, tasks, backend, executor))
                print(f"K={in_flight} k={k}: {rows[-1]['wall']:.1f} s", flush=True)
    cols = ["K", "k", "wall s", "vs k=1", *[f"{p} s" for p in TIME_PHASES], "busy", "tok/s", "overhead/epoch s"]
    print(f"\n{len(tasks)} tasks x {args.predictions} predictions, backend {args.backend}, model {args.model.name}, "
          f"max_tokens {args.max_tokens}, n {args.n_per_prompt}; time phases summed over tasks")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        base = next(b["wall"] for b in rows if b["K"] == r["K"] and b["k"] == min(args.epochs))
        cells = [str(r["K"]), str(r["k"]), f"{r['wall']:.1f}", f"{r['wall'] / base:.2f}"]
        cells += [f"{r[p]:.1f}" for p in TIME_PHASES]
        cells += [f"{100 * r['busy']:.0f}%", f"{r['tok_s']:.0f}", f"{r['overhead_per_epoch']:.3f}"]
        print("| " + " | ".join(cells) + " |")
    backend.close()


if __name__ == "__main__":
    main()
