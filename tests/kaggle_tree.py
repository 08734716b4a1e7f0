"""A /kaggle/input-like tree and a Jupyter kernel for running kaggle_notebook.ipynb headless (nbclient).

Shared by tests/test_notebook.py (CPU, the tiny model) and bench/gpu_notebook.py (a GPU machine, the
8B shape), so both run the notebook against the same layout Kaggle mounts:

    INPUT/arc-prize-2025/                    the competition: test file (+ evaluation files)
    INPUT/arc25-code/                        the code dataset: the arc25 wheel (`arc25 package`)
    INPUT/datasets/alice/arc25-wheels/       the wheels dataset (`arc25 package --wheels`), if given
    INPUT/llama-3.1-arc-potpourri-induction-8b/transformers/default/1   the model (a copy or a link)
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

COMPETITION = "arc-prize-2025"
MODEL_MOUNT = Path("llama-3.1-arc-potpourri-induction-8b") / "transformers" / "default" / "1"
KERNEL = "arc25-kaggle-venv"


def _arc25(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    repo = Path(__file__).resolve().parents[1]
    return subprocess.run([sys.executable, "-m", "arc25", *args], capture_output=True, text=True, timeout=600,
                          cwd=repo, env=env)


def build_kaggle_input(inputs: Path, test_tasks: dict, model_dir: Path, *, eval_challenges: Path | None = None,
                       eval_solutions: Path | None = None, wheelhouse: Path | None = None,
                       link_model: bool = False, env: dict[str, str] | None = None,
                       code_wheels: list[Path] | None = None) -> Path:
    """Build INPUT (see the module docstring); returns the competition's test file.

    `test_tasks`: the test file's content (task id -> task JSON). The code dataset is staged from this
    checkout by `arc25 package` (the wheel is built offline), or, if that build fails and `code_wheels` names a
    prebuilt arc25 wheel (a machine without setuptools), holds that wheel; `link_model` links the model folder
    instead of copying it (the 8B shape's 15 GiB)."""
    competition = inputs / COMPETITION
    competition.mkdir(parents=True)
    test_file = competition / "arc-agi_test_challenges.json"
    test_file.write_text(json.dumps(test_tasks))
    for source, name in ((eval_challenges, "arc-agi_evaluation_challenges.json"),
                         (eval_solutions, "arc-agi_evaluation_solutions.json")):
        if source is not None:
            shutil.copy(source, competition / name)
    datasets = [["--out", str(inputs / "arc25-code"), "--id", "alice/arc25-code"]]
    if wheelhouse is not None:
        datasets.append(["--out", str(inputs / "datasets" / "alice" / "arc25-wheels"), "--id", "alice/arc25-wheels",
                         "--wheels", str(wheelhouse)])
    for i, args in enumerate(datasets):
        proc = _arc25("package", *args, env=env)
        if proc.returncode != 0 and i == 0 and code_wheels:
            print(f"arc25 package failed ({proc.stderr.strip().splitlines()[-1:]}): the code dataset holds "
                  f"{code_wheels[-1].name}, built beforehand", flush=True)
            Path(args[1]).mkdir(parents=True, exist_ok=True)
            shutil.copy(code_wheels[-1], Path(args[1]) / code_wheels[-1].name)
        elif proc.returncode != 0:
            raise RuntimeError(f"arc25 package {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    mount = inputs / MODEL_MOUNT
    mount.parent.mkdir(parents=True)
    if link_model:
        mount.symlink_to(Path(model_dir).resolve(), target_is_directory=True)
    else:
        shutil.copytree(model_dir, mount)
    return test_file


def kernel_spec(root: Path, python: Path, name: str = KERNEL) -> Path:
    """A kernelspec running `python` (ipykernel); returns the folder to put on JUPYTER_PATH."""
    spec = root / "jupyter" / "kernels" / name
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "arc25 kaggle venv", "language": "python"}))
    return root / "jupyter"


def layered_venv(path: Path) -> Path:
    """A fresh venv that sees every package of the running environment, itself a venv or not (the GPU
    image's python3 is /opt/torch/.venv), and installs into its own site-packages.

    `system_site_packages` would expose the *base* interpreter's packages only; here a .pth file adds the
    running environment's site folders (their .pth files processed) after the venv's own, so a package the
    notebook installs (arc25) wins over any copy there. No pip of its own: `python -m pip` is the running
    environment's pip, installing into the venv. Returns the venv's python."""
    venv.EnvBuilder(with_pip=False).create(path)
    python = path / "bin" / "python"
    own = subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"], capture_output=True,
                         text=True, check=True, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    parents = [p for p in site.getsitepackages() + [site.getusersitepackages()] if Path(p).is_dir()]
    lines = "".join(f"import site; site.addsitedir({p!r})\n" for p in parents)
    Path(own.stdout.strip(), "zz-arc25-parent-env.pth").write_text(lines)
    return python
