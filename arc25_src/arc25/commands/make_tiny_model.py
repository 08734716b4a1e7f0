"""Write a tiny Llama-3.1-architecture model folder (for tests, benchmarks and CPU runs).

The folder loads like the real BARC 8B model: same special-token ids, chat template,
pad and eos settings, but a few small layers and a small BPE tokenizer. Nothing is
downloaded; the same seed gives the same files.

Without --warm the weights are random (2 layers of width 128): the tests' model.
With --warm it is a larger tiny model trained on CPU for a few minutes to answer BARC
prompts with programs of the DSL program family (see arc25.devmodels.warm_model), then sampled
on real ARC evaluation prompts it never saw and run by the sandboxed executor: the
valid-code and valid-output rates are printed (--evaluate 0 skips that).
With --reader it is the reader (arc25.devmodels.reader_model): a larger model trained from scratch,
on the GPU when there is one, to read the train outputs; --sizes trains several sizes
into OUT/SIZE and writes OUT/curve.json (the measured size curve). --smoke: a CPU-sized
reader in seconds (the plumbing, not a model that reads).
"""

from __future__ import annotations

import argparse
import logging

from arc25.errors import writable_dir

HELP = ("write a tiny Llama-3.1-style model folder (random, --warm: trained to write DSL programs, "
        "--reader: trained on a GPU to read the train outputs)")

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="OUT", help="output folder (created)")
    parser.add_argument("--seed", type=int, default=0, help="weights and tokenizer seed (default 0)")
    parser.add_argument("--warm", action="store_true",
                        help="train it (CPU, a few minutes) to write DSL programs for BARC prompts")
    reader = parser.add_argument_group("the reader (--reader)")
    reader.add_argument("--reader", action="store_true", help="train the reader (GPU when there is one)")
    reader.add_argument("--size", help="reader size (smoke, xs, s, m, l, xl; default m, with --smoke: smoke)")
    reader.add_argument("--sizes", help="comma-separated sizes: train each into OUT/SIZE, write OUT/curve.json")
    reader.add_argument("--steps", type=int, default=0, help="optimizer steps (default 0: as many as --minutes)")
    reader.add_argument("--minutes", type=float, default=2.0, help="training minutes per size when --steps is 0")
    reader.add_argument("--pool", type=int, help="training examples generated (default 80000)")
    reader.add_argument("--device", default="auto", help="auto (cuda if there is one), cuda or cpu")
    reader.add_argument("--smoke", action="store_true", help="CPU-sized settings: seconds, for the plumbing")
    parser.add_argument("--evaluate", type=int, default=16, metavar="N",
                        help="with --warm: sample 2 programs for each of the first N ARC evaluation tasks and "
                             "print the valid-code and valid-output rates (default 16; 0: skip)")
    parser.add_argument("--no-progress", action="store_true", help="log progress lines instead of a progress bar")


def run(args: argparse.Namespace) -> int:
    writable_dir(args.out, "the model folder")  # one clear line, not a traceback after the model is built
    # lazy imports: keep `arc25 --help` free of torch
    if args.reader:
        return _reader(args)
    if not args.warm:
        from arc25.devmodels.tiny_model import make_tiny_model

        path = make_tiny_model(args.out, seed=args.seed)
        log.info("tiny model ready: %s", path)
        return 0

    from arc25.devmodels.warm_model import WarmSettings, evaluate_model, make_warm_model

    path = make_warm_model(args.out, WarmSettings(seed=args.seed), progress=not args.no_progress)
    print(f"warm model ready: {path}", flush=True)
    if args.evaluate > 0:
        print(evaluate_model(path, n_tasks=args.evaluate).describe())
    return 0


def _reader(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from arc25.errors import UserError
    from arc25.devmodels.reader_model import SIZES, SMOKE, ReaderSettings, curve_table, make_reader_curve

    sizes = args.sizes.split(",") if args.sizes else [args.size or ("smoke" if args.smoke else "m")]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        raise UserError(f"--size/--sizes: unknown size {unknown[0]!r} (known: {', '.join(SIZES)})")
    settings = replace(ReaderSettings(seed=args.seed, size=sizes[0], steps=args.steps, minutes=args.minutes,
                                      device=args.device), **(SMOKE if args.smoke else {}))
    if args.pool:
        settings = replace(settings, pool=args.pool)
    points = make_reader_curve(args.out, sizes, settings, progress=not args.no_progress, single=not args.sizes)
    print(curve_table(points), flush=True)
    print(f"reader ready: {args.out}" + (" (one folder per size, curve.json)" if args.sizes else ""), flush=True)
    return 0
