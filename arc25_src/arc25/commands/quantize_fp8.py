"""Write an FP8 copy of a model folder, for FP8 weights on an L4 (see arc25.fp8_checkpoint):

    arc25 quantize-fp8 --model DIR --out DIR-fp8      # CPU is enough (the 8B: ~16 GB read, ~8.5 GB written)
    arc25 package --out dist/barc-fp8 --model DIR-fp8  # then as any model folder

Every decoder linear weight becomes float8_e4m3fn with a float32 scale per 128 x 128 block (the
block FP8 format transformers and vLLM read, config.json's quantization_config says so); embeddings,
norms and the LM head stay bf16. `arc25 run` with model.path=DIR-fp8 and the unsloth engine then
loads it as is, on an L4 too, where unsloth will not quantize at load (it does from an H100). `arc25 run`'s
workers make such a copy themselves on an L4 when unsloth.weights resolves to FP8 (the default there): this
command makes it once, ahead, e.g. to upload it as the model dataset.
The model folder gets the checks `arc25 run` makes; the copy appears complete or not at all.
"""

from __future__ import annotations

import argparse

from arc25.fp8_checkpoint import quantize_checkpoint

HELP = "write a block-FP8 copy of a model folder (FP8 weights on an L4 with the unsloth engine)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="DIR", help="a bf16 model folder (safetensors)")
    parser.add_argument("--out", required=True, metavar="DIR", help="the FP8 copy (a new or empty folder)")


def run(args: argparse.Namespace) -> int:
    print(quantize_checkpoint(args.model, args.out).describe())
    return 0
