"""The decode roofline (`arc25.throughput`) checked against measured workloads, and what it predicts for an L4.

    python bench/check_roofline.py RUN.json [RUN.json ...] [--card h200] [--target l4]

Each RUN.json is `bench/gpu_unsloth_vllm.py --workload`'s output (`gpu_kaggle_shape.sh fp8`): vLLM's own
count of the sequences running per engine step (not the requests waiting, which a worker's engine summary
also counts), the prompts' lengths and the tokens decoded. For each: the roofline at the card it ran on,
measured / predicted, the step time the roofline misses, and the same load on the target card, at the
roofline and with that measured step time added (a prediction, labelled so).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "arc25_src"))

from arc25.memory_plan import GIB, ModelShape, weight_bytes  # noqa: E402
from arc25.throughput import CARDS, Measured, check, decode_tokens_per_s, measured_load, step_seconds  # noqa: E402


def row(path: Path, card: str, target: str) -> list[str]:
    run = json.loads(path.read_text())
    work, shape = run["workload"], ModelShape()  # the 8B shape the bench builds
    fp8 = run["weights"] == "fp8"
    measured = Measured(work["tok_per_s"], work["running_mean"],
                        statistics.mean(t["prompt_tokens"] for t in work["tasks"]),
                        work["new_tokens"] / max(1, work["completions"]))
    kv_fp8 = bool(run["args"].get("fp8_kv"))
    load = measured_load(measured, shape, weight_bytes(shape, fp8=fp8), shape.kv_bytes_per_token(kv_fp8), fp8)
    c = check(CARDS[card], measured, load)
    on_target = CARDS[target]
    with_overhead = load.sequences / (step_seconds(on_target, load) + max(0.0, c.overhead_s))
    return [run["weights"], f"{load.weight_bytes / GIB:.2f}", f"{run['kv_tokens']:,}", f"{load.sequences:.1f}",
            f"{load.context_tokens:.0f}", f"{measured.tokens_per_s:.0f}", f"{c.predicted_tokens_per_s:.0f}",
            f"{c.ratio:.2f}", f"{1000 * c.roofline_step_s:.1f} / {1000 * c.measured_step_s:.1f}",
            f"{decode_tokens_per_s(on_target, load):.0f}", f"{with_overhead:.0f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--card", default="h200", choices=sorted(CARDS), help="the card the runs ran on")
    parser.add_argument("--target", default="l4", choices=sorted(CARDS), help="the card to predict for")
    args = parser.parse_args()
    head = ["weights", "GiB", "KV tokens", "running", "context", "measured tok/s", f"roofline {args.card}",
            "measured / roofline", "step ms roofline / measured", f"{args.target} roofline (PREDICTION)",
            f"{args.target} + measured overhead (PREDICTION)"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for path in args.runs:
        print("| " + " | ".join(row(path, args.card, args.target)) + " |")


if __name__ == "__main__":
    main()
