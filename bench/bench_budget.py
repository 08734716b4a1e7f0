"""Does a task's budget hold inside an epoch? `arc25 solve --budget-s B` with the default configuration.

Runs the real CLI (one process per budget: the model load is not part of a task's
time) on small ARC evaluation tasks with the generated tiny model on CPU, and reads
each task's elapsed time from its result.json. The default configuration samples
64 predictions x 1024 new tokens per epoch, far longer than these budgets: only the
deadline that generation and training honour can keep a task in budget.
Target: overshoot <= max(10 s, 20% of B) per task.

    python bench/bench_budget.py [--budgets 20 40 80] [--tasks ...] [--backend hf]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from arc25.rundir import task_dir_name
from arc25.devmodels.tiny_model import tiny_model_path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CHALLENGES = DATA / "arc-prize-2025" / "arc-agi_evaluation_challenges.json"


def smallest_tasks(n: int) -> list[str]:
    from arc25.tasks import load_tasks

    tasks = load_tasks(CHALLENGES)
    return [t.task_id for t in sorted(tasks.values(), key=lambda t: (t.n_cells, t.task_id))[:n]]


def run_budget(budget: float, task_ids: list[str], model: Path, backend: str, out: Path) -> list[dict]:
    cmd = [sys.executable, "-m", "arc25", "-q", "solve", "--challenges", str(CHALLENGES), "--task-ids", *task_ids,
           "--model", str(model), "--out", str(out), "--budget-s", str(budget), "--set", f"model.backend={backend}"]
    start = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"arc25 solve failed ({done.returncode}): {done.stderr[-2000:]}")
    wall = time.time() - start
    rows = []
    for task_id in task_ids:
        result = json.loads((out / task_dir_name(task_id) / "result.json").read_text())
        elapsed = result["elapsed_s"]
        limit = max(10.0, 0.2 * budget)
        rows.append({"budget": budget, "task": task_id, "elapsed": elapsed, "over": elapsed - budget,
                     "limit": limit, "ok": elapsed - budget <= limit, "stop": result["stop_reason"],
                     "epochs": len(result["epochs"]), "predictions": result["predictions"], "process_s": wall})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budgets", type=float, nargs="+", default=[20.0, 40.0, 80.0])
    parser.add_argument("--tasks", nargs="+", default=None, help="default: the two smallest evaluation tasks")
    parser.add_argument("--backend", default="hf")
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: the tiny model)")
    args = parser.parse_args()
    model = args.model or tiny_model_path(Path(tempfile.gettempdir()) / "arc25-bench")
    task_ids = args.tasks or smallest_tasks(2)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for budget in args.budgets:
            rows += run_budget(budget, task_ids, model, args.backend, Path(tmp) / f"b{budget:g}")
            print(f"budget {budget:g} s done", flush=True)
    print(f"\narc25 solve, default configuration, backend {args.backend}, model {model.name}, CPU")
    print("| budget s | task | elapsed s | overshoot s | allowed s | ok | stop | epochs | predictions |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['budget']:g} | {r['task']} | {r['elapsed']:.1f} | {r['over']:+.1f} | {r['limit']:.0f} | "
              f"{'yes' if r['ok'] else 'NO'} | {r['stop']} | {r['epochs']} | {r['predictions']} |")


if __name__ == "__main__":
    main()
