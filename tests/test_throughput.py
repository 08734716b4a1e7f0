"""The decode roofline (arc25.throughput) and doctor's prediction and check with it (issue 21 item 4)."""

from __future__ import annotations

import json

import pytest

from arc25.commands import doctor
from arc25.config import Weights, load_config
from arc25.memory_plan import GIB, ModelShape, weight_bytes
from arc25.throughput import (H200, L4, Budget, DecodeLoad, Measured, card_for, check, decode_tokens_per_s,
                              flops_per_token, measured_load, predictions_per_task, sequences_running,
                              step_seconds)

SHAPE = ModelShape()
FP8_KV = SHAPE.kv_bytes_per_token(fp8=True)  # 64 KiB


def load(weights: float, sequences: float, context: float, fp8: bool = False) -> DecodeLoad:
    return DecodeLoad(weights, sequences, context, FP8_KV, flops_per_token(SHAPE, context), fp8)


def test_one_sequence_reads_the_weights_once_per_token():
    one = load(16e9, 1, 0)
    assert step_seconds(L4, one) == pytest.approx(16e9 / 300e9)
    assert decode_tokens_per_s(L4, one) == pytest.approx(300 / 16)  # 18.75 tok/s: the bandwidth over the weights


def test_kv_reads_add_per_sequence_and_the_rate_saturates():
    # 10 sequences of 4000 tokens read 10 x 4000 x 64 KiB = 2.62 GB besides the weights
    ten = load(16e9, 10, 4000)
    assert step_seconds(L4, ten) == pytest.approx((16e9 + 10 * 4000 * 65536) / 300e9)
    rates = [decode_tokens_per_s(L4, load(16e9, s, 4000)) for s in (1, 16, 64, 256, 4096)]
    assert rates == sorted(rates)
    assert rates[-1] < 300e9 / (4000 * 65536)  # never above the bandwidth over one sequence's KV


def test_compute_caps_the_step():
    # weights read for nothing: 10^4 sequences of no context make the compute bound bind
    many = load(1e9, 10_000, 0)
    assert step_seconds(L4, many) == pytest.approx(10_000 * 2 * SHAPE.params / 121e12)
    assert step_seconds(L4, load(1e9, 10_000, 0, fp8=True)) == pytest.approx(step_seconds(L4, many) / 2)


def test_sequences_from_the_kv_cache_prompt_shared_by_its_completions():
    # one prompt of 4000 + 8 answers of 1024 (512 held on average) = 8096 tokens per 8 sequences
    assert sequences_running(8096, 4000, 1024, 8, 256) == pytest.approx(8.0)
    assert sequences_running(10**6, 4000, 1024, 8, 64) == 64  # the engine's cap


def test_predictions_per_task_divide_the_cards_time():
    rate_load = load(16e9, 8, 4000)
    seconds = (12 * 3600 - 1200) * 4 / 240
    per = predictions_per_task(L4, rate_load, SHAPE, 4000, 1000, 8)
    prefill = 4000 * flops_per_token(SHAPE, 2000) / 121e12 / 8
    assert per == pytest.approx(seconds / (1000 / decode_tokens_per_s(L4, rate_load) + prefill))
    assert predictions_per_task(L4, rate_load, SHAPE, 4000, 1000, 8, Budget(tasks=120)) == pytest.approx(2 * per)


def test_fp8_weights_are_8_46_gib_without_the_lora_slots():
    assert weight_bytes(SHAPE) / GIB == pytest.approx(14.96, abs=0.01)
    assert weight_bytes(SHAPE, fp8=True) / GIB == pytest.approx(8.46, abs=0.01)


def test_the_check_against_a_measured_run():
    # an H200 run decoding 3,600 tok/s with 40 sequences of 2000 + 512/2 tokens: the roofline at its own
    # 4.8 TB/s, and the step time it does not count
    measured = Measured(3600, 40, 2000, 512)
    m = measured_load(measured, SHAPE, weight_bytes(SHAPE), FP8_KV, False)
    assert m.context_tokens == 2256
    c = check(H200, measured, m)
    assert c.predicted_tokens_per_s == pytest.approx(40 / ((weight_bytes(SHAPE) + 40 * 2256 * 65536) / 4.8e12))
    assert c.ratio == pytest.approx(3600 / c.predicted_tokens_per_s)
    assert c.overhead_s == pytest.approx(40 / 3600 - c.roofline_step_s)


def test_cards_by_their_names():
    assert card_for("NVIDIA L4") is L4 and card_for("NVIDIA H200") is H200 and card_for("Tesla T4") is None


def test_the_l4_plan_meets_the_issue_targets_with_fp8_weights():
    """Issue 21's targets for the L4 plan: KV cache >= 5x today's 15,776 tokens and predicted decode >= 2x
    the bf16 plan (prompts of ARC-AGI-2's evaluation mean, 2654 tokens, 1024-token answers)."""
    config = load_config(overrides=["model.backend=unsloth"])
    rates, kv = {}, {}
    for fp8 in (False, True):
        config.unsloth.weights = Weights.FP8 if fp8 else Weights.BF16
        p = doctor.plan(config, SHAPE, doctor.L4_USABLE_GIB, "NVIDIA L4", 8575)
        assert p.fits, p.advice
        kv[fp8] = p.kv_tokens
        rates[fp8] = decode_tokens_per_s(L4, doctor.plan_load(config, SHAPE, p.kv_tokens, 2654, 1024, fp8))
    assert kv[True] >= 5 * 15_776
    assert rates[True] >= 2 * rates[False]


def test_doctor_check_reads_a_run_folder(tmp_path):
    """A run folder as `arc25 run` leaves it (run.json and a worker's status with its engine summary,
    written here with an H200 run's figures: no GPU run can happen on this machine)."""
    config = load_config(overrides=["model.backend=unsloth"])
    (tmp_path / "workers").mkdir()
    (tmp_path / "run.json").write_text(json.dumps({"n_workers": 1, "config": config.to_dict()}))
    engine = {"tokens_per_s": 3600.0, "tokens_per_step": 40.0, "mean_in_engine": 170.0, "mean_prompt_tokens": 2000.0,
              "mean_completion_tokens": 512.0}
    (tmp_path / "workers" / "worker-0.status.json").write_text(json.dumps({"engine": engine}))
    text = doctor.format_check(tmp_path, H200, L4)
    # the sequences decoding are the tokens per engine step, not the 170 in the engine (running + waiting)
    assert "measured: 3600 tok/s, 40.0 sequences running, context 2256 tokens" in text and "note" not in text
    assert "predicted at NVIDIA H200" in text and "the same load on NVIDIA L4" in text and "PREDICTION" in text
    # a run made before tokens per step were recorded: its in-engine figure (then `mean_running`), said to overstate
    engine = {"tokens_per_s": 3600.0, "mean_running": 170.0, "mean_prompt_tokens": 2000.0,
              "mean_completion_tokens": 512.0}
    (tmp_path / "workers" / "worker-0.status.json").write_text(json.dumps({"engine": engine}))
    text = doctor.format_check(tmp_path, H200, L4)
    assert "170.0 sequences in the engine (running + waiting)" in text and "overstate those decoding" in text
    (tmp_path / "workers" / "worker-0.status.json").write_text(json.dumps({"engine": {"tokens_per_s": 0}}))
    with pytest.raises(doctor.UserError, match="no worker measured its decoding"):
        doctor.format_check(tmp_path, H200, L4)
