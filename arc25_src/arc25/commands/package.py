"""Stage a Kaggle dataset folder for `arc25 upload`: metadata, files, and a manifest (size and sha256 of each).

Three datasets: the multi-GB wheelhouse goes up once, the code as often as it changes, and the model
(a downloaded folder, checked as `arc25 run` checks it: config, tokenizer and chat template, every
safetensors shard complete) once:

    arc25 package --out dist/arc25-code                              # the arc25 wheel
    arc25 package --out dist/arc25-wheels --wheels dist/wheelhouse   # the GPU stack (from arc25 wheels)
    arc25 package --out dist/barc-model --model DIR                  # a downloaded model folder

The id is --id owner/slug, else kaggle.username with kaggle.code_dataset,
kaggle.wheels_dataset or (--model) the model folder's name. Anything that looks like a credential
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
from arc25.kaggle.dataset import dataset_metadata, model_files, slug_for, stage_dataset, wheelhouse_files
from arc25.kaggle.wheelhouse import build_arc25_wheel

HELP = "stage the code dataset (arc25 wheel), or the wheelhouse (--wheels) or a model folder (--model), for upload"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="the dataset folder (new, empty, or staged "
                        "before)")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--wheels", metavar="DIR", help="stage this wheelhouse (made by arc25 wheels) instead of "
                      "the code")
    what.add_argument("--model", metavar="DIR", help="stage this downloaded model folder instead of the code")
    parser.add_argument("--id", metavar="OWNER/SLUG", help="dataset id (default: from the [kaggle] config)")
    parser.add_argument("--title", metavar="T", help="dataset title, 6 to 50 characters (default: from the slug)")
    parser.add_argument("--license", metavar="NAME", help="the one licence (default: kaggle.dataset_license)")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    kaggle = config_from_args(args).kaggle
    kind = "wheels" if args.wheels else "model" if args.model else "code"
    slug = {"wheels": kaggle.wheels_dataset, "code": kaggle.code_dataset,
            "model": slug_for(Path(args.model or ".").resolve().name)}[kind]
    dataset_id = args.id or f"{kaggle.username}/{slug}"
    if dataset_id.startswith(PLACEHOLDER_USER + "/"):
        log.warning("dataset id %s: set kaggle.username (or --id) before uploading", dataset_id)
    title = args.title or dataset_id.split("/")[-1]
    metadata = dataset_metadata(dataset_id, title, args.license or kaggle.dataset_license)
    out = Path(args.out)
    if args.wheels or args.model:
        files = wheelhouse_files(Path(args.wheels)) if args.wheels else model_files(Path(args.model))
        manifest = stage_dataset(out, kind, files, metadata, __version__)
    else:
        with tempfile.TemporaryDirectory(prefix="arc25-wheel-") as tmp:
            wheel = build_arc25_wheel(Path(tmp))
            manifest = stage_dataset(out, kind, [wheel], metadata, __version__)
    print(manifest.describe())
    print(f"staged in {out}; upload with: arc25 upload {out} --new   (later versions: arc25 upload {out} -m MSG)")
    return 0
