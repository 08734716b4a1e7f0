"""How long after its deadline does `arc25 run` exit, when the engine hangs or the programs run? (issue 18)

Real `arc25 run` processes (the scripted backend as the model, real workers and sandboxed programs) on three
ARC training tasks, one row per hostile case:

- hung engine: the first engine call of the run never returns (the scripted backend's `hang_marker`) and the
  watchdog is off (`run.engine_stall_s=0`): the stuck worker holds its task until the parent stops it;
- hung engine + watchdog: the same with `run.engine_stall_s=8`: the worker gives its tasks up, the other
  worker redoes them, and the run ends on its own, before the deadline;
- programs running: every program sleeps until the executor's timeout (60 s), so each task is mid-execution
  at the deadline;
- logs on /dev/full: the timelines and engine logs fail with ENOSPC, one task hangs until the deadline.

`deadline -> exit` is the process's exit time minus run.json's deadline (negative: it ended before it);
`limit -> exit` is the exit minus started_at + time_limit_s (the run's own bound: must be negative).

    python bench/bench_deadline_exit.py [--time-limit 30] [--reserve 4] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ARC25_DATA", REPO.parent / "shared" / "data")) / "arc-prize-2025"
TASK_IDS = ["3c9b0459", "00576224", "007bbfb7"]


def answer(body: str) -> str:
    from arc25.prompts import ANSWER_PREFIX

    return f"{ANSWER_PREFIX}```python\nfrom common import *\n\nimport numpy as np\n\ndef transform(input_grid):\n{body}\n```"


def write_data(folder: Path) -> dict[str, Path]:
    challenges = json.loads((DATA / "arc-agi_training_challenges.json").read_text())
    solutions = json.loads((DATA / "arc-agi_training_solutions.json").read_text())
    paths = {"challenges": folder / "challenges.json", "solutions": folder / "solutions.json"}
    paths["challenges"].write_text(json.dumps({t: challenges[t] for t in TASK_IDS}))
    paths["solutions"].write_text(json.dumps({t: solutions[t] for t in TASK_IDS}))
    return paths


def model_file(folder: Path, name: str, completions: list[str], **extra: object) -> Path:
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"completions": completions, **extra}))
    return path


def run_case(name: str, data: dict[str, Path], model: Path, out: Path, args: argparse.Namespace,
             settings: list[str], fault: str | None = None, dev_full_logs: bool = False) -> dict:
    if dev_full_logs:
        (out / "workers").mkdir(parents=True)
        for k in range(args.workers):
            for kind in ("timeline", "engine"):
                (out / "workers" / f"worker-{k}.{kind}.jsonl").symlink_to("/dev/full")
    cmd = [sys.executable, "-m", "arc25", "-q", "run", "--challenges", str(data["challenges"]), "--solutions",
           str(data["solutions"]), "--model", str(model), "--out", str(out), "--workers", str(args.workers),
           "--time-limit", str(args.time_limit), "--no-progress"]
    for item in ["model.backend=scripted", "sampling.n_per_prompt=2", "search.predictions_per_epoch=4",
                 "search.max_epochs=2", "execution.workers=1", f"run.reserve_s={args.reserve}", "run.heartbeat_s=1",
                 *settings]:
        cmd += ["--set", item]
    env = {k: v for k, v in os.environ.items() if k != "ARC25_FAULT_INJECT"}
    if fault:
        env["ARC25_FAULT_INJECT"] = fault
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=args.time_limit + 300)
    exited = time.time()
    run = json.loads((out / "run.json").read_text())
    valid = "-"
    if (out / "submission.json").exists():
        from arc25.submission import validate_submission
        from arc25.tasks import load_tasks

        submission = json.loads((out / "submission.json").read_text())
        valid = "yes" if not validate_submission(submission, load_tasks(data["challenges"])) else "NO"
    return {"case": name, "rc": str(done.returncode), "deadline -> exit": f"{exited - run['deadline']:+.1f} s",
            "limit -> exit": f"{exited - run['started_at'] - run['time_limit_s']:+.1f} s", "submission valid": valid,
            "traceback": "yes" if "Traceback" in done.stderr else "no"}


def main() -> None:
    from arc25.metrics import format_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-limit", type=float, default=30.0)
    parser.add_argument("--reserve", type=float, default=4.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = write_data(folder)
        ordinary = [answer("    return np.rot90(input_grid, 2)"), answer("    return input_grid")]
        hang = {"hang_marker": str(folder / "hung")}
        cases = [
            ("hung engine, watchdog off", model_file(folder, "hang1", ordinary, **hang), ["run.engine_stall_s=0"], {}),
            ("hung engine, engine_stall_s=8", model_file(folder, "hang2", ordinary,
                                                         hang_marker=str(folder / "hung2")),
             ["run.engine_stall_s=8", "run.tasks_per_worker=3"], {}),
            ("programs running at the deadline", model_file(folder, "sleep", [answer(
                "    import time\n    time.sleep(600)\n    return input_grid")]),
             ["execution.timeout_s=60", "run.tasks_per_worker=3"], {}),
            ("logs on /dev/full, a task hangs", model_file(folder, "plain", ordinary), [],
             {"fault": "hang:00576224", "dev_full_logs": True}),
        ]
        for name, model, settings, extra in cases:
            rows.append(run_case(name, data, model, folder / name.replace(" ", "_").replace("/", ""), args, settings,
                                 **extra))
            print(format_table(rows[-1:]), flush=True)
    print(f"\ntime limit {args.time_limit:.0f} s, reserve {args.reserve:.0f} s, {args.workers} CPU workers\n")
    print(format_table(rows))


if __name__ == "__main__":
    main()
