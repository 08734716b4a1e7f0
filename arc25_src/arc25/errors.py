"""User errors: the exception the CLI turns into one clear line without a traceback, and the path checks
that raise it before any work is done (so a bad --out fails in a second, not after an hour of solving)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class UserError(Exception):
    """Bad input from the user (a file, a task, an option). The message says where and why."""


def one_line(exc: BaseException) -> str:
    """An exception as `Type: first line`, for messages that must stay on one line."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _file_in_the_way(path: Path) -> Path | None:
    """The first of `path`'s ancestors (or `path`) that exists and is not a folder."""
    for p in [*reversed(path.parents), path]:
        if p.exists() and not p.is_dir():
            return p
    return None


def writable_dir(path: str | Path, what: str) -> Path:
    """Create folder `path` (and its parents) and prove a file can be written in it, else UserError."""
    path = Path(path).absolute()
    blocker = _file_in_the_way(path)
    if blocker is not None:
        raise UserError(f"{path}: cannot write {what}: {blocker} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"{path}: cannot write {what} ({exc.strerror or one_line(exc)})") from None
    return path


def writable_file(path: str | Path, what: str) -> Path:
    """`path` can be written as a file: it is not a folder and its folder can be created and written."""
    path = Path(path).absolute()
    if path.is_dir():
        raise UserError(f"{path}: cannot write {what}: it is a folder")
    blocker = _file_in_the_way(path.parent)
    if blocker is not None:
        raise UserError(f"{path}: cannot write {what}: {blocker} is a file, not a folder")
    writable_dir(path.parent, what)
    return path


def existing_dir(path: str | Path, what: str) -> Path:
    """`path` is a folder that exists, else UserError."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: {what} not found")
    if not path.is_dir():
        raise UserError(f"{path}: not a folder ({what} expected)")
    return path
