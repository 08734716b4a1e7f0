"""Atomic, crash-safe files: a reader sees the old content or the new, never half of one.

The run's own files are opened only through `open_regular`: a path that is not a regular file
(a FIFO or device a program left at `claims/<task>.json`, a symlink swapped in) is refused with
`NotRegularFile` (an OSError: callers treat it as an unreadable file) instead of blocking.
A plain `open()` of a FIFO with no writer blocks for ever, and a signal does not free it: the
run's SIGTERM handler only records the stop, and Python retries the interrupted open (PEP 475)
(tests/test_run_dir_safety.py: the run never ended before this). O_NONBLOCK makes the open return at
once, and fstat tells what was opened before anything is read or written.
"""

from __future__ import annotations

import errno
import gzip
import io
import json
import logging
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

log = logging.getLogger(__name__)


class NotRegularFile(OSError):
    """A path the run reads or appends to is a FIFO, a device, a socket, a folder or a symlink."""


def open_regular(path: str | Path, mode: str = "r", follow: bool = False) -> io.IOBase:
    """Open a regular file without ever blocking on a special one: O_NONBLOCK (and O_NOFOLLOW unless
    `follow`), then fstat. Reading (r, rb), anything but a regular file raises NotRegularFile; appending
    (a, ab), a special file or symlink where the run keeps its file is replaced by a new file, with a
    warning, so the log or predictions go on (a folder still raises)."""
    try:
        return _open_regular(path, mode, follow)
    except NotRegularFile as exc:
        if mode.startswith("r") or exc.errno == errno.EISDIR:
            raise
        log.warning("%s: %s where the run keeps a file; replaced by a new file", path, exc.strerror)
        os.unlink(path)
        return _open_regular(path, mode, follow)


def _open_regular(path: str | Path, mode: str, follow: bool) -> io.IOBase:
    flags = os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    flags |= os.O_RDONLY if mode.startswith("r") else os.O_WRONLY | os.O_APPEND | os.O_CREAT
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):  # a symlink under O_NOFOLLOW; a FIFO with no reader
            raise NotRegularFile(exc.errno, f"not a regular file ({exc.strerror})", str(path)) from None
        raise
    try:
        kind = os.fstat(fd).st_mode
        if stat.S_ISDIR(kind):
            raise NotRegularFile(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(kind):
            raise NotRegularFile(errno.EINVAL, f"not a regular file ({_kind(kind)})", str(path))
        os.set_blocking(fd, True)  # no effect on a regular file's reads; plain file semantics from here
        return os.fdopen(fd, mode)
    except BaseException:
        os.close(fd)
        raise


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"


def read_text(path: str | Path, follow: bool = False) -> str:
    """The text of a regular file (see `open_regular`)."""
    with open_regular(path, "r", follow) as f:
        return f.read()


def loads_noting_duplicates(text: str, source: str) -> Any:
    """json.loads, keeping the last value of a duplicated key as json.loads does (and as Kaggle's own
    loader would), but saying so: one warning per top-level key that appears more than once (a task id
    twice in a challenges or solutions file silently drops the other task)."""
    seen: list[tuple[dict[str, Any], list[str]]] = []

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        data = dict(pairs)
        if len(data) < len(pairs):
            counts: dict[str, int] = {}
            for key, _ in pairs:
                counts[key] = counts.get(key, 0) + 1
            seen.append((data, [key for key, n in counts.items() if n > 1]))
        return data

    data = json.loads(text, object_pairs_hook=hook)
    for obj, keys in seen:
        if obj is data:  # the top level: task ids
            for key in keys:
                log.warning("%s: task id %r appears more than once; keeping the last one", source, key)
    return data


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write via a temp file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; results are for other users and tools too
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, separators=(",", ":")) + "\n")


def append_jsonl_gz(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Append rows as one more gzip member; a reader of concatenated members sees all rows.

    A crash mid-append can leave a truncated last member: `read_jsonl` stops there.
    """
    data = "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in rows)
    with open_regular(path, "ab") as f:
        f.write(gzip.compress(data.encode()))
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Rows of a .jsonl or .jsonl.gz file; a truncated gzip tail (crash) ends the rows."""
    path = Path(path)
    rows = 0
    with open_regular(path, "rb") as raw, \
            gzip.open(raw, "rt", encoding="utf-8") if path.suffix == ".gz" else io.TextIOWrapper(raw, "utf-8") as f:
        try:
            for line in f:
                if line.strip():
                    rows += 1
                    yield json.loads(line)
        except (EOFError, gzip.BadGzipFile) as exc:
            log.warning("%s: truncated or corrupt after %d rows (%s); the rows before it stand", path, rows, exc)
