"""What the notebook does around the run: inputs found by their files, the driver against the wheelhouse's CUDA
build, the offline install commands, the mode, and the absolute deadline passed to `arc25 run --deadline`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from arc25.commands.run import parse_deadline
from arc25.kaggle import notebook as nb
from helpers import TRAIN_2025
from kaggle_helpers import run_arc25


def touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def fake_torch_wheel(folder: Path, version_py: str) -> Path:
    """A real zip laid out like a torch wheel, with only the file the check reads."""
    wheel = folder / "torch-2.11.0-cp312-cp312-manylinux_2_28_x86_64.whl"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("torch/version.py", version_py)
    return wheel


def test_find_inputs_by_content_under_either_mount_layout(tmp_path):
    root = tmp_path / "input"
    test = touch(root / "arc-prize-2025" / nb.TEST_FILE, "{}")
    touch(root / "arc-prize-2024" / nb.TEST_FILE, "{}")  # another competition attached too
    evaluation = touch(root / "arc-prize-2025" / nb.EVAL_FILE, "{}")
    touch(root / "arc-prize-2025" / nb.EVAL_SOLUTIONS_FILE, "{}")
    code = touch(root / "datasets" / "alice" / "arc25-code" / "arc25-0.1.0-py3-none-any.whl")
    touch(root / "datasets" / "alice" / "arc25-code" / "arc25-0.0.9-py3-none-any.whl")
    wheels = root / "arc25-wheels"
    requirements = touch(wheels / nb.REQUIREMENTS_NAME, "vllm==0.26.0\n")
    touch(wheels / "vllm-0.26.0-cp38-abi3-manylinux_2_28_x86_64.whl")
    model = root / "llama-3.1-arc-potpourri-induction-8b" / "transformers" / "default" / "1"
    touch(model / "config.json", json.dumps({"model_type": "llama"}))
    touch(model / "model-00001-of-00004.safetensors")
    other = root / "some-other-model" / "1"
    touch(other / "config.json", json.dumps({"model_type": "qwen2"}))
    touch(other / "model.safetensors")
    touch(root / "not-a-model" / "config.json", "{}")  # a config without a model type
    touch(root / "potpourri-tokenizer" / "config.json", json.dumps({"model_type": "llama"}))  # no weights

    found = nb.find_inputs(root, "arc-prize-2025", "potpourri")
    assert found.test_challenges == test and found.eval_challenges == evaluation
    assert found.eval_solutions == evaluation.parent / nb.EVAL_SOLUTIONS_FILE
    assert found.arc25_wheel == code  # the newest arc25 wheel
    assert set(found.wheel_dirs) == {code.parent, wheels} and found.requirements == requirements
    assert found.model == model
    assert nb.find_inputs(root, "arc-prize-2024", "nothing-matches").test_challenges.parent.name == "arc-prize-2024"
    assert "NOT FOUND" in nb.find_inputs(tmp_path / "empty").describe()


@pytest.mark.parametrize("cuda,driver,problem", [
    ("13.0", "580.65.06", None),
    ("13.0", "570.133.20", "needs NVIDIA driver >= 580, but this machine has 570.133.20: rebuild the wheelhouse "
                           "with a torch for CUDA 12.x or older"),
    ("12.8", "550.54.15", None),
    ("12.8", "470.1", "needs NVIDIA driver >= 525"),
    ("13.0", None, "no NVIDIA driver was found"),
    (None, None, None),  # no CUDA torch in the wheelhouse: the image's torch stays
])
def test_cuda_build_against_the_driver(cuda, driver, problem):
    message = nb.cuda_problem(cuda, driver)
    assert (message is None) if problem is None else (problem in message)


def test_torch_wheel_cuda_version_is_read_from_the_wheel(tmp_path):
    wheel = fake_torch_wheel(tmp_path / "a", "__version__ = '2.11.0'\ncuda: Optional[str] = '13.0'\nhip = None\n")
    assert nb.torch_wheel([tmp_path / "a"]) == wheel and nb.wheel_cuda_version(wheel) == "13.0"
    cpu = fake_torch_wheel(tmp_path / "b", "__version__ = '2.11.0+cpu'\ncuda = None\n")
    assert nb.wheel_cuda_version(cpu) is None and nb.torch_wheel([tmp_path / "c"]) is None


def test_install_commands_uninstall_the_image_torch_then_pin_then_arc25(tmp_path):
    fake_torch_wheel(tmp_path / "wheels", "cuda = '13.0'\n")
    inputs = nb.KaggleInputs(wheel_dirs=[tmp_path / "code", tmp_path / "wheels"],
                             arc25_wheel=tmp_path / "code" / "arc25-0.1.0-py3-none-any.whl",
                             requirements=tmp_path / "wheels" / nb.REQUIREMENTS_NAME)
    links = ["--find-links", str(tmp_path / "code"), "--find-links", str(tmp_path / "wheels")]
    assert nb.install_commands(inputs, "py") == [
        ["py", "-m", "pip", "uninstall", "-y", "torch", "torchvision", "torchaudio"],
        ["py", "-m", "pip", "install", "--no-index", *links, "-r", str(inputs.requirements)],
        ["py", "-m", "pip", "install", "--no-index", *links, "--no-deps", "--force-reinstall", str(inputs.arc25_wheel)],
    ]
    cpu_only = nb.KaggleInputs(wheel_dirs=[tmp_path / "code"], arc25_wheel=inputs.arc25_wheel)
    assert [c[3] for c in nb.install_commands(cpu_only, "py")] == ["install"]  # no torch wheel: nothing uninstalled


def test_mode_and_deadline():
    assert nb.is_competition_rerun({"KAGGLE_IS_COMPETITION_RERUN": "True"})
    assert not nb.is_competition_rerun({}) and not nb.is_competition_rerun({"KAGGLE_IS_COMPETITION_RERUN": "0"})
    assert nb.deadline_at(1000.0, 12 * 3600, 1800) == 1000.0 + 12 * 3600 - 1800
    assert nb.time_left(2000.0, now=1500.0) == 500.0


def test_parse_deadline_epoch_and_iso():
    assert parse_deadline("1767225600") == 1767225600.0
    assert parse_deadline("2026-01-01T00:00:00Z") == 1767225600.0
    assert parse_deadline("2026-01-01T01:00:00+01:00") == 1767225600.0
    assert parse_deadline("2026-01-01T00:00:00") == 1767225600.0  # no zone: UTC


def test_run_refuses_a_passed_deadline_and_a_double_limit(tmp_path):
    challenges = tmp_path / "c.json"
    data = json.loads(TRAIN_2025.read_text())
    challenges.write_text(json.dumps({t: data[t] for t in list(data)[:1]}))
    past = run_arc25("run", "--challenges", str(challenges), "--out", str(tmp_path / "run"), "--workers", "1",
                     "--deadline", f"{time.time() - 5:.0f}")
    assert past.returncode == 2 and "has passed" in past.stderr and "Traceback" not in past.stderr
    both = run_arc25("run", "--challenges", str(challenges), "--out", str(tmp_path / "run"), "--workers", "1",
                     "--deadline", "2030-01-01T00:00:00Z", "--time-limit", "1h")
    assert both.returncode == 2 and "give one of them" in both.stderr
    bad = run_arc25("run", "--challenges", str(challenges), "--out", str(tmp_path / "run"), "--deadline", "soon")
    assert bad.returncode == 2 and "expected epoch seconds or an ISO time" in bad.stderr


def test_notebook_helpers_import_from_the_wheel_zip_with_the_standard_library_only(tmp_path):
    """The notebook imports them before anything is installed: no numpy, no torch, no arc25 beyond the zip."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from arc25.kaggle import notebook; "
            "bad = [m for m in ('numpy', 'torch', 'filelock', 'tqdm') if m in sys.modules]; "
            "print(notebook.__file__, bad)")
    wheel = tmp_path / "arc25-0.1.0-py3-none-any.whl"
    src = Path(nb.__file__).resolve().parents[1]
    with zipfile.ZipFile(wheel, "w") as zf:
        for path in src.rglob("*.py"):
            zf.write(path, f"arc25/{path.relative_to(src)}")
    out = subprocess.run([sys.executable, "-S", "-c", code, str(wheel)], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{wheel}/arc25/kaggle/notebook.py []"
