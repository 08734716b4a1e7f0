"""Write a tiny Llama-3.1-architecture model folder (for tests, benchmarks and CPU runs).

The folder loads like the real BARC 8B model: same special-token ids, chat template,
pad and eos settings, but a few small layers and a small BPE tokenizer. Nothing is
downloaded; the same seed gives the same files.

Without --warm the weights are random (2 layers of width 128): the tests' model.
With --warm it is a larger tiny model trained on CPU for a few minutes to answer BARC
prompts with programs of the DSL program family (see arc25.warm_model), then sampled
on real ARC evaluation prompts it never saw and run by the sandboxed executor: the
valid-code and valid-output rates are printed (--evaluate 0 skips that).
"""

from __future__ import annotations

import argparse
import logging

from arc25.errors import writable_dir

HELP = "write a tiny Llama-3.1-style model folder (random, or --warm: trained to write DSL programs)"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="OUT", help="output folder (created)")
    parser.add_argument("--seed", type=int, default=0, help="weights and tokenizer seed (default 0)")
    parser.add_argument("--warm", action="store_true",
                        help="train it (CPU, a few minutes) to write DSL programs for BARC prompts")
    parser.add_argument("--evaluate", type=int, default=16, metavar="N",
                        help="with --warm: sample 2 programs for each of the first N ARC evaluation tasks and "
                             "print the valid-code and valid-output rates (default 16; 0: skip)")
    parser.add_argument("--no-progress", action="store_true", help="log progress lines instead of a progress bar")


def run(args: argparse.Namespace) -> int:
    writable_dir(args.out, "the model folder")  # one clear line, not a traceback after the model is built
    # lazy imports: keep `arc25 --help` free of torch
    if not args.warm:
        from arc25.tiny_model import make_tiny_model

        path = make_tiny_model(args.out, seed=args.seed)
        log.info("tiny model ready: %s", path)
        return 0

    from arc25.warm_model import WarmSettings, evaluate_model, make_warm_model

    path = make_warm_model(args.out, WarmSettings(seed=args.seed), progress=not args.no_progress)
    print(f"warm model ready: {path}", flush=True)
    if args.evaluate > 0:
        print(evaluate_model(path, n_tasks=args.evaluate).describe())
    return 0
