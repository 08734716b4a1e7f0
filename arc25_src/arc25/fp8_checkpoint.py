"""A pre-quantized FP8 checkpoint: FP8 weights on an L4, where unsloth will not quantize at load.

unsloth 2026.10.9 quantizes a bf16 checkpoint to FP8 at load (`load_in_fp8=True`) only on compute
capability >= 9.0: `_get_fp8_mode_and_check_settings` (unsloth/models/loader_utils.py:4478-4510) raises
"On the fly `load_in_fp8` requires H100 GPUs or after", and the fast_inference loader calls it whenever
`load_in_fp8` is set (unsloth/models/llama.py:4233-4237). An L4 is 8.9. A checkpoint that is already
FP8 takes another path, read from the sources of unsloth/unsloth_zoo 2026.10.9 and vLLM 0.26.0:

- passed with `load_in_fp8=False`, the on-the-fly gate is never called (loader.py:1445-1475 and
  llama.py:4233 both test `load_in_fp8 != False`); the checkpoint's own check,
  `verify_fp8_support_if_applicable` (unsloth/models/_utils.py:9408-9432), accepts
  `quant_method: "fp8"` (block) from compute capability 8.9 ("we allow L4") and refuses only
  `fbgemm_fp8` (per-row) below 9.0;
- vLLM reads `quantization_config` itself (unsloth_zoo vllm_utils.load_vllm passes quantization=None,
  line 5015, and overrides it only when fp8_mode is set, 5104): `Fp8Config` (layers/quantization/fp8.py,
  min capability 7.5) with a weight block picks its block kernel from `_POSSIBLE_FP8_BLOCK_KERNELS`
  (kernels/linear/__init__.py:355-365): DeepGEMM and CUTLASS block FP8 need sm_90
  (`cutlass_scaled_mm_supports_block_fp8`), FP8 Marlin refuses cc >= 89 (scaled_mm/marlin.py:46-53),
  so an L4 runs `TritonFp8BlockScaledMMKernel`; vLLM's LoRA layers wrap any quant method
  (lora/layers/base_linear.py:207);
- unsloth_zoo shares vLLM's FP8 tensors with the trainer: `_get_vllm_state_dict` (vllm_utils.py:1354-1404)
  takes `weight_scale_inv` untransposed on an L4 ("On H100 the scale is transposed vs HF (L4 isn't)";
  vLLM 0.26 has no `maybe_post_process_fp8_weight_block`, so no transpose on either), and
  `convert_vllm_to_huggingface` (~2104-2110, 2241-2254) rebuilds transformers' `FP8Linear` from
  `activation_scheme` and `weight_block_size`;
- unsloth trains LoRAs on `FP8Linear` (unsloth/kernels/fp8.py:1805-1883): forward quantizes the
  activations per 128 and runs a Triton block-FP8 matmul (chosen for sm_89 by
  `_prefer_triton_block_matmul_at`, ~986-998; Triton has fp8e4nv from sm_89, 1059-1065), backward
  dequantizes the weight and runs a bf16 matmul: no H100-only kernel.

So the format is the DeepSeek-style block FP8 that transformers calls FineGrainedFP8: every decoder
linear weight as float8_e4m3fn with a float32 `weight_scale_inv` per 128 x 128 block (the dequantizing
multiplier: W ~ W_fp8 * scale_inv), `quantization_config = {"quant_method": "fp8", "activation_scheme":
"dynamic", "weight_block_size": [128, 128], ...}`; embeddings, norms and the LM head stay bf16. The scales
are computed as transformers' own `Fp8Quantize` computes them (amax / 448 per block). Not the per-row
(`fbgemm_fp8`) or compressed-tensors formats: the first is refused below 9.0 (above), the second would
go through unsloth's compressed-tensors path, which nothing here has run.

vLLM merges q/k/v and gate/up into one layer and needs each part but the last to be a multiple of the
block (`validate_fp8_block_shape`, fp8_utils.py:1196-1245), and transformers' dequantizer derives the
block from the scale grid (rows // grid rows): every quantized weight's dimensions must be multiples of
128 here, which the 8B (4096, 1024, 14336) meets and the default tiny model (k/v 64 rows) does not.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arc25.errors import UserError

if TYPE_CHECKING:
    from arc25.config import Config

log = logging.getLogger(__name__)

BLOCK = (128, 128)
FP8_MAX = 448.0  # float8_e4m3fn's largest finite value
SCALE_SUFFIX = "_scale_inv"  # "<module>.weight" -> "<module>.weight_scale_inv"
# The decoder's linear layers (Llama naming); everything else (embeddings, norms, lm_head) stays as it is
LINEAR = re.compile(r"\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)\.weight$")
INDEX = "model.safetensors.index.json"
FP8_MIN_CAPABILITY = (8, 9)  # FP8 matrix units (L4, Ada); below, unsloth and vLLM refuse or dequantize
ON_THE_FLY_MIN_CAPABILITY = (9, 0)  # unsloth's _get_fp8_mode_and_check_settings: "requires H100 GPUs or after"


def quantization_config() -> dict[str, Any]:
    """config.json's `quantization_config`: transformers' FineGrainedFP8Config, vLLM's Fp8Config."""
    return {"quant_method": "fp8", "activation_scheme": "dynamic", "fmt": "e4m3",
            "weight_block_size": list(BLOCK), "modules_to_not_convert": ["lm_head"]}


def is_fp8_checkpoint(model_path: str | Path) -> bool:
    """Whether `model_path`/config.json declares block FP8 weights (as `arc25 quantize-fp8` writes them)."""
    try:
        config = json.loads((Path(model_path) / "config.json").read_text())
    except (OSError, ValueError):
        return False
    qc = config.get("quantization_config") if isinstance(config, dict) else None
    return isinstance(qc, dict) and qc.get("quant_method") == "fp8" and bool(qc.get("weight_block_size"))


# ---------------------------------------------------------------------------------------------
# What the unsloth loader is asked for


AUTO_FP8_BELOW_GIB = 32.0  # unsloth.weights=auto: FP8 under this much memory per process (an L4's 22.3 usable)


class Route(enum.StrEnum):
    """How the engine's weights come to be."""

    AS_STORED = "as stored"  # bf16 (or unsloth.load_in_4bit): loaded as the checkpoint holds them
    CHECKPOINT = "FP8 checkpoint"  # model.path is block FP8 already (arc25 quantize-fp8): loaded as is
    AT_LOAD = "FP8 quantized at load"  # unsloth's load_in_fp8 (per channel): compute capability >= 9.0
    COPY = "FP8 copy"  # compute capability 8.9 (an L4): a block-FP8 copy made once, then loaded as a CHECKPOINT


@dataclass(frozen=True)
class WeightsChoice:
    """unsloth.weights resolved for one card: the route, why, or why it cannot load there (one line)."""

    route: Route
    reason: str
    problem: str = ""

    @property
    def fp8(self) -> bool:
        return self.route != Route.AS_STORED

    @property
    def load_in_fp8(self) -> bool:
        """What to pass to unsloth's `from_pretrained` (False for a pre-quantized checkpoint: it loads as is)."""
        return self.route == Route.AT_LOAD

    def describe(self) -> str:
        return f"weights: {self.route} ({self.reason})"


def block_shape_problem(model_path: str | Path) -> str | None:
    """Why the model's linear layers are not whole 128 x 128 blocks, from its config.json (None: they are, or
    the config says nothing: the copy's own per-weight check stands)."""
    try:
        c = json.loads((Path(model_path) / "config.json").read_text())
        head_dim = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
        dims = {"hidden_size": c["hidden_size"], "intermediate_size": c["intermediate_size"],
                "key/value rows": c.get("num_key_value_heads", c["num_attention_heads"]) * head_dim}
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        return None
    odd = [f"{name} {value}" for name, value in dims.items() if int(value) % BLOCK[0]]
    return f"{', '.join(odd)} not a multiple of the {BLOCK[0]}-wide FP8 block" if odd else None


def choose_weights(requested: str, model_path: str | Path, capability: tuple[int, int], memory_gib: float,
                   load_in_4bit: bool = False) -> WeightsChoice:
    """The one rule for `unsloth.weights` (auto | bf16 | fp8) on a card of `capability` with `memory_gib` per
    process (unsloth.memory_cap_gib where set, else the card's memory)."""
    cc = f"compute capability {capability[0]}.{capability[1]}"
    if is_fp8_checkpoint(model_path):
        if load_in_4bit:
            return WeightsChoice(Route.CHECKPOINT, "", f"{model_path} holds FP8 weights (arc25 quantize-fp8): set "
                                                       "unsloth.load_in_4bit=false, or point model.path at the bf16 model")
        if requested == "bf16":
            return WeightsChoice(Route.CHECKPOINT, "", f"unsloth.weights=bf16 but {model_path} holds FP8 weights: "
                                                       "point model.path at the bf16 model, or set unsloth.weights=auto")
        if tuple(capability) < FP8_MIN_CAPABILITY:
            return WeightsChoice(Route.CHECKPOINT, "", f"{model_path} holds FP8 weights, which need compute capability "
                                                       f">= 8.9 (an L4); this GPU has {cc}: use the bf16 model")
        return WeightsChoice(Route.CHECKPOINT, f"{model_path} is FP8 on disk")
    if load_in_4bit:
        if requested == "fp8":
            return WeightsChoice(Route.AS_STORED, "", "unsloth.weights=fp8 and unsloth.load_in_4bit exclude each "
                                                      "other: set one of them back")
        return WeightsChoice(Route.AS_STORED, "unsloth.load_in_4bit")
    if requested == "bf16":
        return WeightsChoice(Route.AS_STORED, "unsloth.weights=bf16")
    if tuple(capability) < FP8_MIN_CAPABILITY:
        if requested == "fp8":
            return WeightsChoice(Route.AS_STORED, "", f"unsloth.weights=fp8 needs FP8 units (compute capability "
                                                      f">= 8.9, an L4); this GPU has {cc}")
        return WeightsChoice(Route.AS_STORED, f"auto: {cc} has no FP8 units")
    shapes = block_shape_problem(model_path)
    if shapes:
        if requested == "fp8":
            return WeightsChoice(Route.AS_STORED, "", f"unsloth.weights=fp8: {model_path}: {shapes}")
        return WeightsChoice(Route.AS_STORED, f"auto: {shapes}")
    if requested == "auto" and memory_gib >= AUTO_FP8_BELOW_GIB:
        return WeightsChoice(Route.AS_STORED, f"auto: {memory_gib:.0f} GiB per process holds bf16 weights and a "
                                              f"KV cache (FP8 below {AUTO_FP8_BELOW_GIB:g} GiB)")
    why = (f"auto: {memory_gib:.1f} GiB per process (under {AUTO_FP8_BELOW_GIB:g}), {cc}" if requested == "auto"
           else "unsloth.weights=fp8")
    if tuple(capability) >= ON_THE_FLY_MIN_CAPABILITY:
        return WeightsChoice(Route.AT_LOAD, why)
    return WeightsChoice(Route.COPY, f"{why}: unsloth quantizes at load only from 9.0")


# ---------------------------------------------------------------------------------------------
# The run's choice (its parent: no torch, no CUDA) and the FP8 copy (its workers)


def planned_weights(config: Config, devices: list[str]) -> WeightsChoice | None:
    """`unsloth.weights` resolved for the run's first GPU (nvidia-smi), before any worker starts: a problem is a
    UserError then, not four failed workers. None: not the unsloth engine, no GPU, or nvidia-smi silent (the
    workers decide on the card they see)."""
    from arc25.gpus import gpu_facts

    gpus = [d for d in devices if d != "cpu"]
    if config.model.backend != "unsloth" or not gpus:
        return None
    facts = gpu_facts(gpus[0])
    if facts is None:
        return None
    cap = config.unsloth.memory_cap_gib
    choice = choose_weights(config.unsloth.weights, config.model.path, facts.capability,
                            cap if cap > 0 else facts.memory_gib, config.unsloth.load_in_4bit)
    if choice.problem:
        raise UserError(choice.problem)
    return choice


def ensure_fp8_copy(model_path: str | Path, copy_dir: str = "") -> Path | None:
    """Route COPY: the block-FP8 copy of `model_path`, made by the first worker that asks (the others wait on its
    file lock, then find it; a later run finds it too). None, with one warning line, when it cannot be made (a
    full disk, say): the caller loads bf16, slower but still a run. A failure is remembered beside the copy
    (`.failed`) so the other workers do not spend the same minute failing again."""
    from filelock import FileLock

    try:
        out = fp8_copy_path(model_path, copy_dir)
        failed = out.with_name(out.name + ".failed")
        out.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(out.with_name(out.name + ".lock"))):
            if failed.exists():
                raise OSError(failed.read_text().strip() or "an earlier attempt failed")
            if is_fp8_checkpoint(out):
                log.info("FP8 copy of %s: %s (made earlier)", model_path, out)
                return out
            log.info("making an FP8 copy of %s in %s (once per model; ~16 s on 16 cores for the 8B)", model_path, out)
            started = time.monotonic()
            try:
                summary = quantize_checkpoint(model_path, out)
            except (OSError, MemoryError, UserError) as exc:
                failed.write_text(_one_line(exc) + "\n")
                raise
            log.info("%s (%.0f s)", summary.describe(), time.monotonic() - started)
            return out
    except (OSError, MemoryError, UserError) as exc:
        log.warning("the FP8 copy of %s failed (%s): loading bf16 weights instead", model_path, _one_line(exc))
        return None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def fp8_copy_path(model_path: str | Path, copy_dir: str = "") -> Path:
    """Where the FP8 copy of `model_path` lives: named by the model's folder and a digest of its config and
    shards (names, sizes, times), so a changed model gets a new copy and the same one is found again."""
    src = Path(model_path).resolve()
    digest = hashlib.sha256(str(src).encode())
    for p in sorted(src.iterdir()):
        if p.is_file() and (p.name == "config.json" or p.name.endswith(".safetensors")):
            st = p.stat()
            digest.update(f"{p.name} {st.st_size} {st.st_mtime_ns}".encode())
    return Path(copy_dir or tempfile.gettempdir()) / "arc25-fp8" / f"{src.name}-fp8-{digest.hexdigest()[:12]}"


# ---------------------------------------------------------------------------------------------
# Quantizing


def quantize_weight(weight: Any, block: tuple[int, int] = BLOCK) -> tuple[Any, Any]:
    """(float8_e4m3fn weight, float32 weight_scale_inv of shape (rows / block, cols / block)), as
    transformers' Fp8Quantize makes them: per block, scale = 448 / amax, q = clamp(w * scale), inv = 1 / scale
    (an all-zero block keeps scale 1)."""
    import torch

    rows, cols = weight.shape
    br, bc = block
    tiles = weight.to(torch.float32).reshape(rows // br, br, cols // bc, bc)
    amax = tiles.abs().amax(dim=(1, 3))
    scale = torch.where(amax > 0, FP8_MAX / amax.clamp(min=torch.finfo(torch.float32).tiny), torch.ones_like(amax))
    q = (tiles * scale[:, None, :, None]).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    return q.reshape(rows, cols), (1.0 / scale).to(torch.float32)


def dequantize_weight(q: Any, scale_inv: Any, dtype: Any = None) -> Any:
    """The weight a quantized one stands for: each block times its scale_inv."""
    import torch

    rows, cols = q.shape
    gr, gc = scale_inv.shape
    tiles = q.to(torch.float32).reshape(gr, rows // gr, gc, cols // gc) * scale_inv[:, None, :, None]
    return tiles.reshape(rows, cols).to(dtype or torch.float32)


def _shards(src: Path) -> list[str]:
    """The safetensors files the model is made of: its index's, else the single files present."""
    index = src / INDEX
    if index.is_file():
        return sorted(set(json.loads(index.read_text())["weight_map"].values()))
    names = sorted(p.name for p in src.glob("*.safetensors"))
    if not names:
        raise UserError(f"{src}: no *.safetensors weights (arc25 quantize-fp8 reads safetensors only)")
    return names


def _shape_problem(name: str, shape: tuple[int, ...], block: tuple[int, int]) -> str | None:
    if len(shape) != 2 or shape[0] % block[0] or shape[1] % block[1]:
        return (f"{name}: shape {tuple(shape)} is not a multiple of the {block[0]} x {block[1]} FP8 block (vLLM needs "
                "fused q/k/v and gate/up parts in whole blocks)")
    return None


@dataclass
class QuantizeSummary:
    out: Path
    quantized: int  # weights made FP8
    kept: int  # tensors left as they were
    bytes_in: int
    bytes_out: int

    def describe(self) -> str:
        return (f"{self.out}: {self.quantized} linear weights in FP8 (block {BLOCK[0]}x{BLOCK[1]}), {self.kept} "
                f"tensors kept (embeddings, norms, lm_head); weights {self.bytes_in / 1024**3:.2f} -> "
                f"{self.bytes_out / 1024**3:.2f} GiB")


def quantize_checkpoint(src: str | Path, out: str | Path, block: tuple[int, int] = BLOCK) -> QuantizeSummary:
    """Write `out`: `src` with every decoder linear weight in block FP8, the rest (tokenizer, other files) as it
    was, config.json with `quantization_config`. `src` gets the checks `arc25 run` makes on a model folder, and
    so does the result. Written in a sibling folder renamed into place: `out` appears complete or not at all."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from arc25.model_check import check_model_folder

    src, out = Path(src), Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out}: exists and is not an empty folder; choose a new one")
    check_model_folder(src, "hf")
    config = json.loads((src / "config.json").read_text())
    if config.get("quantization_config"):
        raise UserError(f"{src}/config.json: already quantized ({config['quantization_config'].get('quant_method')}); "
                        "arc25 quantize-fp8 reads a bf16 model")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        summary = QuantizeSummary(out, 0, 0, 0, 0)
        weight_map: dict[str, str] = {}
        for shard in _shards(src):
            tensors = {}
            with safe_open(str(src / shard), framework="pt") as f:
                for name in f.keys():
                    tensor = f.get_tensor(name)
                    summary.bytes_in += tensor.numel() * tensor.element_size()
                    if LINEAR.search(name):
                        problem = _shape_problem(name, tuple(tensor.shape), block)
                        if problem:
                            raise UserError(f"{src / shard}: {problem}")
                        q, scale_inv = quantize_weight(tensor, block)
                        tensors[name], tensors[name + SCALE_SUFFIX] = q, scale_inv
                        summary.quantized += 1
                    else:
                        tensors[name] = tensor
                        summary.kept += 1
            save_file(tensors, str(tmp / shard), metadata={"format": "pt"})
            summary.bytes_out += sum(t.numel() * t.element_size() for t in tensors.values())
            weight_map.update({name: shard for name in tensors})
        if not summary.quantized:
            raise UserError(f"{src}: no decoder linear weights (model.layers.N.self_attn/mlp.*_proj.weight) to "
                            "quantize")
        if (src / INDEX).is_file():
            (tmp / INDEX).write_text(json.dumps({"metadata": {"total_size": summary.bytes_out},
                                                 "weight_map": dict(sorted(weight_map.items()))}, indent=2) + "\n")
        for p in sorted(src.iterdir()):  # tokenizer, chat template, generation config...; sub-folders left out
            if p.is_file() and p.name not in ("config.json", INDEX) and not p.name.endswith(".safetensors"):
                shutil.copy2(p, tmp / p.name)
        config["quantization_config"] = quantization_config()
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        check_model_folder(tmp, "hf")
        if out.is_dir():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary.out = out
    return summary
