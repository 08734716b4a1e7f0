"""Submit a version of the notebook to the code competition (`kaggle competitions submit -k -v -f`).

    arc25 submit --version 3 -m "search and learn, 4 epochs"

Kaggle reruns that notebook version on the hidden test file (KAGGLE_IS_COMPETITION_RERUN
set) and scores its submission.json. Same rules as arc25 upload.
"""

from __future__ import annotations

import argparse

from arc25.config import add_config_arguments, config_from_args
from arc25.errors import UserError
from arc25.kaggle.cli_runner import require_username, run_kaggle

HELP = "submit a notebook version to the code competition (kaggle competitions submit)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", type=int, required=True, metavar="N", help="the notebook version to submit")
    parser.add_argument("-m", "--message", metavar="MSG", help="submission description (default: arc25 version N)")
    parser.add_argument("--file", default="submission.json", metavar="NAME",
                        help="the output file the notebook writes (default: submission.json)")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    kaggle = config_from_args(args).kaggle
    require_username(kaggle.username)
    if args.version < 1:
        raise UserError(f"--version {args.version}: notebook versions start at 1")
    return run_kaggle(["competitions", "submit", kaggle.competition, "-k", f"{kaggle.username}/{kaggle.notebook}",
                       "-v", str(args.version), "-f", args.file, "-m", args.message or f"arc25 version {args.version}"])
