"""The offline wheelhouse: every wheel the Kaggle run needs, for one Python and one platform.

Kaggle runs the notebook with internet off, so `pip install --no-index --find-links`
on the attached wheels dataset is the only way in. A wheelhouse must match the
image's Python exactly (cp311 wheels do not install on 3.12) and its glibc, so the
download names both, takes wheels only, and then proves the set resolves with no
index at all for that target, before anything is uploaded.

pip here runs with its config files switched off (PIP_CONFIG_FILE=/dev/null): a
machine's pip.conf can hold constraints (a torch cap) and local find-links (a CPU
torch build whose local version `+cpu` would win over the CUDA wheel of the same
version). The index is PyPI, or $PIP_INDEX_URL when set.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from arc25.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_PYTHON = "3.12"  # Kaggle's image since late 2025 (3.11 before)
DEFAULT_PLATFORM = "manylinux_2_35_x86_64"  # Kaggle's image is Ubuntu 22.04: glibc 2.35
REQUIREMENTS_NAME = "requirements-kaggle.txt"
INFO_NAME = "wheelhouse.json"
# pip settings that must not leak into a download for another machine or into an offline check
_PIP_VARS_DROPPED = ("PIP_FIND_LINKS", "PIP_CONSTRAINT", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX", "PIP_TARGET",
                     "PIP_PREFIX", "PIP_USER", "PIP_REQUIRE_VIRTUALENV", "PIP_NO_DEPS", "PIP_ONLY_BINARY",
                     "PIP_PLATFORM", "PIP_PYTHON_VERSION")


@dataclass
class Target:
    """The interpreter and platform the wheels are for."""

    python_version: str = DEFAULT_PYTHON
    platform: str = DEFAULT_PLATFORM

    def __post_init__(self) -> None:
        if not re.fullmatch(r"3\.\d{1,2}", self.python_version):
            raise UserError(f"--python-version {self.python_version!r}: expected a CPython version like 3.11 or 3.12")

    def platform_tags(self) -> list[str]:
        """pip takes a manylinux tag literally: list every older glibc too, and the legacy aliases."""
        match = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", self.platform)
        if not match:
            return [self.platform]
        glibc, arch = int(match.group(1)), match.group(2)
        tags = [f"manylinux_2_{minor}_{arch}" for minor in range(glibc, 4, -1)]
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        return tags + [f"{name}_{arch}" for minor, name in legacy.items() if glibc >= minor]

    def pip_args(self) -> list[str]:
        args = ["--only-binary=:all:", "--python-version", self.python_version, "--implementation", "cp"]
        for tag in self.platform_tags():
            args += ["--platform", tag]
        return args


@dataclass
class Wheel:
    name: str
    size: int


@dataclass
class WheelhouseReport:
    """What `arc25 wheels` made and checked; also written to the folder as wheelhouse.json."""

    folder: str
    python_version: str
    platform: str
    wheels: list[Wheel]
    resolved: list[str] = field(default_factory=list)  # name==version pip picked offline
    offline_ok: bool = False
    offline_error: str = ""
    not_pinned: list[str] = field(default_factory=list)  # arc25 requirements the image must provide

    @property
    def total_bytes(self) -> int:
        return sum(w.size for w in self.wheels)

    def largest(self, n: int = 10) -> list[Wheel]:
        return sorted(self.wheels, key=lambda w: w.size, reverse=True)[:n]

    def describe(self) -> str:
        lines = [f"{self.folder}: {len(self.wheels)} wheels, {human_size(self.total_bytes)} "
                 f"(Python {self.python_version}, {self.platform})", "largest wheels:"]
        lines += [f"  {human_size(w.size):>10}  {w.name}" for w in self.largest()]
        if self.offline_ok:
            lines.append(f"offline resolution: OK ({len(self.resolved)} packages from the folder alone, no index)")
        else:
            lines.append(f"offline resolution: FAILED: {self.offline_error}")
        if self.not_pinned:
            lines.append("arc25 requirements not in the wheelhouse (the image must provide them): "
                         + ", ".join(self.not_pinned))
        return "\n".join(lines)


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1024
    return f"{n:.1f} GiB"


def pip_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _PIP_VARS_DROPPED}
    env["PIP_CONFIG_FILE"] = os.devnull  # pip then reads no config file at all
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def pip_python(python_version: str) -> str:
    """An interpreter of the target's version when there is one: pip evaluates environment markers
    (`; python_version >= "3.12"`) for the Python it runs on, whatever --python-version says."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == python_version:
        return sys.executable
    found = shutil.which(f"python{python_version}")
    if found and subprocess.run([found, "-m", "pip", "--version"], capture_output=True).returncode == 0:
        return found
    log.warning("no python%s with pip on PATH: environment markers are evaluated for Python %d.%d", python_version,
                *sys.version_info[:2])
    return sys.executable


def _pip(args: list[str], capture: bool = False, python: str | None = None) -> subprocess.CompletedProcess:
    command = [python or sys.executable, "-m", "pip", *args]
    log.debug("$ %s", " ".join(command))
    return subprocess.run(command, env=pip_env(), text=True, capture_output=capture)


def list_wheels(folder: Path) -> list[Wheel]:
    return [Wheel(p.name, p.stat().st_size) for p in sorted(folder.glob("*.whl"))]


def download(requirements: Path, out: Path, target: Target) -> None:
    """Every wheel of the requirements and their dependencies, for the target, into `out`."""
    proc = _pip(["download", "--dest", str(out), *target.pip_args(), "-r", str(requirements)],
                python=pip_python(target.python_version))
    if proc.returncode != 0:
        raise UserError(f"{requirements}: pip download for Python {target.python_version} / {target.platform} "
                        f"failed (exit {proc.returncode}); see pip's message above")


def source_root() -> Path:
    """The checkout arc25 is imported from: the arc25 wheel is built from it."""
    root = Path(__file__).resolve().parents[3]
    if not (root / "pyproject.toml").is_file() or not (root / "arc25_src" / "arc25").is_dir():
        raise UserError(f"{root}: not an arc25 checkout (no pyproject.toml); the arc25 wheel is built from the "
                        "checkout: run this from an editable install (pip install -e .)")
    return root


def build_arc25_wheel(out: Path, root: Path | None = None) -> Path:
    """Build arc25's wheel into `out` from a clean copy of the sources (no build/ or egg-info in the checkout)."""
    root = root or source_root()
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("arc25-*.whl"):
        old.unlink()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    with tempfile.TemporaryDirectory(prefix="arc25-build-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(root / name, src / name)
        shutil.copytree(root / "arc25_src", src / "arc25_src", ignore=ignore)
        # No build isolation: the build runs offline with this environment's setuptools.
        proc = _pip(["wheel", "--no-deps", "--no-build-isolation", "--no-index", "--wheel-dir", str(out), str(src)],
                    capture=True)
    if proc.returncode != 0:
        raise UserError(f"building the arc25 wheel from {root} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    wheels = sorted(out.glob("arc25-*.whl"))
    if len(wheels) != 1:
        raise UserError(f"{out}: expected one arc25 wheel after the build, found {len(wheels)}")
    log.info("built %s", wheels[0])
    return wheels[0]


def _resolve(args: list[str], target: Target, folder: Path) -> tuple[list[str], str]:
    """pip's resolver against `folder` alone: (name==version picked, '') or ([], the error)."""
    with tempfile.TemporaryDirectory(prefix="arc25-resolve-") as tmp:
        report = Path(tmp) / "report.json"
        proc = _pip(["install", "--dry-run", "--ignore-installed", "--no-index", "--find-links", str(folder),
                     "--target", str(Path(tmp) / "target"), "--report", str(report), "--quiet", *target.pip_args(),
                     *args], capture=True, python=pip_python(target.python_version))
        if proc.returncode != 0:
            lines = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
            return [], " | ".join(lines[-3:]) or f"pip exit {proc.returncode}"
        picked = json.loads(report.read_text()).get("install", [])
    return sorted(f"{p['metadata']['name']}=={p['metadata']['version']}" for p in picked), ""


def arc25_requirements(wheel: Path) -> list[str]:
    """arc25's own Requires-Dist (no extras), read from its wheel."""
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        text = zf.read(meta).decode()
    return [line.split(":", 1)[1].strip() for line in text.splitlines()
            if line.startswith("Requires-Dist:") and "extra ==" not in line]


def not_pinned(requirements: list[str], resolved: list[str]) -> list[str]:
    """The requirements that no resolved name==version satisfies."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    versions = {canonicalize_name(p.split("==")[0]): p.split("==")[1] for p in resolved}
    missing = []
    for text in requirements:
        req = Requirement(text)
        version = versions.get(canonicalize_name(req.name))
        if version is None or not req.specifier.contains(version, prereleases=True):
            missing.append(str(req))
    return missing


def verify_offline(folder: Path, requirements: Path, arc25_wheel: Path, target: Target) -> WheelhouseReport:
    """Resolve the requirements (with their dependencies) and the arc25 wheel against the folder, no index."""
    report = WheelhouseReport(str(folder), target.python_version, target.platform, list_wheels(folder))
    resolved, error = _resolve(["-r", str(requirements)], target, folder)
    if not error:
        # arc25 itself without its dependencies: they are either pinned above or the image's (listed below)
        mine, error = _resolve(["--no-deps", str(arc25_wheel)], target, folder)
        resolved = sorted(set(resolved) | set(mine))
    report.resolved, report.offline_ok, report.offline_error = resolved, not error, error
    if report.offline_ok:
        report.not_pinned = not_pinned(arc25_requirements(arc25_wheel), resolved)
    return report


def build_wheelhouse(out: Path, requirements: Path, target: Target, download_wheels: bool = True) -> WheelhouseReport:
    """Download the requirements' wheels, build arc25's wheel beside them, check the set offline, and record it."""
    if not requirements.is_file():
        raise UserError(f"{requirements}: requirements file not found (run from the checkout, or pass --requirements)")
    out.mkdir(parents=True, exist_ok=True)
    if download_wheels:
        download(requirements, out, target)
    wheel = build_arc25_wheel(out)
    if requirements.resolve() != (out / REQUIREMENTS_NAME).resolve():
        shutil.copy2(requirements, out / REQUIREMENTS_NAME)  # the folder says what it was made from
    report = verify_offline(out, out / REQUIREMENTS_NAME, wheel, target)
    info = asdict(report) | {"total_bytes": report.total_bytes}
    (out / INFO_NAME).write_text(json.dumps(info, indent=1) + "\n")
    return report
