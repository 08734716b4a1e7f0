"""GPU check of a pre-quantized FP8 checkpoint (`arc25 quantize-fp8`) through unsloth fast_inference + vLLM.

The L4 route to FP8 weights (arc25.fp8_checkpoint): unsloth 2026.10.9 quantizes at load only on compute
capability >= 9.0, so an L4 (8.9) needs the weights FP8 on disk. This script, on whatever GPU it gets:

  1. quantizes the 8B shape (bench/gpu_unsloth_vllm.make_8b, bf16) with `arc25 quantize-fp8` (timed, CPU);
  2. makes unsloth's on-the-fly gate (`_get_fp8_mode_and_check_settings`, the one that refuses an L4) raise
     if anything calls it: the load must not reach it;
  3. --as-l4: makes both engines take the kernels an L4 would take: vLLM's block-FP8 kernel list without
     DeepGEMM and CUTLASS block FP8 (sm_90 only; FP8 Marlin refuses cc >= 89), so vLLM runs
     TritonFp8BlockScaledMMKernel; unsloth's trainer with its Triton block matmul (what
     `_prefer_triton_block_matmul_at` picks on sm_89) instead of torchao's;
  4. runs bench/gpu_unsloth_vllm.py's measurement on that folder (the arguments after `--`: load through
     arc25's unsloth backend, train on the longest prompt, the K-task workload, parity against the bf16
     reference that a bf16 run of that script wrote), and after the load records what was loaded: vLLM's
     quant method and kernel per linear layer, weight dtypes, whether the trainer's FP8 weights are
     vLLM's own tensors (same storage), the scales' shapes, memory.

What an H200 (sm_90) run shows: the format loads through unsloth's fast_inference path with
load_in_fp8=False and without the on-the-fly gate; vLLM serves it with per-task LoRAs; unsloth shares
the FP8 tensors and trains LoRAs through them; with --as-l4, the Triton kernels an L4 would use compute
the decode, prefill and the training forward; memory, KV cache and parity (KL against bf16) as measured
for the on-the-fly FP8. What it cannot show: anything that depends on sm_89 itself: that Triton compiles
its fp8e4nv kernels for sm_89 (it does from 8.9, per its sources), vLLM's kernel choice made from a real
8.9 (here forced through VLLM_DISABLED_KERNELS), the L4's speed (bandwidth 300 GB/s, see arc25 doctor's
prediction), its CUDA-graph memory, and unsloth's scale orientation on an L4 (no transpose on either with
vLLM 0.26, vllm_utils._get_vllm_state_dict).

Run (the set of bench/gpu_kaggle_shape.sh installed): see docs/benchmarks.md, "FP8 checkpoint".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "arc25_src"))
sys.path.insert(0, str(HERE))

# sm_90-only block-FP8 kernels in vLLM 0.26 (kernels/linear/__init__.py _POSSIBLE_FP8_BLOCK_KERNELS): off, as on an L4
L4_DISABLED_VLLM_KERNELS = ("FlashInferFp8DeepGEMMDynamicBlockScaledKernel", "DeepGemmFp8BlockScaledMMKernel",
                            "CutlassFp8BlockScaledMMKernel")


def forbid_on_the_fly_gate() -> None:
    """unsloth's H100-only gate raises if called: a pre-quantized load must never reach it."""
    import unsloth.models.llama as llama
    import unsloth.models.loader as loader
    import unsloth.models.loader_utils as loader_utils

    def gate(*args, **kwargs):
        raise AssertionError("unsloth's on-the-fly FP8 gate (_get_fp8_mode_and_check_settings) was called: on an L4 "
                             "this load would fail")

    for module in (loader_utils, loader, llama):
        module._get_fp8_mode_and_check_settings = gate


def l4_training_kernels() -> str:
    """unsloth's trainer takes its Triton block-FP8 matmul, as on sm_89."""
    import unsloth.kernels.fp8 as fp8

    fp8.fp8_block_matmul = fp8.w8a8_block_fp8_matmul_triton
    return fp8.fp8_block_matmul.__name__


def vllm_model(llm):
    engine = llm.llm_engine
    return engine.engine_core.engine_core.model_executor.driver_worker.model_runner.model


def scale_shape(layer) -> str:
    scale = getattr(layer, "weight_scale_inv", None)
    scale = getattr(layer, "weight_scale", None) if scale is None else scale
    return "none" if scale is None else str(tuple(scale.shape))


def inspect_load(loaded, record: dict) -> None:
    """What vLLM and the trainer hold after the load."""
    import torch

    model = vllm_model(loaded.engine.llm)
    layers = {}
    for name, module in model.named_modules():
        base = getattr(module, "base_layer", module)
        method = getattr(base, "quant_method", None)
        weight = getattr(base, "weight", None)
        if method is None or weight is None or not name.startswith("model.layers.0."):
            continue
        layers[name] = {"quant_method": type(method).__name__,
                        "kernel": type(getattr(method, "fp8_linear", None)).__name__,
                        "weight": f"{weight.dtype} {tuple(weight.shape)}",
                        "scale": scale_shape(base)}
    record["vllm_layer0"] = layers
    vllm_ptrs = {p.untyped_storage().data_ptr() for p in model.parameters() if p.dtype == torch.float8_e4m3fn}
    hf = loaded.model.get_base_model()
    fp8_params = [(n, p) for n, p in hf.named_parameters() if p.dtype == torch.float8_e4m3fn]
    shared = sum(p.untyped_storage().data_ptr() in vllm_ptrs for _, p in fp8_params)
    q = hf.model.layers[0].self_attn.q_proj
    q = getattr(q, "base_layer", q)
    record["trainer"] = {"fp8_weights": len(fp8_params), "sharing_vllm_storage": shared,
                         "q_proj": f"{type(q).__name__} {q.weight.dtype} {tuple(q.weight.shape)}",
                         "q_proj_scale": scale_shape(q),
                         "allocated_gib": torch.cuda.memory_allocated() / 1024**3}
    print("LOADED", json.dumps(record, indent=1), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bf16-dir", required=True, help="the 8B shape in bf16 (built by make_8b if missing)")
    ap.add_argument("--fp8-dir", required=True, help="its FP8 copy (made by arc25 quantize-fp8 if missing)")
    ap.add_argument("--as-l4", action="store_true", help="the kernels an L4 would run (see the module doc)")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("bench_args", nargs=argparse.REMAINDER, help="-- then bench/gpu_unsloth_vllm.py's arguments")
    args = ap.parse_args()
    record: dict = {"as_l4": args.as_l4}
    Path(args.out).mkdir(parents=True, exist_ok=True)

    from gpu_unsloth_vllm import make_8b

    make_8b(Path(args.bf16_dir))
    if not (Path(args.fp8_dir) / "config.json").is_file():
        from arc25.fp8_checkpoint import quantize_checkpoint

        t0 = time.time()
        summary = quantize_checkpoint(args.bf16_dir, args.fp8_dir)
        record["quantize"] = {"s": round(time.time() - t0, 1), "summary": summary.describe()}
        print("QUANTIZED", record["quantize"], flush=True)
    if args.as_l4:
        os.environ["VLLM_DISABLED_KERNELS"] = ",".join(L4_DISABLED_VLLM_KERNELS)
        os.environ["VLLM_USE_DEEP_GEMM"] = "0"  # an L4 has no DeepGEMM (Hopper and Blackwell only)
    import arc25.backends.unsloth as backend  # imports unsloth first (CUDA)

    forbid_on_the_fly_gate()
    if args.as_l4:
        record["training_block_matmul"] = l4_training_kernels()
    plain = backend.load_with_unsloth

    def load_and_inspect(config, max_loras):
        loaded = plain(config, max_loras)
        inspect_load(loaded, record)
        (Path(args.out) / "gpu_fp8_checkpoint.json").write_text(json.dumps(record, indent=2, default=str))
        return loaded

    backend.UnslothBackend.__init__.__defaults__ = (load_and_inspect,)  # the loader UnslothBackend() uses

    import gpu_unsloth_vllm

    rest = [a for a in args.bench_args if a != "--"]
    sys.argv = ["gpu_unsloth_vllm.py", "--model-dir", args.fp8_dir, "--fp8", "--out", args.out, *rest]
    code = gpu_unsloth_vllm.main()
    record["bench_exit"] = code
    (Path(args.out) / "gpu_fp8_checkpoint.json").write_text(json.dumps(record, indent=2, default=str))
    return code


if __name__ == "__main__":
    sys.exit(main())
