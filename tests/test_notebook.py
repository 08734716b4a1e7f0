"""The Kaggle notebook, executed headless through nbclient on CPU against a temporary /kaggle-like tree.

The tree is what Kaggle mounts (tests/kaggle_tree.py, shared with bench/gpu_notebook.py, which runs
this notebook on a GPU): the competition folder, the code dataset (the arc25 wheel staged by
`arc25 package` from this checkout) under /kaggle/input/<slug>, the wheels dataset (a wheelhouse
from `arc25 wheels`, staged with `arc25 package --wheels`) under /kaggle/input/datasets/<owner>/<slug>,
and the tiny generated model under /kaggle/input/<model>/<framework>/<variation>/<version>.
The kernel runs in a fresh virtual environment (it sees this environment's torch and co.; the
GPU stack cannot install on CPU) and installs arc25 from the wheels with --no-index, as on Kaggle.

Three runs: a commit run (self-check on evaluation tasks + a valid submission for the
placeholder test file), the competition rerun (every task of the test file, absolute
deadline), and a rerun whose deadline has passed (only the fallback can write).
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile

import nbformat
import pytest
from nbclient import NotebookClient

from arc25.submission import validate_submission
from arc25.tasks import load_tasks_tolerant
from helpers import EVAL_2025, EVAL_2025_SOLUTIONS, REPO, TEST_2025
from kaggle_helpers import small_wheelhouse, system_venv
from kaggle_tree import KERNEL, build_kaggle_input, kernel_spec

# The tiny model with CPU-sized sampling: the machinery is under test, not the model.
TINY_RUN_ARGS = " ".join(f"--set {s}" for s in (
    "sampling.max_tokens=16", "sampling.n_per_prompt=2", "search.predictions_per_epoch=2",
    "search.max_predictions=2", "search.max_epochs=1", "run.reserve_s=5", "run.per_task_cap_s=60"))
TEST_TASKS = 2


@pytest.fixture(scope="module")
def kaggle_input(tmp_path_factory, tiny_model_dir):
    """A /kaggle/input-like tree and a kernelspec for a fresh venv; returns (input, jupyter_path, venv)."""
    root = tmp_path_factory.mktemp("kaggle")
    inputs = root / "input"
    test = json.loads(TEST_2025.read_text())
    smallest = sorted(test, key=lambda t: len(json.dumps(test[t])))[:TEST_TASKS]
    build_kaggle_input(inputs, {t: test[t] for t in smallest}, tiny_model_dir, eval_challenges=EVAL_2025,
                       eval_solutions=EVAL_2025_SOLUTIONS, wheelhouse=small_wheelhouse(tmp_path_factory))
    venv = system_venv(tmp_path_factory)
    return inputs, kernel_spec(root, venv / "bin" / "python", KERNEL), venv


def execute(tmp_path, monkeypatch, kaggle_input, rerun: bool, expect_installed: bool = True, **settings: str):
    inputs, jupyter_path, venv = kaggle_input
    work = tmp_path / "working"
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_path))
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")  # this machine's pip.conf adds a local find-links
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.delenv("PYTHONPATH", raising=False)  # Kaggle has none; a checkout on it would shadow the installed arc25
    env = {"ARC25_INPUT": str(inputs), "ARC25_WORK": str(work), "ARC25_RUN_ARGS": TINY_RUN_ARGS,
           "ARC25_MIN_RUN_S": "10", "ARC25_SELF_CHECK_TASKS": "1", "ARC25_SELF_CHECK_S": "120"} | settings
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    if rerun:
        monkeypatch.setenv("KAGGLE_IS_COMPETITION_RERUN", "True")
    else:
        monkeypatch.delenv("KAGGLE_IS_COMPETITION_RERUN", raising=False)
    notebook = nbformat.read(REPO / "kaggle_notebook.ipynb", as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name=KERNEL, resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in notebook.cells for o in cell.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs)
    # the submission is complete and valid for the competition's test file
    challenges = inputs / "arc-prize-2025" / "arc-agi_test_challenges.json"
    submission = json.loads((work / "submission.json").read_text())
    assert validate_submission(submission, load_tasks_tolerant(challenges).everything) == []
    assert set(submission) == set(json.loads(challenges.read_text()))
    assert text.lstrip().startswith("GPUs:")  # the first thing it prints
    if expect_installed:
        assert f"arc25 0.1.0 from {venv}" in text  # installed from the wheels into the kernel's venv
        assert "--no-index" in text
    assert "submission.json: VALID" in text
    return text, outputs, work


@pytest.mark.slow
def test_commit_run_self_checks_and_writes_a_valid_submission(tmp_path, monkeypatch, kaggle_input):
    text, outputs, work = execute(tmp_path, monkeypatch, kaggle_input, rerun=False)
    assert "mode: commit run: self-check" in text and "run exit code 0" in text
    assert "datasets/alice/arc25-wheels" in text and "arc25-code/arc25-0.1.0-py3-none-any.whl" in text
    assert "potpourri-induction-8b/transformers/default/1" in text  # the model, found by its files
    report = work / "self-check" / "report"
    assert (report / "report.md").is_file() and "score" in (work / "self-check" / "report" / "report.md").read_text()
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the report's plots are shown
    assert not (work / "run").exists()  # the placeholder test file got the fallback, no run


@pytest.mark.slow
def test_competition_rerun_solves_the_test_file_by_an_absolute_deadline(tmp_path, monkeypatch, kaggle_input):
    text, outputs, work = execute(tmp_path, monkeypatch, kaggle_input, rerun=True, ARC25_TIME_BUDGET_S="600",
                                  ARC25_RESERVE_S="60")
    assert "mode: competition rerun" in text and "--deadline" in text and "run exit code 0" in text
    run = json.loads((work / "run" / "run.json").read_text())
    assert len(run["task_ids"]) == TEST_TASKS
    # the run's time limit was counted from the notebook's start: less than the 540 s left at its start
    assert run["time_limit_s"] < 540 and run["deadline"] < run["started_at"] + 540
    assert not (work / "self-check").exists()


@pytest.mark.slow
def test_an_invalid_task_in_the_test_file_costs_that_task_only(tmp_path, monkeypatch, kaggle_input):
    """The hidden test file with one task the validator refuses: the rerun skips it with a line, solves the others,
    and the notebook ends VALID with fallback attempts for it (issue 18: `arc25 run` refused the whole file, then
    `arc25 validate` exited 2 and `assert VALID` raised, although the merge had written a valid fallback)."""
    inputs, jupyter_path, venv = kaggle_input
    tree = tmp_path / "input"
    (tree / "arc-prize-2025").mkdir(parents=True)
    for entry in inputs.iterdir():
        if entry.name == "arc25-code":  # copied: the notebook's first glob for the wheel follows no symlink
            shutil.copytree(entry, tree / entry.name)
        elif entry.name != "arc-prize-2025":
            (tree / entry.name).symlink_to(entry, target_is_directory=True)
    test = json.loads((inputs / "arc-prize-2025" / "arc-agi_test_challenges.json").read_text())
    test["badtask"] = {"train": [{"input": [[1, 2]]}], "test": [{"input": [[3, 4], [5, 6]]}]}  # no train output
    (tree / "arc-prize-2025" / "arc-agi_test_challenges.json").write_text(json.dumps(test))
    text, outputs, work = execute(tmp_path, monkeypatch, (tree, jupyter_path, venv), rerun=True,
                                  ARC25_TIME_BUDGET_S="600", ARC25_RESERVE_S="60")
    assert "skipping invalid task" in text and "missing key 'output'" in text and "run exit code 0" in text
    assert "warning: invalid task" in text  # merge and validate each say it too
    assert json.loads((work / "submission.json").read_text())["badtask"][0]["attempt_1"] == [[3, 4], [5, 6]]
    run = json.loads((work / "run" / "run.json").read_text())
    assert list(run["skipped_tasks"]) == ["badtask"] and len(run["task_ids"]) == TEST_TASKS


@pytest.mark.slow
def test_a_passed_deadline_leaves_only_the_fallback(tmp_path, monkeypatch, kaggle_input):
    text, outputs, work = execute(tmp_path, monkeypatch, kaggle_input, rerun=True, ARC25_TIME_BUDGET_S="1",
                                  ARC25_RESERVE_S="0")
    assert "no run:" in text and "the fallback stands" in text and "run exit code None" in text
    assert not (work / "run" / "run.json").exists()
    assert "2 fallback" in text or f"{TEST_TASKS} fallback" in text


@pytest.mark.slow
def test_a_driver_too_old_for_the_wheelhouse_keeps_the_fallback(tmp_path, monkeypatch, kaggle_input):
    """Four L4s with driver 570 (a fake nvidia-smi: there is no GPU here) and a wheelhouse whose torch is a CUDA 13
    build (a wheel-shaped zip with torch/version.py): nothing is installed, the fallback is the submission."""
    inputs, jupyter_path, venv = kaggle_input
    tree = tmp_path / "input"
    tree.mkdir()
    for entry in inputs.iterdir():
        (tree / entry.name).symlink_to(entry, target_is_directory=True)
    torch_dir = tree / "torch-wheels"
    torch_dir.mkdir()
    with zipfile.ZipFile(torch_dir / "torch-2.11.0-cp311-cp311-manylinux_2_28_x86_64.whl", "w") as zf:
        zf.writestr("torch/version.py", "__version__ = '2.11.0'\ncuda: Optional[str] = '13.0'\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\nfor i in 0 1 2 3; do echo \"$i, NVIDIA L4, 23034 MiB, 570.133.20\"; done\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    text, outputs, work = execute(tmp_path, monkeypatch, (tree, jupyter_path, venv), rerun=True,
                                  expect_installed=False)
    assert text.lstrip().startswith("GPUs: 4, NVIDIA driver 570.133.20")
    assert "NOT INSTALLING: the wheelhouse's torch is a CUDA 13.0 build, which needs NVIDIA driver >= 580" in text
    assert "pip install" not in text and "no run:" in text and not (work / "run").exists()
