"""Benchmark the sandboxed executor on realistic BARC-style programs.

The corpus is `bench/programs/*.py` (hand-written in the DSL's style, plus broken
ones: syntax errors, exceptions, wrong shapes and values, no transform) and
`bench/programs/hostile/*.py` (hangs, exits, bombs, rogue patches). A file named
`<task_id>_<name>.py` is a program for that task of the ARC Prize 2025 training set.

Each corpus program is written as a prediction under several augmentations
(identity plus random dihedral/colour ones) to a predictions JSONL, read back and
run through `arc25.evaluation.evaluate_predictions` on all train and test inputs.
The corpus runs before and after a hostile batch; throughput should not change.

    PYTHONPATH=arc25_src python bench/bench_executor.py [--augmentations 8] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import psutil

from arc25.augment import Augmentation
from arc25.evaluation import Evaluation, evaluate_predictions, read_predictions
from arc25.execution import Executor
from arc25.metrics import format_table, summary_rows
from arc25.sandbox import ALL_LAYERS, parse_layers
from arc25.tasks import Task, load_tasks

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[0].parent / "shared" / "data"  # <repo>/../shared/data
PROGRAMS = HERE / "programs"


def load_corpus(folder: Path, tasks: dict[str, Task]) -> list[tuple[str, str, str]]:
    """(name, task_id, code) for every `<task_id>_<name>.py` whose task exists."""
    corpus = []
    for path in sorted(folder.glob("*.py")):
        task_id = path.stem.split("_", 1)[0]
        if task_id in tasks:
            corpus.append((path.stem, task_id, path.read_text()))
        else:
            logging.warning("skipping %s: no task %s", path.name, task_id)
    return corpus


def write_predictions(path: Path, corpus: list[tuple[str, str, str]], n_aug: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    count = 0
    with path.open("w") as f:
        for _, task_id, code in corpus:
            augs = [Augmentation()] + [Augmentation.random(rng) for _ in range(n_aug - 1)]
            for aug in augs:
                f.write(json.dumps({"task_id": task_id, "code": code, "augmentation": aug.to_dict()}) + "\n")
                count += 1
    return count


def cpu_seconds(pids: list[int]) -> float:
    """CPU time of this process, the workers and their reaped children (the programs)."""
    total = 0.0
    for proc in [psutil.Process()] + [psutil.Process(p) for p in pids]:
        t = proc.cpu_times()
        total += t.user + t.system + t.children_user + t.children_system
    return total


def timed_run(tasks: dict[str, Task], predictions: Path, executor: Executor) -> tuple[Evaluation, float, float]:
    """(evaluation, wall seconds, CPU seconds); CPU time shows the cost even on a busy machine."""
    records = read_predictions(predictions, tasks)
    pids = executor.worker_pids
    cpu, start = cpu_seconds(pids), time.perf_counter()
    evaluation = evaluate_predictions(tasks, records, executor, progress=False)
    wall = time.perf_counter() - start
    return evaluation, wall, cpu_seconds(pids) - cpu


def phase_row(label: str, evaluation: Evaluation, seconds: float, cpu: float, n_workers: int) -> dict[str, str]:
    n = len(evaluation.records)
    durations = np.array([ex.duration_s for ex in evaluation.executions]) * 1000
    grids = sum(len(ex.train_outputs) + len(ex.test_outputs) for ex in evaluation.executions)
    kinds = Counter(p.kind or "ok" for p in evaluation.predictions)
    return {
        "phase": label,
        "programs": str(len(evaluation.records)),
        "grids": str(grids),
        "seconds": f"{seconds:.2f}",
        "programs/s": f"{len(evaluation.records) / seconds:.0f}",
        "CPU ms/prog": f"{1000 * cpu / n:.1f}",
        f"CPU-bound programs/s on {n_workers} cores": f"{n_workers * n / cpu:.0f}",
        "p50 ms": f"{np.percentile(durations, 50):.1f}",
        "p99 ms": f"{np.percentile(durations, 99):.1f}",
        "max ms": f"{durations.max():.0f}",
        "kinds": " ".join(f"{k}={v}" for k, v in sorted(kinds.items())),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding arc-prize-2025/")
    parser.add_argument("--augmentations", type=int, default=8, help="predictions per corpus program")
    parser.add_argument("--workers", type=int, default=0, help="0: one per CPU")
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--hostile-repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, help="folder for the predictions files (default: a temp dir)")
    parser.add_argument("--layers", default=",".join(sorted(ALL_LAYERS)),
                        help="sandbox layers, comma-separated (landlock, seccomp, audit_hook; '' for none)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    base = args.data / "arc-prize-2025"
    tasks = load_tasks(base / "arc-agi_training_challenges.json", base / "arc-agi_training_solutions.json")
    corpus = load_corpus(PROGRAMS, tasks)
    hostile = load_corpus(PROGRAMS / "hostile", tasks)
    out = args.out or Path(tempfile.mkdtemp(prefix="arc25-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    normal_file, hostile_file = out / "corpus.jsonl", out / "hostile.jsonl"
    n_normal = write_predictions(normal_file, corpus, args.augmentations)
    write_predictions(hostile_file, hostile * args.hostile_repeats, 1)

    load = os.getloadavg()
    start = time.perf_counter()
    layers = parse_layers(n for n in args.layers.split(",") if n)
    with Executor(args.workers or None, args.timeout, layers=layers) as executor:
        timed_run(tasks, normal_file, executor)  # warm-up: first faults, lazy imports
        startup = time.perf_counter() - start
        rows = []
        w = executor.n_workers
        before, *times = timed_run(tasks, normal_file, executor)
        rows.append(phase_row("corpus (before)", before, *times, w))
        bad, *times = timed_run(tasks, hostile_file, executor)
        rows.append(phase_row("hostile batch", bad, *times, w))
        after, *times = timed_run(tasks, normal_file, executor)
        rows.append(phase_row("corpus (after)", after, *times, w))
        restarts = executor.restarts

    print(f"corpus: {len(corpus)} programs x {args.augmentations} augmentations = {n_normal} predictions "
          f"on {len({t for _, t, _ in corpus})} tasks; hostile: {len(hostile)} x {args.hostile_repeats}")
    print(f"load average before: {load[0]:.1f} (other processes share these cores: compare CPU ms/prog)")
    print(f"workers: {executor.n_workers}, timeout {args.timeout:g} s, start-up + warm-up {startup:.1f} s, "
          f"worker restarts {restarts}, sandbox: {executor.sandbox.describe() if executor.sandbox else '?'}\n")
    print(format_table(rows, [c for c in rows[0] if c != "kinds"]))
    print()
    print(format_table([{"phase": r["phase"], "kinds": r["kinds"]} for r in rows]))
    print("\nhostile batch, per program:")
    hostile_rows = [
        {"program": name, "kind": p.kind or "ok", "ms": f"{ex.duration_s * 1000:.0f}", "error": (ex.error or "")[:70]}
        for (name, _, _), p, ex in zip(hostile, bad.predictions, bad.executions)
    ]
    print(format_table(hostile_rows))
    print("\ncorpus metrics (after):")
    print(format_table(summary_rows(after.tasks, after.predictions)))
    same = [p.to_dict() for p in before.predictions] == [p.to_dict() for p in after.predictions]
    print(f"\nresults identical before and after the hostile batch: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
