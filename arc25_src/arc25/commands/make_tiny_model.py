"""Write a tiny random Llama-3.1-architecture model folder (for tests and benchmarks).

The folder loads like the real BARC 8B model: same special-token ids, chat template,
pad and eos settings, but 2 layers of width 128 and a small BPE tokenizer. Nothing
is downloaded; the same seed gives the same files.
"""

from __future__ import annotations

import argparse
import logging

from arc25.errors import writable_dir

HELP = "write a tiny random Llama-3.1-style model folder for tests"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="OUT", help="output folder (created)")
    parser.add_argument("--seed", type=int, default=0, help="weights and tokenizer seed (default 0)")


def run(args: argparse.Namespace) -> int:
    writable_dir(args.out, "the model folder")  # one clear line, not a traceback after the model is built
    from arc25.tiny_model import (
        make_tiny_model,  # lazy: keeps `arc25 --help` free of torch imports
    )

    path = make_tiny_model(args.out, seed=args.seed)
    log.info("tiny model ready: %s", path)
    return 0
