"""Stage a Kaggle dataset folder for `arc25 upload`: metadata, files, and a manifest (size and sha256 of each).

Two datasets, so the multi-GB wheelhouse goes up once and the code as often as it changes:

    arc25 package --out dist/arc25-code                              # the arc25 wheel
    arc25 package --out dist/arc25-wheels --wheels dist/wheelhouse   # the GPU stack (from arc25 wheels)

The id is --id owner/slug, else kaggle.username with kaggle.code_dataset or
kaggle.wheels_dataset from the config. Anything that looks like a credential
(kaggle.json, access_token*, credentials.json, .env, a .kaggle folder, a file holding
a Kaggle token or the value of KAGGLE_KEY) stops the staging with an error naming it;
the folder holds nothing but what its manifest lists.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from arc25 import __version__
from arc25.config import add_config_arguments, config_from_args
from arc25.kaggle.cli_runner import PLACEHOLDER_USER
from arc25.kaggle.dataset import dataset_metadata, stage_dataset, wheelhouse_files
from arc25.kaggle.wheelhouse import build_arc25_wheel

HELP = "stage the code dataset (arc25 wheel) or, with --wheels, the wheelhouse dataset for upload"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="the dataset folder (new, empty, or staged "
                        "before)")
    parser.add_argument("--wheels", metavar="DIR", help="stage this wheelhouse (made by arc25 wheels) instead of "
                        "the code")
    parser.add_argument("--id", metavar="OWNER/SLUG", help="dataset id (default: from the [kaggle] config)")
    parser.add_argument("--title", metavar="T", help="dataset title, 6 to 50 characters (default: from the slug)")
    parser.add_argument("--license", metavar="NAME", help="the one licence (default: kaggle.dataset_license)")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    kaggle = config_from_args(args).kaggle
    kind = "wheels" if args.wheels else "code"
    dataset_id = args.id or f"{kaggle.username}/{kaggle.wheels_dataset if args.wheels else kaggle.code_dataset}"
    if dataset_id.startswith(PLACEHOLDER_USER + "/"):
        log.warning("dataset id %s: set kaggle.username (or --id) before uploading", dataset_id)
    title = args.title or dataset_id.split("/")[-1]
    metadata = dataset_metadata(dataset_id, title, args.license or kaggle.dataset_license)
    out = Path(args.out)
    if args.wheels:
        manifest = stage_dataset(out, kind, wheelhouse_files(Path(args.wheels)), metadata, __version__)
    else:
        with tempfile.TemporaryDirectory(prefix="arc25-wheel-") as tmp:
            wheel = build_arc25_wheel(Path(tmp))
            manifest = stage_dataset(out, kind, [wheel], metadata, __version__)
    print(manifest.describe())
    print(f"staged in {out}; upload with: arc25 upload {out} --new   (later versions: arc25 upload {out} -m MSG)")
    return 0
