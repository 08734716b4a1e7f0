"""The offline wheelhouse: every wheel the Kaggle run needs, for one Python and one platform.

Kaggle runs the notebook with internet off, so `pip install --no-index --find-links`
on the attached wheels dataset is the only way in. A wheelhouse must match the
image's Python exactly (cp311 wheels do not install on 3.12) and its glibc, so the
download names both, takes wheels only, and then proves the set resolves with no
index at all for that target, before anything is uploaded.

pip's --python-version picks wheel tags only: environment markers (`scipy==1.18.1;
python_version >= "3.12"` in the requirements, `six; python_version >= "3.12"` in a
wheel's metadata) are evaluated for the interpreter pip runs on. Run on 3.11 for 3.12,
`pip download -r` fetched the 3.11 side of every marker line (scipy 1.17.1, contourpy
1.3.3, no six) and the offline check, on 3.11 too, passed; under a real 3.12 the install
then failed at scipy. So the requirements' markers are evaluated here for the target
(`requirements_for`) and pip gets only the lines that apply, and pip itself runs on an
interpreter of the target's version (`find_python`: this one, python3.X on PATH, or
pyenv's), which evaluates the dependencies' markers and makes the offline check exactly
what the notebook runs. Without such an interpreter nothing is downloaded.

pip here runs with its config files switched off (PIP_CONFIG_FILE=/dev/null): a
machine's pip.conf can hold constraints (a torch cap) and local find-links (a CPU
torch build whose local version `+cpu` would win over the CUDA wheel of the same
version). The index is PyPI, or $PIP_INDEX_URL when set.
"""

from __future__ import annotations

import json
import logging
import os
import platform
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


# platform tag -> the OS markers it implies, and platform_machine from the tag's group 1
_PLATFORM_SYSTEMS = (
    (r"(?:many|musl)?linux(?:\d+|_\d+_\d+)?_(\w+)", {"sys_platform": "linux", "platform_system": "Linux"}, {}),
    (r"macosx_\d+_\d+_(\w+)", {"sys_platform": "darwin", "platform_system": "Darwin"}, {}),
    (r"win_?(\w*)", {"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt"},
     {"amd64": "AMD64", "arm64": "ARM64", "32": "x86", "": "x86"}))


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

    def marker_environment(self) -> dict[str, str]:
        """PEP 508 environment markers of the target machine, not of this one (full version: X.Y.0)."""
        from packaging.markers import default_environment

        env = default_environment() | {
            "python_version": self.python_version, "python_full_version": f"{self.python_version}.0",
            "implementation_name": "cpython", "implementation_version": f"{self.python_version}.0",
            "platform_python_implementation": "CPython"}
        for pattern, system, machines in _PLATFORM_SYSTEMS:
            if match := re.fullmatch(pattern, self.platform):
                machine = machines.get(match.group(1), match.group(1))
                return env | {"os_name": "posix"} | system | {"platform_machine": machine}
        return env  # an unknown tag: this machine's OS markers

    def pip_args(self) -> list[str]:
        args = ["--only-binary=:all:", "--python-version", self.python_version, "--implementation", "cp"]
        for tag in self.platform_tags():
            args += ["--platform", tag]
        return args


@dataclass(frozen=True)
class Interpreter:
    """A Python of the target's version with pip: pip on it evaluates markers as the Kaggle image's would."""

    path: str
    version: str  # its full version, e.g. 3.12.1

    def __str__(self) -> str:
        return f"Python {self.version} ({self.path})"


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
    checked_with: str = ""  # the interpreter of the target's version that resolved it
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
            lines.append(f"offline resolution: OK ({len(self.resolved)} packages from the folder alone, no index, "
                         f"under {self.checked_with})")
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


def _probe(path: str) -> str | None:
    """The full version of the Python at `path` if it runs and has pip, else None."""
    try:
        proc = subprocess.run([path, "-I", "-c", "import platform, pip; print(platform.python_version())"],
                              capture_output=True, text=True, timeout=60)
    except OSError:
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def _pyenv_pythons(version: str) -> list[str]:
    """pyenv's interpreters of that version, newest patch first (its shims run only the selected version)."""
    found, root = {}, Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    for path in root.glob(f"versions/{version}.*/bin/python{version}"):
        if match := re.fullmatch(rf"{re.escape(version)}\.(\d+)", path.parents[1].name):
            found[int(match.group(1))] = str(path)
    return [found[patch] for patch in sorted(found, reverse=True)]


def find_python(version: str, given: str | None = None) -> Interpreter:
    """An interpreter of the target's version with pip: `given`, else this one, python3.X on PATH, pyenv's."""
    if given:
        full = _probe(given)
        if full is None or not full.startswith(f"{version}."):
            raise UserError(f"--python {given}: not a Python {version} with pip "
                            f"({'found ' + full if full else 'it does not run, or has no pip'})")
        return Interpreter(given, full)
    for path in [sys.executable, shutil.which(f"python{version}"), *_pyenv_pythons(version)]:
        if path and (full := _probe(path)) and full.startswith(f"{version}."):
            return Interpreter(path, full)
    raise UserError(f"no Python {version} with pip here (not this {platform.python_version()}, no working "
                    f"python{version} on PATH, none under pyenv): pip evaluates markers for the Python it runs on, "
                    f"so the wheelhouse is made and checked under one: pass --python PATH")


def requirements_for(requirements: Path, target: Target) -> list[str]:
    """The requirement lines that apply to the target, their markers evaluated for it and dropped."""
    from packaging.markers import InvalidMarker
    from packaging.requirements import InvalidRequirement, Requirement

    environment, lines = target.marker_environment(), []
    for number, raw in enumerate(requirements.read_text().splitlines(), 1):
        text = re.sub(r"(^|\s)#.*", "", raw).strip()
        if not text:
            continue
        if text.startswith("-"):
            raise UserError(f"{requirements}:{number}: pip options are not supported here, only requirements: {text}")
        try:
            req = Requirement(text)
            applies = req.marker is None or req.marker.evaluate(environment)
        except (InvalidRequirement, InvalidMarker) as e:
            raise UserError(f"{requirements}:{number}: not a requirement: {e}") from None
        if applies:
            extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
            lines.append(req.name + extras + (f" @ {req.url}" if req.url else str(req.specifier)))
    return lines


def _pip(args: list[str], capture: bool = False, python: str | None = None) -> subprocess.CompletedProcess:
    # another interpreter runs isolated (-I): this one's PYTHONPATH and user site are not its
    command = [python, "-I"] if python and python != sys.executable else [sys.executable]
    command += ["-m", "pip", *args]
    log.debug("$ %s", " ".join(command))
    return subprocess.run(command, env=pip_env(), text=True, capture_output=capture)


def list_wheels(folder: Path) -> list[Wheel]:
    return [Wheel(p.name, p.stat().st_size) for p in sorted(folder.glob("*.whl"))]


def download(requirements: Path, out: Path, target: Target, python: Interpreter) -> None:
    """Every wheel of the requirements that apply to the target and their dependencies, into `out`."""
    with tempfile.TemporaryDirectory(prefix="arc25-req-") as tmp:
        applying = Path(tmp) / requirements.name
        applying.write_text("".join(line + "\n" for line in requirements_for(requirements, target)))
        log.info("downloading %s for Python %s / %s with pip on %s", requirements, target.python_version,
                 target.platform, python)
        proc = _pip(["download", "--dest", str(out), *target.pip_args(), "-r", str(applying)], python=python.path)
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


def _resolve(args: list[str], target: Target, folder: Path, python: Interpreter) -> tuple[list[str], str]:
    """pip's resolver against `folder` alone: (name==version picked, '') or ([], the error)."""
    with tempfile.TemporaryDirectory(prefix="arc25-resolve-") as tmp:
        report = Path(tmp) / "report.json"
        proc = _pip(["install", "--dry-run", "--ignore-installed", "--no-index", "--find-links", str(folder),
                     "--target", str(Path(tmp) / "target"), "--report", str(report), "--quiet", *target.pip_args(),
                     *args], capture=True, python=python.path)
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


def verify_offline(folder: Path, requirements: Path, arc25_wheel: Path, target: Target,
                   python: Interpreter) -> WheelhouseReport:
    """Resolve the requirements (with their dependencies) and the arc25 wheel against the folder, no index,
    with pip on a Python of the target's version: the notebook's own install, markers and all."""
    report = WheelhouseReport(str(folder), target.python_version, target.platform, list_wheels(folder),
                              checked_with=str(python))
    resolved, error = _resolve(["-r", str(requirements)], target, folder, python)
    if not error:
        # arc25 itself without its dependencies: they are either pinned above or the image's (listed below)
        mine, error = _resolve(["--no-deps", str(arc25_wheel)], target, folder, python)
        resolved = sorted(set(resolved) | set(mine))
    report.resolved, report.offline_ok, report.offline_error = resolved, not error, error
    if report.offline_ok:
        report.not_pinned = not_pinned(arc25_requirements(arc25_wheel), resolved)
    return report


def build_wheelhouse(out: Path, requirements: Path, target: Target, download_wheels: bool = True,
                     python: str | None = None) -> WheelhouseReport:
    """Download the requirements' wheels, build arc25's wheel beside them, check the set offline, and record it,
    with pip on a Python of the target's version (`python`, or one `find_python` finds)."""
    if not requirements.is_file():
        raise UserError(f"{requirements}: requirements file not found (run from the checkout, or pass --requirements)")
    interpreter = find_python(target.python_version, python)
    requirements_for(requirements, target)  # a bad line is named before anything is downloaded
    out.mkdir(parents=True, exist_ok=True)
    if download_wheels:
        download(requirements, out, target, interpreter)
    wheel = build_arc25_wheel(out)
    if requirements.resolve() != (out / REQUIREMENTS_NAME).resolve():
        shutil.copy2(requirements, out / REQUIREMENTS_NAME)  # the folder says what it was made from
    report = verify_offline(out, out / REQUIREMENTS_NAME, wheel, target, interpreter)
    info = asdict(report) | {"total_bytes": report.total_bytes}
    (out / INFO_NAME).write_text(json.dumps(info, indent=1) + "\n")
    return report
