"""Stage a Kaggle dataset folder: dataset-metadata.json, the files, and a manifest of each file's size and sha256.

Two datasets, so the multi-GB GPU wheelhouse is uploaded once and the small code
dataset as often as the code changes:

- code: the arc25 wheel (built from the checkout);
- wheels: a wheelhouse made by `arc25 wheels` (every wheel but arc25's, its
  requirements-kaggle.txt and wheelhouse.json);
- model: a downloaded model folder (the BARC 8B), checked as `arc25 run` checks it; the notebook finds
  it under /kaggle/input by its files.

Nothing that looks like a credential is ever staged: the kaggle CLI's own files
(kaggle.json, access_token, credentials.json, anything under a .kaggle folder),
.env and .netrc files, and any file whose bytes hold a Kaggle token (the KGAT
prefix and an underscore), a key in its format (a kaggle.json's username and 32-hex key, a
KAGGLE_KEY=<32 hex> line: anyone's key, not only this machine's) or the value of a KAGGLE_KEY /
KAGGLE_API_TOKEN found in the environment or the CLI's files. The folder then holds exactly
what the manifest lists, plus the manifest and the metadata.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from arc25.errors import UserError
from arc25.kaggle.wheelhouse import INFO_NAME, REQUIREMENTS_NAME, human_size

log = logging.getLogger(__name__)

METADATA_NAME = "dataset-metadata.json"
MANIFEST_NAME = "manifest.json"
TOKEN_PREFIX = b"KGAT" + b"_"  # split so this file itself is not a match
CREDENTIAL_NAMES = {"kaggle.json", "credentials.json", ".netrc", "_netrc", ".pypirc"}
SECRET_VARS = ("KAGGLE_KEY", "KAGGLE_API_TOKEN")
MIN_SECRET_LEN = 8  # shorter values would match by chance
# A Kaggle API key by its format, whosever it is: a kaggle.json ({"username": ..., "key": 32 hex digits}, in
# either order, quotes possibly escaped inside another JSON string) or a KAGGLE_KEY assignment (.env, shell)
_Q = rb'\\?"'
_HEX_KEY = _Q + rb"key" + _Q + rb"\s{0,8}:\s{0,8}" + _Q + rb"[0-9a-fA-F]{32}" + _Q
_USERNAME = _Q + rb"username" + _Q + rb"\s{0,8}:\s{0,8}" + _Q + rb"[^\"\\\n]{0,64}" + _Q
KEY_FORMATS = re.compile(_USERNAME + rb"\s{0,8},\s{0,8}" + _HEX_KEY + rb"|" + _HEX_KEY + rb"\s{0,8},\s{0,8}" + _USERNAME
                         + rb"|KAGGLE_KEY\s{0,8}[=:]\s{0,8}[\"']?[0-9a-fA-F]{32}\b")
FORMAT_SPAN = 256  # the longest text KEY_FORMATS matches, for the overlap between chunks
SCAN_MEMBER_MAX = 4 << 20  # archive members larger than this are binaries (.so): names only
SLUG_RE = re.compile(r"[a-z0-9][a-z0-9-]*")


@dataclass
class StagedFile:
    name: str
    size: int
    sha256: str


@dataclass
class Manifest:
    kind: str  # code | wheels | model
    id: str
    arc25_version: str
    created_at: str
    files: list[StagedFile]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def describe(self) -> str:
        lines = [f"{self.kind} dataset {self.id}: {len(self.files)} files, {human_size(self.total_bytes)}"]
        lines += [f"  {human_size(f.size):>10}  {f.name}" for f in self.files]
        return "\n".join(lines)


# -- credentials ---------------------------------------------------------------------------------
def kaggle_config_dirs(env: dict[str, str] | None = None) -> list[Path]:
    """Where the kaggle CLI looks for its files (kaggle 2.x: $KAGGLE_CONFIG_DIR, ~/.kaggle, ~/.config/kaggle)."""
    env = os.environ if env is None else env
    home = Path(env.get("HOME") or Path.home())
    dirs = [Path(env["KAGGLE_CONFIG_DIR"])] if env.get("KAGGLE_CONFIG_DIR") else []
    xdg = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    return dirs + [home / ".kaggle", xdg / "kaggle"]


def secret_values(env: dict[str, str] | None = None) -> list[str]:
    """Credential values to look for in staged files and to hide from output. Never logged."""
    env = os.environ if env is None else env
    values = [env.get(name, "") for name in SECRET_VARS]
    token = env.get("KAGGLE_API_TOKEN", "")
    if token and Path(token).is_file():  # the variable may name a file holding the token
        values.append(_read_quietly(Path(token)))
    for folder in kaggle_config_dirs(env):
        for name in ("access_token", "access_token.txt"):
            values.append(_read_quietly(folder / name))
        try:
            config = json.loads(_read_quietly(folder / "kaggle.json") or "{}")
            values.append(str(config.get("key", "")) if isinstance(config, dict) else "")
        except ValueError:
            pass
    return sorted({v.strip() for v in values if len(v.strip()) >= MIN_SECRET_LEN}, key=len, reverse=True)


def _read_quietly(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return ""


def credential_name(name: str) -> bool:
    """A file name the kaggle CLI (or another tool) keeps a secret in."""
    base = name.rsplit("/", 1)[-1]
    return base in CREDENTIAL_NAMES or base.startswith(".env") or base.startswith("access_token") or \
        ".kaggle" in name.split("/")[:-1]


def _has_secret(data: bytes, secrets: list[bytes]) -> bool:
    """A Kaggle token (TOKEN_PREFIX), a key in kaggle.json's or KAGGLE_KEY's format, or a known secret value."""
    return TOKEN_PREFIX in data or KEY_FORMATS.search(data) is not None or any(s in data for s in secrets)


def _scan_stream(path: Path, secrets: list[bytes]) -> bool:
    overlap = max([FORMAT_SPAN, *map(len, secrets)]) - 1
    tail = b""
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            if _has_secret(tail + chunk, secrets):
                return True
            tail = chunk[-overlap:] if overlap else b""
    return False


def credential_problem(path: Path, shown_as: str, secrets: list[str]) -> str | None:
    """Why `path` must not be staged, or None. Archives: member names, and the contents of the small members."""
    if credential_name(shown_as):
        return f"{shown_as}: looks like a credential file; it is never staged"
    raw = [s.encode() for s in secrets]
    if _scan_stream(path, raw):
        return f"{shown_as}: contains a Kaggle token or key; it is never staged"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if credential_name(info.filename):
                    return f"{shown_as}: holds {info.filename}, which looks like a credential file"
                if not info.is_dir() and info.file_size <= SCAN_MEMBER_MAX and _has_secret(zf.read(info), raw):
                    return f"{shown_as}: its member {info.filename} contains a Kaggle token or key"
    return None


def check_no_credentials(files: list[Path], secrets: list[str] | None = None) -> None:
    secrets = secret_values() if secrets is None else secrets
    for path in files:
        problem = credential_problem(path, str(path), secrets)
        if problem:
            raise UserError(problem)


# -- staging -------------------------------------------------------------------------------------
def check_dataset_id(dataset_id: str) -> tuple[str, str]:
    """owner/slug, with the kaggle CLI's own rule for a new dataset's slug (6 to 50 characters)."""
    owner, _, slug = dataset_id.partition("/")
    if not owner or not slug or "/" in slug:
        raise UserError(f"dataset id {dataset_id!r}: expected owner/slug")
    if not 6 <= len(slug) <= 50 or not SLUG_RE.fullmatch(slug):
        raise UserError(f"dataset id {dataset_id!r}: the slug must be 6 to 50 lowercase letters, digits or '-'")
    return owner, slug


def dataset_metadata(dataset_id: str, title: str, license_name: str) -> dict:
    check_dataset_id(dataset_id)
    if not 6 <= len(title) <= 50:
        raise UserError(f"dataset title {title!r}: must be 6 to 50 characters (kaggle datasets create refuses it)")
    if not license_name:
        raise UserError("dataset licence: exactly one licence name is needed, e.g. other, CC0-1.0 or apache-2.0")
    return {"title": title, "id": dataset_id, "licenses": [{"name": license_name}]}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def wheelhouse_files(wheels_dir: Path) -> list[Path]:
    """A wheelhouse's files for the wheels dataset: every wheel but arc25's (the code dataset has it)."""
    if not wheels_dir.is_dir():
        raise UserError(f"--wheels {wheels_dir}: not a folder")
    files = [p for p in sorted(wheels_dir.glob("*.whl")) if not p.name.startswith("arc25-")]
    if not files:
        raise UserError(f"--wheels {wheels_dir}: no wheels in it; make it with `arc25 wheels --out {wheels_dir}`")
    files += [wheels_dir / name for name in (REQUIREMENTS_NAME, INFO_NAME) if (wheels_dir / name).is_file()]
    return files


def model_files(model_dir: Path) -> list[Path]:
    """A downloaded model folder's files for the model dataset, after the checks `arc25 run` makes on it
    (config.json, tokenizer files, every weights shard present and complete, the tokenizer and its chat
    template load). Its sub-folders (a hub download's .cache, Meta's original/) are not needed: named, left out."""
    from arc25.model_check import check_model_folder  # the run's own checks (it imports transformers lazily)

    check_model_folder(model_dir, "hf")
    left_out = sorted(p.name for p in model_dir.iterdir() if p.is_dir())
    if left_out:
        log.warning("%s: sub-folders left out (the model does not read them): %s", model_dir, ", ".join(left_out))
    return sorted(p for p in model_dir.iterdir() if p.is_file())


def slug_for(name: str) -> str:
    """A dataset slug from a folder name: lowercase letters, digits and '-', 6 to 50 characters."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:50].strip("-")
    return slug if len(slug) >= 6 else f"{slug}-model".lstrip("-")


def _prepare_out(out: Path) -> None:
    """An empty folder: a missing one, an empty one, or one this module staged before (then cleared)."""
    if out.exists() and any(out.iterdir()):
        if not (out / MANIFEST_NAME).is_file():
            raise UserError(f"{out}: not empty and not staged by `arc25 package`; choose an empty or new folder")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def _place(src: Path, dst: Path) -> None:
    """A hard link when possible (a multi-GB wheelhouse staged without copying), else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def stage_dataset(out: Path, kind: str, files: list[Path], metadata: dict, arc25_version: str) -> Manifest:
    """Stage `files` (flat) into `out` with the metadata and a manifest; refuse credentials before copying any."""
    names = [p.name for p in files]
    clashes = {n for n in names if names.count(n) > 1} | {n for n in names if n in (METADATA_NAME, MANIFEST_NAME)}
    if clashes:
        raise UserError(f"cannot stage two files named {', '.join(sorted(clashes))} into one dataset folder")
    check_no_credentials(files)
    _prepare_out(out)
    staged = []
    for src in files:
        _place(src, out / src.name)
        staged.append(StagedFile(src.name, src.stat().st_size, sha256(out / src.name)))
    manifest = Manifest(kind, metadata["id"], arc25_version, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        staged)
    (out / METADATA_NAME).write_text(json.dumps(metadata, indent=2) + "\n")
    (out / MANIFEST_NAME).write_text(json.dumps(asdict(manifest), indent=1) + "\n")
    check_staged(out)
    return manifest


def read_manifest(folder: Path) -> Manifest:
    try:
        data = json.loads((folder / MANIFEST_NAME).read_text())
        return Manifest(data["kind"], data["id"], data["arc25_version"], data["created_at"],
                        [StagedFile(**f) for f in data["files"]])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{folder / MANIFEST_NAME}: missing or unreadable ({exc}); stage the folder with "
                        "`arc25 package`") from None


def check_staged(folder: Path, secrets: list[str] | None = None) -> Manifest:
    """The folder holds exactly the manifest's files (same sizes) plus the manifest and metadata, and no credential."""
    manifest = read_manifest(folder)
    if not (folder / METADATA_NAME).is_file():
        raise UserError(f"{folder / METADATA_NAME}: missing; stage the folder with `arc25 package`")
    expected = {f.name: f.size for f in manifest.files} | {METADATA_NAME: None, MANIFEST_NAME: None}
    present = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() or p.is_symlink()}
    extra, missing = sorted(present - set(expected)), sorted(set(expected) - present)
    if extra:
        raise UserError(f"{folder}: {extra[0]} is not in the manifest; only listed files are uploaded (re-stage)")
    if missing:
        raise UserError(f"{folder}: {missing[0]} is listed in the manifest but missing (re-stage)")
    for name, size in expected.items():
        if size is not None and (folder / name).stat().st_size != size:
            raise UserError(f"{folder / name}: size differs from the manifest (re-stage)")
    secrets = secret_values() if secrets is None else secrets
    for name in sorted(present):
        problem = credential_problem(folder / name, str(folder / name), secrets)
        if problem:
            raise UserError(problem)
    return manifest
