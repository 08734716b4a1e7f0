"""Push the notebook to Kaggle (`kaggle kernels push`) with kernel-metadata.json filled in from the config.

The kernel folder (--out, default a temporary one) holds only the notebook, without
outputs, and its metadata: id kaggle.username/kaggle.notebook, GPU on, internet off,
machine_shape kaggle.machine_shape (NvidiaL4: 4 x L4), the image pinned, the
competition, the code and wheels datasets and the model as sources (kaggle.model_sources:
a Kaggle model owner/model/framework/variation/version, or a dataset owner/slug). The committed
kernel-metadata.json gives the rest (title, privacy). Same rules as arc25 upload.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from arc25.config import add_config_arguments, config_from_args
from arc25.errors import UserError
from arc25.kaggle.cli_runner import PLACEHOLDER_USER, require_username, run_kaggle
from arc25.kaggle.kernel import KERNEL_METADATA_NAME, NOTEBOOK_NAME, stage_kernel

HELP = "push the Kaggle notebook with its kernel-metadata.json (kaggle kernels push)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--notebook", default=NOTEBOOK_NAME, metavar="FILE", help=f"default: {NOTEBOOK_NAME}")
    parser.add_argument("--metadata", default=KERNEL_METADATA_NAME, metavar="FILE",
                        help=f"template metadata (default: {KERNEL_METADATA_NAME})")
    parser.add_argument("--out", metavar="DIR", help="stage the kernel folder here (default: a temporary folder)")
    parser.add_argument("--no-run", action="store_true", help="save the version without running it")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    kaggle = config_from_args(args).kaggle
    require_username(kaggle.username)
    if any(source.startswith(PLACEHOLDER_USER + "/") for source in kaggle.model_sources):
        raise UserError("kaggle.model_sources still names the placeholder owner: set it to the BARC model on Kaggle "
                        "(owner/model/framework/variation/version, or owner/slug for a dataset)")
    with tempfile.TemporaryDirectory(prefix="arc25-kernel-") as tmp:
        out = stage_kernel(Path(args.out or Path(tmp) / "kernel"), Path(args.notebook), Path(args.metadata), kaggle)
        return run_kaggle(["kernels", "push", "-p", str(out), *(["--no-run"] if args.no_run else [])])
