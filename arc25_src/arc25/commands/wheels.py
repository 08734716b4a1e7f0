"""Build the offline wheelhouse for Kaggle: every wheel of the pinned GPU stack plus arc25's own wheel.

Downloads wheels only (--only-binary=:all:) for the given Python and platform (Kaggle's
image: 3.12 since late 2025, 3.11 before; glibc 2.35), builds the arc25 wheel from this
checkout into the same folder, then proves the set installs with no index at all:
pip resolves the requirements and arc25 against the folder alone, for that target.
pip evaluates environment markers for the Python it runs on, whatever --python-version
says, so the requirements' markers are evaluated for the target and pip runs on a Python
of the target's version (--python, else this one, python3.X on PATH or pyenv's).
Prints the total size and the ten largest wheels; wheelhouse.json records it all.

    arc25 wheels --out dist/wheelhouse-312 --python-version 3.12
    arc25 package --out dist/arc25-wheels --wheels dist/wheelhouse-312   # then arc25 upload

The folder is for upload, not for the repository (wheels/*.whl is gitignored).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from arc25.kaggle.wheelhouse import DEFAULT_PLATFORM, DEFAULT_PYTHON, REQUIREMENTS_NAME, Target, build_wheelhouse

HELP = "download the pinned GPU stack's wheels and build arc25's wheel into one folder, checked to install offline"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="the wheelhouse folder (created)")
    parser.add_argument("--python-version", default=DEFAULT_PYTHON, metavar="3.X",
                        help=f"the Kaggle image's Python (default: {DEFAULT_PYTHON})")
    parser.add_argument("--platform", default=DEFAULT_PLATFORM, metavar="TAG",
                        help=f"the newest platform tag the image supports (default: {DEFAULT_PLATFORM}; older "
                             "manylinux tags are included)")
    parser.add_argument("--requirements", default=f"wheels/{REQUIREMENTS_NAME}", metavar="FILE",
                        help=f"pinned requirements (default: wheels/{REQUIREMENTS_NAME} of the checkout)")
    parser.add_argument("--python", metavar="PATH",
                        help="a Python of the target's version with pip, to download and check with (default: this "
                             "one if it is that version, else python3.X on PATH, else pyenv's newest 3.X)")
    parser.add_argument("--no-download", action="store_true",
                        help="use the wheels already in DIR: rebuild arc25's wheel and check offline only")


def run(args: argparse.Namespace) -> int:
    target = Target(args.python_version, args.platform)
    report = build_wheelhouse(Path(args.out), Path(args.requirements), target, download_wheels=not args.no_download,
                              python=args.python)
    print(report.describe())
    return 0 if report.offline_ok else 1
