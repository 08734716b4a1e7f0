"""What the Kaggle notebook does before and around `arc25 run`, kept here so it is tested and the notebook stays thin.

Standard library only: the notebook imports this module straight from the arc25 wheel
file (a zip on sys.path) before anything is installed, to find its inputs, check the
GPU driver against the wheelhouse's CUDA build and install offline.

Inputs are found by their files, not by one hard-coded path: Kaggle has mounted
datasets both at /kaggle/input/<slug> and /kaggle/input/datasets/<owner>/<slug>, and
models at /kaggle/input/<model>/<framework>/<variation>/<version>.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

TEST_FILE = "arc-agi_test_challenges.json"
EVAL_FILE = "arc-agi_evaluation_challenges.json"
EVAL_SOLUTIONS_FILE = "arc-agi_evaluation_solutions.json"
REQUIREMENTS_NAME = "requirements-kaggle.txt"
MAX_DEPTH = 7  # /kaggle/input/<model>/<framework>/<variation>/<version>/<file> and a little more
# The oldest driver each CUDA major runs on (minor-version compatibility within a major).
CUDA_MIN_DRIVER = {13: 580, 12: 525, 11: 450}
# The image's own builds, uninstalled before the wheelhouse brings pinned ones (else pip keeps odd mixes).
TORCH_PACKAGES = ("torch", "torchvision", "torchaudio")


@dataclass
class KaggleInputs:
    """What the notebook found under the input folder."""

    test_challenges: Path | None = None
    eval_challenges: Path | None = None
    eval_solutions: Path | None = None
    wheel_dirs: list[Path] = field(default_factory=list)
    arc25_wheel: Path | None = None
    requirements: Path | None = None
    model: Path | None = None

    def describe(self) -> str:
        rows = [("competition test file", self.test_challenges), ("evaluation file", self.eval_challenges),
                ("evaluation solutions", self.eval_solutions), ("arc25 wheel", self.arc25_wheel),
                ("GPU stack requirements", self.requirements), ("model", self.model)]
        lines = [f"{name:>24}: {value or 'NOT FOUND'}" for name, value in rows]
        lines.append(f"{'wheel folders':>24}: {', '.join(map(str, self.wheel_dirs)) or 'NONE'}")
        return "\n".join(lines)


def walk_files(root: Path, max_depth: int = MAX_DEPTH) -> Iterator[Path]:
    """Every file under root down to max_depth, in a stable order, without following symlinked folders twice."""
    root = Path(root)
    if not root.is_dir():
        return
    base = len(root.parts)
    for folder, dirs, files in os.walk(root, followlinks=True):
        depth = len(Path(folder).parts) - base
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if depth < max_depth else []
        for name in sorted(files):
            yield Path(folder) / name


def _prefer(paths: list[Path], hint: str) -> Path | None:
    """The path whose text mentions the hint, else the shortest (the least nested)."""
    if not paths:
        return None
    hinted = [p for p in paths if hint and hint.lower() in str(p).lower()]
    return min(hinted or paths, key=lambda p: (len(p.parts), str(p)))


def is_model_dir(folder: Path) -> bool:
    """A transformers model folder: config.json with a model_type, and weights."""
    if not (folder / "config.json").is_file():
        return False
    weights = any(any(folder.glob(pattern)) for pattern in ("*.safetensors", "*.bin", "*.safetensors.index.json"))
    return weights and '"model_type"' in (folder / "config.json").read_text(errors="replace")


def find_inputs(root: str | Path, competition: str = "", model_hint: str = "") -> KaggleInputs:
    """Find the competition files, the wheel folders and the model under `root` by their files."""
    found = KaggleInputs()
    by_name: dict[str, list[Path]] = {}
    wheel_dirs: dict[Path, None] = {}
    model_dirs: dict[Path, None] = {}
    for path in walk_files(Path(root)):
        by_name.setdefault(path.name, []).append(path)
        if path.suffix == ".whl":
            wheel_dirs[path.parent] = None
        if path.name == "config.json" and is_model_dir(path.parent):
            model_dirs[path.parent] = None
    found.test_challenges = _prefer(by_name.get(TEST_FILE, []), competition)
    found.eval_challenges = _prefer(by_name.get(EVAL_FILE, []), competition)
    if found.eval_challenges and (found.eval_challenges.parent / EVAL_SOLUTIONS_FILE).is_file():
        found.eval_solutions = found.eval_challenges.parent / EVAL_SOLUTIONS_FILE
    found.wheel_dirs = list(wheel_dirs)
    arc25_wheels = sorted((p for d in wheel_dirs for p in d.glob("arc25-*.whl")), key=wheel_version, reverse=True)
    found.arc25_wheel = arc25_wheels[0] if arc25_wheels else None
    found.requirements = _prefer(by_name.get(REQUIREMENTS_NAME, []), "")
    found.model = _prefer(list(model_dirs), model_hint)
    return found


def wheel_version(path: Path) -> tuple[int, ...]:
    match = re.match(r"[^-]+-([0-9.]+)", path.name)
    return tuple(int(x) for x in match.group(1).strip(".").split(".")) if match else ()


# -- GPUs, driver and the wheelhouse's CUDA build ------------------------------------------------
@dataclass
class GpuInfo:
    lines: list[str]  # one per GPU: index, name, memory, driver
    driver: str | None  # e.g. "580.65.06"; None without nvidia-smi or GPUs

    @property
    def indices(self) -> list[str]:
        return [line.split(",")[0].strip() for line in self.lines]

    def describe(self) -> str:
        if not self.lines:
            return "GPUs: none (nvidia-smi not found or no GPU visible)"
        return "\n".join([f"GPUs: {len(self.lines)}, NVIDIA driver {self.driver}"] + [f"  {l}" for l in self.lines])


def query_gpus() -> GpuInfo:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,name,memory.total,driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return GpuInfo([], None)
    lines = [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []
    driver = lines[0].split(",")[-1].strip() if lines else None
    return GpuInfo(lines, driver)


def torch_wheel(wheel_dirs: list[Path]) -> Path | None:
    wheels = [p for d in wheel_dirs for p in d.glob("torch-*.whl")]
    return max(wheels, key=wheel_version) if wheels else None


def wheel_cuda_version(wheel: Path) -> str | None:
    """The CUDA version a torch wheel was built for (torch/version.py's `cuda`), None for a CPU build."""
    with zipfile.ZipFile(wheel) as zf:
        try:
            text = zf.read("torch/version.py").decode()
        except KeyError:
            return None
    match = re.search(r"^cuda\s*(?::\s*\w+(?:\[\w+\])?)?\s*=\s*['\"]([\d.]+)['\"]", text, re.M)
    return match.group(1) if match else None


def cuda_problem(cuda: str | None, driver: str | None) -> str | None:
    """Why this driver cannot run this CUDA build (a message for the notebook), or None when it can."""
    if cuda is None:
        return None  # no CUDA torch in the wheelhouse: the image's torch is used
    if driver is None:
        return f"the wheelhouse's torch is a CUDA {cuda} build but no NVIDIA driver was found (is the GPU on?)"
    major = int(cuda.split(".")[0])
    needed = CUDA_MIN_DRIVER.get(major)
    have = int(driver.split(".")[0])
    if needed is not None and have < needed:
        return (f"the wheelhouse's torch is a CUDA {cuda} build, which needs NVIDIA driver >= {needed}, but this "
                f"machine has {driver}: rebuild the wheelhouse with a torch for CUDA {max_cuda_for(have)} or older")
    return None


def max_cuda_for(driver_major: int) -> str:
    fitting = [major for major, needed in CUDA_MIN_DRIVER.items() if driver_major >= needed]
    return f"{max(fitting)}.x" if fitting else "none"


# -- offline install -----------------------------------------------------------------------------
def install_commands(inputs: KaggleInputs, python: str = sys.executable) -> list[list[str]]:
    """pip commands that install the GPU stack (when the wheelhouse has one) and arc25, all with no index."""
    links = [arg for d in inputs.wheel_dirs for arg in ("--find-links", str(d))]
    commands = []
    if torch_wheel(inputs.wheel_dirs) is not None:
        commands.append([python, "-m", "pip", "uninstall", "-y", *TORCH_PACKAGES])
    if inputs.requirements is not None:
        commands.append([python, "-m", "pip", "install", "--no-index", *links, "-r", str(inputs.requirements)])
    if inputs.arc25_wheel is not None:
        # arc25 itself, replacing any other copy; its dependencies came from the requirements or the image
        commands.append([python, "-m", "pip", "install", "--no-index", *links, "--no-deps", "--force-reinstall",
                         str(inputs.arc25_wheel)])
    return commands


def stream(command: list[str], env: dict[str, str] | None = None) -> int:
    """Run a command, printing its output line by line (a notebook shows what a subprocess writes this way)."""
    print("$", " ".join(map(str, command)), flush=True)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    for line in proc.stdout:
        print(line, end="", flush=True)
    return proc.wait()


# -- time ----------------------------------------------------------------------------------------
def deadline_at(notebook_start: float, budget_s: float, reserve_s: float) -> float:
    """The absolute time `arc25 run` must finish by: Kaggle's limit counts from the notebook's start."""
    return notebook_start + budget_s - reserve_s


def time_left(deadline: float, now: float | None = None) -> float:
    return deadline - (time.time() if now is None else now)


def is_competition_rerun(env: dict[str, str] | None = None) -> bool:
    """Kaggle sets KAGGLE_IS_COMPETITION_RERUN in the scoring rerun on the hidden test file, not in Save & Run All."""
    value = (os.environ if env is None else env).get("KAGGLE_IS_COMPETITION_RERUN", "")
    return value.strip().lower() not in ("", "0", "false", "no")
