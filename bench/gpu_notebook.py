"""kaggle_notebook.ipynb run headless (nbclient) against a /kaggle-like tree, as Kaggle would run it.

On a GPU machine (bench/gpu_kaggle_shape.sh notebook, after the offline packs are installed and the 8B
shape is built): the tree of tests/kaggle_tree.py (the same one tests/test_notebook.py builds on CPU)
with the 8B-shape folder linked in as the attached model, the arc25 code dataset staged here by
`arc25 package` (built offline), a small wheels dataset (no torch, no vLLM: the GPU stack comes from the
packs, whose folder is on the kernel's PYTHONPATH), and a competition folder whose test file holds the
N smallest ARC-AGI-2 evaluation tasks (N = 4 per GPU). The kernel is a fresh venv layered on the
running environment, into which the notebook installs arc25 from its wheel, as on Kaggle.

    commit   Save & Run All: the self-check (a dry run of SELF_CHECK_TASKS evaluation tasks) + fallback
    rerun    KAGGLE_IS_COMPETITION_RERUN=True: `arc25 run` on the test file by the notebook's deadline

The only configuration override is the per-process 22 GiB cap (and `model.backend=unsloth` while the
default engine is "hf"; `--fp8` adds unsloth.weights=fp8, which auto picks under the cap anyway). The notebook's time parameters come from
`--end-by` (the device call's end): the self-check's limit or TIME_BUDGET_S fill the time left.
Prints a table (valid submission, engine, engine busy, tokens/s, GPU memory per worker, wall time per
phase) and writes OUT/notebook-MODE.{md,json,ipynb}.

    python bench/gpu_notebook.py commit|rerun --model DIR --eval DIR --wheelhouse DIR [--end-by EPOCH]
    python bench/gpu_notebook.py rerun --cpu-smoke      # here: the tiny model, HF backend, the same path
    python bench/gpu_notebook.py pack .whl/nb           # here: the evaluation files and the small wheelhouse
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "arc25_src"))
from kaggle_tree import build_kaggle_input, kernel_spec, layered_venv  # noqa: E402

EVAL_FILES = ("arc-agi_evaluation_challenges.json", "arc-agi_evaluation_solutions.json")
TASKS_PER_GPU = 4  # run.tasks_per_worker
CAP = "unsloth.memory_cap_gib=22"  # an L4's memory on a bigger card
# The tiny model with CPU-sized sampling (as tests/test_notebook.py): the machinery is under test.
TINY_RUN_ARGS = ["model.backend=hf", "sampling.max_tokens=16", "sampling.n_per_prompt=2",
                 "search.predictions_per_epoch=2", "search.max_predictions=2", "search.max_epochs=1",
                 "run.reserve_s=5", "run.per_task_cap_s=60"]
NOTEBOOK_AFTER_RUN_S = 75  # commit: after the self-check, the merge, the report and its plots
# The notebook's cells, by the comment each starts with
CELLS = {"parameters": "# Parameters", "gpus": "# The GPUs and the driver", "inputs": "# Inputs, found by",
         "fallback": "# A valid submission before", "install": "# The wheelhouse's CUDA build",
         "run + merge + validate": "# The run, then", "plots": "# The self-check's report"}
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")
BUSY = re.compile(r"engine busy (\d+)% of (\d+) s \(generate (\d+) s, train (\d+) s\), (\d+) tokens/s")
MEMORY = re.compile(r"GPU memory: peak allocated ([\d.]+) GiB, device used ([\d.]+) GiB of ([\d.]+)")
ENGINE_LINE = re.compile(r"(?i)\b(backend|engine)\b.*\b(auto|unsloth|vllm|hf)\b")


@dataclass
class Worker:
    index: int
    busy: float | None = None  # engine busy fraction (status file)
    tokens_per_s: float | None = None
    generate_s: float | None = None
    train_s: float | None = None
    run_s: float | None = None  # from the model loaded to the worker's end
    load_s: float | None = None  # from the run's start: process start, imports, model load, CUDA graphs
    ended_at: float | None = None
    peak_allocated_gib: float | None = None
    device_used_gib: float | None = None
    smi_max_gib: float | None = None  # nvidia-smi's memory.used on its GPU, sampled every 2 s
    engine_lines: list[str] = field(default_factory=list)
    unsloth_seen: bool = False


@dataclass
class Report:
    mode: str
    machine: str
    run_args: list[str]
    notebook_s: float
    error: str | None
    phases: dict[str, float]
    backend: str | None
    valid: bool
    submission_tasks: int
    test_tasks: int
    notebook_says_valid: bool
    arc25_from: str | None
    workers: list[Worker]
    after_workers_s: float | None  # run cell's end after the last worker ended: merge, validate (report)


def log_time(line: str) -> float | None:
    m = LOG_TIME.match(line)
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp() + int(m.group(2)) / 1000 if m else None


def parse_worker(index: int, log_text: str, status: dict, started_at: float | None) -> Worker:
    """One worker's figures from its log (the closing lines of arc25.workers.worker_main) and status file."""
    w = Worker(index)
    engine = status.get("engine") or {}
    w.busy, w.tokens_per_s = engine.get("busy_fraction"), engine.get("tokens_per_s")
    w.generate_s, w.train_s, w.run_s = engine.get("generate_s"), engine.get("train_s"), engine.get("wall_s")
    for line in log_text.splitlines():
        if BUSY.search(line):
            w.ended_at = log_time(line)
        if m := MEMORY.search(line):
            w.peak_allocated_gib, w.device_used_gib = float(m.group(1)), float(m.group(2))
        if " arc25." in line and ENGINE_LINE.search(line) and len(w.engine_lines) < 3:  # arc25's own loggers
            w.engine_lines.append(line[:200])
        w.unsloth_seen = w.unsloth_seen or "Unsloth" in line
    if w.ended_at and w.run_s is not None and started_at:
        w.load_s = w.ended_at - w.run_s - started_at
    return w


def cell_phases(notebook) -> dict[str, float]:
    """Wall seconds of each code cell that ran (nbclient records when each started and replied)."""
    out = {}
    for cell in notebook.cells:
        timing = cell.get("metadata", {}).get("execution", {})
        start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
        name = next((n for n, mark in CELLS.items() if cell.source.lstrip().startswith(mark)), None)
        if cell.cell_type == "code" and name and start and end:
            out[name] = (datetime.fromisoformat(end.replace("Z", "+00:00"))
                         - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()
    return out


def cell_end(notebook, name: str) -> float | None:
    for cell in notebook.cells:
        if cell.source.lstrip().startswith(CELLS[name]):
            end = cell.get("metadata", {}).get("execution", {}).get("shell.execute_reply")
            return datetime.fromisoformat(end.replace("Z", "+00:00")).timestamp() if end else None
    return None


class SmiSampler(threading.Thread):
    """Max memory.used per GPU (all of a worker's process on its card, CUDA context included)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.max_mib: dict[int, float] = {}
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(2.0):
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=index,memory.used", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=30).stdout
            except (OSError, subprocess.SubprocessError):
                return
            for line in out.splitlines():
                index, used = (x.strip() for x in line.split(","))
                self.max_mib[int(index)] = max(self.max_mib.get(int(index), 0.0), float(used))


def gpu_lines() -> list[str]:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,name,memory.total,driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def smallest_tasks(challenges: Path, n: int) -> dict:
    """The n smallest tasks of the file (dry-run's rule: fewest cells), as the test file's raw JSON."""
    from arc25.commands.dry_run import choose_tasks
    from arc25.tasks import load_tasks

    raw = json.loads(challenges.read_text())
    return {t: raw[t] for t in choose_tasks(load_tasks(challenges), n)}


def kernel_env(args, inputs: Path, work: Path, jupyter: Path, run_args: list[str], left_s: float) -> dict[str, str]:
    """The notebook's parameters (its ARC25_* variables) and a clean pip; arc25_src off the PYTHONPATH (the
    notebook installs arc25 from its wheel)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PIP_FIND_LINKS", "PIP_CONSTRAINT",
                                                              "KAGGLE_IS_COMPETITION_RERUN")}
    src = str(REPO / "arc25_src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                        if p and Path(p).resolve() != Path(src).resolve())
    env.update(JUPYTER_PATH=str(jupyter), PIP_CONFIG_FILE=os.devnull, ARC25_INPUT=str(inputs), ARC25_WORK=str(work),
               ARC25_RUN_ARGS=" ".join(f"--set {s}" for s in run_args), ARC25_MIN_RUN_S="10" if args.cpu_smoke else "60")
    if args.mode == "commit":
        env.update(ARC25_SELF_CHECK_TASKS=str(args.self_check_tasks),
                   ARC25_SELF_CHECK_S=f"{max(30.0, left_s - NOTEBOOK_AFTER_RUN_S):.0f}")
    else:
        env.update(KAGGLE_IS_COMPETITION_RERUN="True", ARC25_TIME_BUDGET_S=f"{max(60.0, left_s - 20):.0f}",
                   ARC25_RESERVE_S=str(args.reserve_s))
    return env


def execute(path: Path, stage: Path, kernel: str, env: dict[str, str], timeout: float):
    """Run the notebook; returns (executed notebook, error or None)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    notebook = nbformat.read(path, as_version=4)
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        NotebookClient(notebook, timeout=timeout, kernel_name=kernel,
                       resources={"metadata": {"path": str(stage)}}).execute()
        return notebook, None
    except CellExecutionError as exc:
        return notebook, str(exc).strip().splitlines()[-1][:300]
    except Exception as exc:  # a timeout or a dead kernel: the figures so far still count
        return notebook, f"{type(exc).__name__}: {exc}"[:300]
    finally:
        os.environ.clear()
        os.environ.update(saved)


def collect(args, notebook, error, started: float, work: Path, test_file: Path, run_args: list[str],
            smi: SmiSampler) -> Report:
    from arc25.submission import validate_submission
    from arc25.tasks import load_tasks

    text = "".join(o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))
    run_dir = work / ("self-check" if args.mode == "commit" else "run")
    run = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
    workers = []
    for log in sorted((run_dir / "workers").glob("worker-*.log")):
        index = int(log.stem.split("-")[1])
        status_path = log.with_name(f"worker-{index}.status.json")
        status = json.loads(status_path.read_text()) if status_path.is_file() else {}
        w = parse_worker(index, log.read_text(errors="replace"), status, run.get("started_at"))
        device = (run.get("devices") or [None] * (index + 1))[index]
        if device is not None and str(device).isdigit() and int(device) in smi.max_mib:
            w.smi_max_gib = smi.max_mib[int(device)] / 1024
        workers.append(w)
    submission_path = work / "submission.json"
    submission = json.loads(submission_path.read_text()) if submission_path.is_file() else None
    tasks = load_tasks(test_file)
    valid = submission is not None and validate_submission(submission, tasks) == []
    ends = [w.ended_at for w in workers if w.ended_at]
    run_end = cell_end(notebook, "run + merge + validate")
    found = re.search(r"arc25 \d[\w.]* from (\S+)", text)
    return Report(args.mode, "; ".join(gpu_lines()) or "no GPU (CPU smoke)", run_args, time.time() - started, error,
                  cell_phases(notebook), (run.get("config") or {}).get("model", {}).get("backend"), valid,
                  len(submission or {}), len(tasks), "submission.json: VALID" in text,
                  found.group(1) if found else None, workers,
                  run_end - max(ends) if run_end and ends else None)


def fmt(value, spec: str = ".1f", unit: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


def table(r: Report) -> str:
    rows = [("mode", r.mode), ("machine", r.machine), ("overrides (ARC25_RUN_ARGS)", " ".join(r.run_args)),
            ("notebook error", r.error or "none"),
            ("submission", f"{'VALID' if r.valid else 'INVALID'}: {r.submission_tasks} of {r.test_tasks} test tasks; "
                           f"notebook printed VALID: {'yes' if r.notebook_says_valid else 'no'}"),
            ("arc25 imported from", r.arc25_from or "-"),
            ("engine (run.json model.backend)", r.backend or "-"),
            ("notebook wall s", f"{r.notebook_s:.0f}")]
    rows += [(f"cell: {name} s", f"{s:.1f}") for name, s in r.phases.items()]
    rows.append(("after the last worker ended: merge, validate (report) s", fmt(r.after_workers_s)))
    for w in r.workers:
        rows += [(f"worker {w.index}: load s (start, imports, model, CUDA graphs)", fmt(w.load_s)),
                 (f"worker {w.index}: run s (loaded to end) / generate s / train s",
                  f"{fmt(w.run_s)} / {fmt(w.generate_s)} / {fmt(w.train_s)}"),
                 (f"worker {w.index}: engine busy / tokens/s", f"{fmt(w.busy and 100 * w.busy, '.0f', '%')} / "
                                                             f"{fmt(w.tokens_per_s, '.0f')}"),
                 (f"worker {w.index}: GPU peak allocated / device used / nvidia-smi max (GiB)",
                  f"{fmt(w.peak_allocated_gib, '.2f')} / {fmt(w.device_used_gib, '.2f')} / "
                  f"{fmt(w.smi_max_gib, '.2f')}"),
                 (f"worker {w.index}: unsloth loaded / engine lines", f"{'yes' if w.unsloth_seen else 'no'} / "
                                                                     f"{' | '.join(w.engine_lines) or '-'}")]
    width = max(len(k) for k, _ in rows)
    return "\n".join(["| what | value |", "|---|---|"] + [f"| {k.ljust(width)} | {v} |" for k, v in rows])


def pack(dest: Path) -> int:
    """Here: the evaluation files the device needs and a small wheels dataset for Python 3.12."""
    from importlib.metadata import version

    candidates = [Path(os.environ["ARC25_DATA"])] if os.environ.get("ARC25_DATA") else []
    candidates += [REPO.parent / "shared" / "data", REPO.parents[1] / "shared" / "data"]  # a worktree: ../../shared
    shared = next(c for c in candidates if c.is_dir()) / "arc-prize-2025"
    dest.mkdir(parents=True, exist_ok=True)
    for name in EVAL_FILES:
        shutil.copyfile(shared / name, dest / name)
    requirements = dest / "requirements-small.txt"  # pure Python, no torch: the GPU stack comes from the packs
    requirements.write_text("".join(f"{n}=={version(n)}\n" for n in ("filelock", "tqdm")))
    proc = subprocess.run([sys.executable, "-m", "arc25", "wheels", "--out", str(dest / "wheelhouse"),
                           "--requirements", str(requirements), "--python-version", "3.12"], cwd=REPO,
                          env=dict(os.environ, PIP_CONFIG_FILE=os.devnull))
    return proc.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["commit", "rerun", "pack"])
    ap.add_argument("dest", nargs="?", type=Path, help="pack: the folder (.whl/nb)")
    ap.add_argument("--model", type=Path, help="the model folder (default with --cpu-smoke: the tiny model)")
    ap.add_argument("--eval", type=Path, default=REPO / ".whl" / "nb", help="folder with the ARC-AGI-2 evaluation files")
    ap.add_argument("--wheelhouse", type=Path, help="the wheels dataset's wheelhouse (default: EVAL/wheelhouse)")
    ap.add_argument("--stage", type=Path, default=Path(os.environ.get("ARC25_STAGE", "/tmp")))
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")))
    ap.add_argument("--end-by", type=float, help="epoch seconds the notebook must end by (the device call's end)")
    ap.add_argument("--budget-s", type=float, default=400, help="the notebook's time from now, at most (400)")
    ap.add_argument("--tasks", type=int, help=f"test-file tasks (default: {TASKS_PER_GPU} per GPU)")
    ap.add_argument("--self-check-tasks", type=int, default=TASKS_PER_GPU)
    ap.add_argument("--reserve-s", type=float, default=45, help="rerun: the notebook's RESERVE_S")
    ap.add_argument("--fp8", action="store_true", help="add unsloth.weights=fp8")
    ap.add_argument("--set", action="append", default=[], help="another override (section.key=value)")
    ap.add_argument("--cpu-smoke", action="store_true", help="the tiny model on CPU, HF backend")
    args = ap.parse_args()
    if args.mode == "pack":
        return pack(args.dest or REPO / ".whl" / "nb")
    started = time.time()
    end_by = min(args.end_by or float("inf"), started + args.budget_s)
    stage = args.stage / f"nb-{args.mode}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    args.out.mkdir(parents=True, exist_ok=True)
    gpus = gpu_lines()
    from arc25.config import Config

    if args.cpu_smoke:
        from arc25.devmodels.tiny_model import tiny_model_path

        model, run_args = args.model or tiny_model_path(args.stage / "tiny-cache"), list(TINY_RUN_ARGS)
    else:
        model, run_args = args.model, [CAP]
        if Config().model.backend == "hf":  # until the default engine is chosen by the machine (issue 21, item 1)
            run_args.append("model.backend=unsloth")
            print("the default engine is 'hf' on this branch: adding model.backend=unsloth", flush=True)
    run_args += (["unsloth.weights=fp8"] if args.fp8 else []) + args.set
    if model is None:
        ap.error("--model is required without --cpu-smoke")
    wheelhouse = args.wheelhouse or args.eval / "wheelhouse"
    test_tasks = smallest_tasks(args.eval / EVAL_FILES[0], args.tasks or TASKS_PER_GPU * max(1, len(gpus)))
    t0 = time.time()
    build_env = dict(os.environ, PIP_CONFIG_FILE=os.devnull)
    inputs = stage / "input"
    test_file = build_kaggle_input(inputs, test_tasks, model, eval_challenges=args.eval / EVAL_FILES[0],
                                   eval_solutions=args.eval / EVAL_FILES[1],
                                   wheelhouse=wheelhouse if wheelhouse.is_dir() else None, link_model=True,
                                   env=build_env, code_wheels=sorted(wheelhouse.glob("arc25-*.whl")))
    python = layered_venv(stage / "venv")
    jupyter = kernel_spec(stage, python)
    print(f"tree and kernel venv built in {time.time() - t0:.0f} s under {stage}; {len(test_tasks)} test tasks; "
          f"wheels dataset: {wheelhouse if wheelhouse.is_dir() else 'none'}", flush=True)
    work = stage / "working"
    left = end_by - time.time()
    env = kernel_env(args, inputs, work, jupyter, run_args, left)
    smi = SmiSampler()
    smi.start()
    notebook, error = execute(REPO / "kaggle_notebook.ipynb", stage, "arc25-kaggle-venv", env, timeout=int(max(60, left)))
    smi.halt.set()
    import nbformat

    nbformat.write(notebook, args.out / f"notebook-{args.mode}.ipynb")
    report = collect(args, notebook, error, started, work, test_file, run_args, smi)
    text = table(report)
    print(text, flush=True)
    (args.out / f"notebook-{args.mode}.md").write_text(text + "\n")
    (args.out / f"notebook-{args.mode}.json").write_text(json.dumps(asdict(report), indent=2, default=str))
    run_dir = work / ("self-check" if args.mode == "commit" else "run")
    subprocess.run(["tar", "czf", str(args.out / f"notebook-{args.mode}-run.tgz"), "-C", str(work),
                    "--exclude", "predictions.jsonl.gz", run_dir.name, "submission.json"], check=False)
    return 0 if report.valid and not error else 1


if __name__ == "__main__":
    sys.exit(main())
