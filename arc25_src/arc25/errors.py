"""User errors: the exception the CLI turns into one clear line without a traceback, and the path checks
that raise it before any work is done (so a bad --out fails in a second, not after an hour of solving)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


USER_ERROR_EXIT = 2  # the exit code of a UserError, from the CLI and from a worker process


class UserError(Exception):
    """Bad input from the user (a file, a task, an option). The message says where and why."""


def one_line(exc: BaseException) -> str:
    """An exception as `Type: first line`, for messages that must stay on one line."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def writable_dir(path: str | Path, what: str, named: Path | None = None) -> Path:
    """Create folder `path` (and its parents) and prove a file can be written in it, else a UserError
    naming `named` (default: the folder)."""
    path = Path(path).absolute()
    named = named or path
    for p in [*reversed(path.parents), path]:
        if p.exists() and not p.is_dir():
            where = "it" if p == named else str(p)
            raise UserError(f"{named}: cannot write {what}: {where} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"{named}: cannot write {what} ({exc.strerror or one_line(exc)})") from None
    return path


def writable_file(path: str | Path, what: str) -> Path:
    """`path` can be written as a file: it is not a folder and its folder can be created and written."""
    path = Path(path).absolute()
    if path.is_dir():
        raise UserError(f"{path}: cannot write {what}: it is a folder")
    writable_dir(path.parent, what, named=path)
    return path


def existing_dir(path: str | Path, what: str) -> Path:
    """`path` is a folder that exists, else UserError."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such {what}")
    if not path.is_dir():
        raise UserError(f"{path}: not a folder (expected a {what})")
    return path
