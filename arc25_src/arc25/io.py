"""Atomic, crash-safe files: a reader sees the old content or the new, never half of one."""

from __future__ import annotations

import gzip
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

log = logging.getLogger(__name__)


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
    with open(path, "ab") as f:
        f.write(gzip.compress(data.encode()))
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Rows of a .jsonl or .jsonl.gz file; a truncated gzip tail (crash) ends the rows."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    rows = 0
    with opener(path, "rt") as f:
        try:
            for line in f:
                if line.strip():
                    rows += 1
                    yield json.loads(line)
        except (EOFError, gzip.BadGzipFile) as exc:
            log.warning("%s: truncated or corrupt after %d rows (%s); the rows before it stand", path, rows, exc)
