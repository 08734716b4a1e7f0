"""Wall time of k epochs vs 1 epoch at the same total predictions, and the fixed overhead per epoch.

The real loop (TaskSolver) with the real HF backend, by default on the generated tiny
model on CPU (`--model` for another, e.g. an 8B-shaped random model on a GPU), on
real ARC tasks. A random tiny model writes no valid program, so nothing
would be relabeled or trained; to make every epoch pay for real learning, half of
the generated completions are swapped for planted valid programs after the real
generate call (the generation cost is real, the programs are known).

    python bench/bench_epochs.py [--predictions 32] [--epochs 1 2 4] [--max-tokens 64]

Prints one row per k: wall time, ratio to k=1, the time breakdown, and the fixed
overhead per epoch (reset + relabel + other: everything that is not generation,
execution or optimizer steps).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from arc25.backends.hf import HFBackend
from arc25.config import Config
from arc25.execution import Executor
from arc25.prompts import format_answer
from arc25.search_and_learn import ADAPTER_SLOT, TIME_PHASES, TaskSolver
from arc25.tasks import load_tasks
from arc25.tiny_model import tiny_model_path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PLANTED = [
    format_answer(f"from common import *\n\nimport numpy as np\n\ndef transform(input_grid):\n    return {body}")
    for body in ("input_grid", "np.fliplr(input_grid)", "np.flipud(input_grid)", "np.rot90(input_grid)",
                 "input_grid.T", "np.rot90(input_grid, 2)", "np.where(input_grid == 0, 1, input_grid)",
                 "np.tile(input_grid, (1, 2))[:30, :30]")
]


class PlantedBackend:
    """The real backend, with half of each prompt's completions replaced by known valid programs."""

    def __init__(self, backend: HFBackend) -> None:
        self.backend, self.timings, self.calls = backend, backend.timings, 0

    def generate(self, prompts, params, adapter=None):
        out = self.backend.generate(prompts, params, adapter)
        for texts in out:
            for i in range(0, len(texts), 2):
                texts[i] = PLANTED[self.calls % len(PLANTED)]
                self.calls += 1
        return out

    def __getattr__(self, name):
        return getattr(self.backend, name)


def bench(k: int, args, tasks, backend, executor) -> dict:
    config = Config(seed=0)
    config.model.path = str(args.model)
    config.sampling.max_tokens = args.max_tokens
    config.sampling.n_per_prompt = args.n_per_prompt
    config.search.max_predictions = args.predictions
    config.search.predictions_per_epoch = args.predictions // k
    config.search.max_epochs = k
    config.search.stop_agreeing_programs = 10**6  # run every epoch: we measure, not solve
    config.search.stop_distinct_outputs = 10**6
    config.training.max_samples_per_epoch = args.samples
    totals = dict.fromkeys(TIME_PHASES, 0.0)
    start = time.perf_counter()
    for task in tasks:
        solver = TaskSolver(task, backend, executor, config, budget_s=1e9, adapter=ADAPTER_SLOT)
        result = solver.run()
        assert len(result["epochs"]) == k and result["predictions"] == args.predictions
        for phase in TIME_PHASES:
            totals[phase] += result["timings"][phase]
    wall = time.perf_counter() - start
    overhead = totals["reset"] + totals["relabel"] + totals["other"]
    return {"k": k, "wall": wall, **totals, "overhead_per_epoch": overhead / (k * len(tasks))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictions", type=int, default=32, help="total predictions per task")
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--n-per-prompt", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--samples", type=int, default=4, help="relabeled samples per epoch (K)")
    parser.add_argument("--tasks", nargs="+", default=["3c9b0459", "6150a2bd"])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: the tiny model)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    args.model = args.model or tiny_model_path(Path(tempfile.gettempdir()) / "arc25-bench")
    challenges = args.data / "arc-prize-2025" / "arc-agi_training_challenges.json"
    tasks = [load_tasks(challenges)[t] for t in args.tasks]
    config = Config(seed=0)
    config.model.path = str(args.model)
    backend = PlantedBackend(HFBackend(config.model, config.lora, config.training, seed=0))
    backend.create_adapter(ADAPTER_SLOT)
    with Executor(timeout_s=1.0) as executor:
        bench(1, args, tasks[:1], backend, executor)  # warm-up: first calls allocate and compile
        rows = [bench(k, args, tasks, backend, executor) for k in args.epochs]
    base = rows[0]["wall"]
    cols = ["k", "wall s", "vs k=1", *[f"{p} s" for p in TIME_PHASES], "overhead/epoch s"]
    model = backend.backend.base
    print(f"{len(tasks)} tasks x {args.predictions} predictions, {args.model.name} on {model.device} "
          f"({model.dtype}), max_tokens {args.max_tokens}")
    print("  ".join(f"{c:>10}" for c in cols))
    for r in rows:
        cells = [f"{r['k']:>10}", f"{r['wall']:>10.2f}", f"{r['wall'] / base:>10.2f}"]
        cells += [f"{r[p]:>10.2f}" for p in TIME_PHASES] + [f"{r['overhead_per_epoch']:>10.3f}"]
        print("  ".join(cells))


if __name__ == "__main__":
    main()
