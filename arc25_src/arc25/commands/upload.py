"""Upload a dataset folder staged by `arc25 package` with the kaggle CLI (always `-r zip`).

    arc25 upload dist/arc25-code --new          # kaggle datasets create -p DIR -r zip
    arc25 upload dist/arc25-code -m "fix X"     # kaggle datasets version -p DIR -r zip -m MSG

The folder is checked first (exactly the manifest's files, no credential). The kaggle
CLI's output is streamed with any token masked, and its exit status is this command's.
Needs the kaggle CLI (pip install -e ".[kaggle]") and its credentials.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from arc25.kaggle.cli_runner import require_username, run_kaggle
from arc25.kaggle.dataset import check_staged

HELP = "upload a staged dataset folder with the kaggle CLI (datasets create/version, -r zip)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", metavar="DIR", help="a folder staged by arc25 package")
    parser.add_argument("--new", action="store_true", help="create the dataset (first upload)")
    parser.add_argument("-m", "--message", metavar="MSG", help="version notes (default: arc25 VERSION, staged at T)")


def upload_args(folder: Path, new: bool, message: str) -> list[str]:
    # -r zip: without it the CLI skips sub-folders silently
    if new:
        return ["datasets", "create", "-p", str(folder), "-r", "zip"]
    return ["datasets", "version", "-p", str(folder), "-r", "zip", "-m", message]


def run(args: argparse.Namespace) -> int:
    folder = Path(args.folder)
    manifest = check_staged(folder)
    require_username(manifest.id.split("/")[0], f"{folder}/dataset-metadata.json id {manifest.id!r}: the owner")
    message = args.message or f"arc25 {manifest.arc25_version}, staged {manifest.created_at}"
    return run_kaggle(upload_args(folder, args.new, message))
