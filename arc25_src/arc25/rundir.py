"""The run folder: where everything of a run lives, and the one place that knows its layout.

RUN_DIR/
    run.json                            challenges, solutions, task_ids (claim order), n_workers, devices,
                                        started_at, deadline, time_limit_s, config, skipped_tasks
    tasks/<name>/result.json            the task's TaskResult (arc25.task_result), rewritten atomically
    tasks/<name>/predictions.jsonl.gz   every completion, its augmentation, what its program did
    claims/<name>.json, .lock           who works on what (arc25.claims); run.lock: one parent per RUN_DIR
    workers/worker-<k>.log              the worker's log (its stdout and stderr)
    workers/worker-<k>.status.json      {worker, pid, state, tasks: [{task_id, phase, epoch}], engine, ...}
    workers/worker-<k>.timeline.jsonl   one line per task attempt
    workers/worker-<k>.engine.jsonl     one line per engine call (generate / train), for busy time
    submission.json                     written when the run starts (fallbacks), at the deadline and at the end
    .merge-space                        disk space held for the final merge while the workers run (arc25.supervisor)

<name> is `task_dir_name(task_id)`, the one place a task id becomes a file name. Task ids are
data from a file nobody vetted: `../x`, `/etc/passwd`, "", ".", "..", a NUL byte or 300
characters must never become a path. An id of 1-64 lowercase letters and digits (every ARC
id: 8 hex digits) is its own name; any other id becomes a readable prefix (its letters,
digits and underscores, at most 40) + "-" + 16 hex digits of its SHA-256. The two forms cannot
collide (only the second has a "-"), names are at most 57 characters, never start with "."
or "-". The files keep the raw id inside (result.json, claims), and readers check it.

Logs are best effort: the timeline, the engine log and the status files are written through
`append_log_line` / `write_status`, which drop what cannot be written (a full disk, an unwritable path)
with one warning per file. Issue 18: a failed timeline write used to crash the workers and the parent
before the merge, so a full disk cost the whole submission; results, claims and submission.json are
not logs and still raise.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

from arc25.errors import one_line
from arc25.io import atomic_write_json, open_regular, read_text
from arc25.task_result import TaskResult

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
TASKS_DIR = "tasks"
CLAIMS_DIR = "claims"
WORKERS_DIR = "workers"
SUBMISSION_FILE = "submission.json"
RESULT_FILE = "result.json"
PREDICTIONS_FILE = "predictions.jsonl.gz"


_PLAIN_ID = re.compile(r"[0-9a-z]{1,64}")
_UNSAFE = re.compile(r"[^0-9A-Za-z_]+")
PREFIX_CHARS = 40
HASH_CHARS = 16


# -- tasks -------------------------------------------------------------------------------------


def task_dir_name(task_id: str) -> str:
    """The file name for a task id (see the module docstring): the id itself when it is plain, else a
    sanitized prefix + a hash of the raw id. Every path derived from a task id goes through here."""
    if _PLAIN_ID.fullmatch(task_id):
        return task_id
    digest = hashlib.sha256(task_id.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_CHARS]
    prefix = _UNSAFE.sub("_", task_id)[:PREFIX_CHARS].strip("_") or "id"
    return f"{prefix}-{digest}"


def tasks_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / TASKS_DIR


def task_dir(run_dir: str | Path, task_id: str) -> Path:
    return tasks_dir(run_dir) / task_dir_name(task_id)


def result_path(run_dir: str | Path, task_id: str) -> Path:
    return task_dir(run_dir, task_id) / RESULT_FILE


def predictions_path(run_dir: str | Path, task_id: str) -> Path:
    return task_dir(run_dir, task_id) / PREDICTIONS_FILE


def claim_path(run_dir: str | Path, task_id: str) -> Path:
    return Path(run_dir) / CLAIMS_DIR / f"{task_dir_name(task_id)}.json"


def read_result(run_dir: str | Path, task_id: str, warn: bool = True) -> TaskResult | None:
    """The task's result, or None when missing or unreadable (with `warn`, a warning says which).

    The one reader of results: claims (is it done?), the merger and the report.
    """
    path = result_path(run_dir, task_id)
    try:
        result = TaskResult.from_dict(json.loads(read_text(path)))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        if warn:
            log.warning("%s: unreadable result ignored (%s)", path, exc)
        return None
    if result.task_id != task_id:
        if warn:
            log.warning("%s: result is for task %r; ignored", path, result.task_id)
        return None
    return result


# -- workers -----------------------------------------------------------------------------------


def workers_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / WORKERS_DIR


def status_path(run_dir: str | Path, index: int) -> Path:
    return workers_dir(run_dir) / f"worker-{index}.status.json"


def timeline_path(run_dir: str | Path, index: int) -> Path:
    return workers_dir(run_dir) / f"worker-{index}.timeline.jsonl"


def engine_path(run_dir: str | Path, index: int) -> Path:
    return workers_dir(run_dir) / f"worker-{index}.engine.jsonl"


def log_path(run_dir: str | Path, index: int) -> Path:
    return workers_dir(run_dir) / f"worker-{index}.log"


def read_json_or_none(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(read_text(path))
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def read_jsonl_rows(path: Path) -> list[dict[str, Any]]:
    """The whole lines of a JSONL file that parse as objects (a line being written is skipped)."""
    rows = []
    try:
        lines = read_text(path).splitlines()
    except OSError:
        return rows
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def last_line(path: Path) -> str:
    """The last line of a log file (a worker's last words), for the parent's error message."""
    try:
        with open_regular(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 2000))
            lines = f.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else "(empty log)"
    except OSError:
        return "(no log)"


_DROPPED: Counter[str] = Counter()  # log file -> lines or rewrites this process could not write


def log_write_failed(path: Path, exc: OSError) -> None:
    """Count a dropped log write; the first one per file says so in one warning line."""
    _DROPPED[str(path)] += 1
    if _DROPPED[str(path)] == 1:
        log.warning("%s: cannot write (%s); dropping its lines (logs are best effort, results come first)",
                    path, exc.strerror or one_line(exc))


def dropped_log_writes() -> dict[str, int]:
    return dict(_DROPPED)


def append_log_line(path: Path, row: dict[str, Any]) -> bool:
    """Append one JSON line to a log file, best effort: False (counted, warned once) when it cannot be written.
    A single small write, so concurrent readers see whole lines."""
    try:
        with open_regular(path, "a") as f:
            f.write(json.dumps(row, separators=(",", ":")) + "\n")
        return True
    except OSError as exc:
        log_write_failed(path, exc)
        return False


def write_status(path: Path, data: dict[str, Any]) -> bool:
    """Rewrite a worker's status file atomically, best effort. When it cannot be written, its mtime is still
    touched (no space needed), so the parent, which reads the newer of `updated_at` and the mtime
    (`status_age_s`), does not take a live worker on a full disk for a frozen one."""
    try:
        atomic_write_json(path, data)
        return True
    except OSError as exc:
        log_write_failed(path, exc)
        try:
            os.utime(path)
        except OSError:
            pass
        return False


def status_age_s(path: Path, status: dict[str, Any], now: float) -> float:
    """Seconds since the worker last refreshed its status file (its content, or only its mtime on a full disk)."""
    try:
        mtime = path.stat().st_mtime
    except OSError:
        mtime = 0.0
    return now - max(float(status.get("updated_at") or 0.0), mtime)


def append_timeline(run_dir: str | Path, index: int, row: dict[str, Any]) -> None:
    """One line per task attempt (best effort, `append_log_line`)."""
    append_log_line(timeline_path(run_dir, index), row)


def timeline_row(index: int, task_id: str, start: float, outcome: str, result: TaskResult | None) -> dict[str, Any]:
    epochs = result.epochs if result is not None else []
    return {
        "worker": index, "task_id": task_id, "start": start, "end": time.time(), "outcome": outcome,
        "epochs": len(epochs), "predictions": result.predictions if result is not None else 0,
        "search_s": round(sum(e.search_s for e in epochs), 3),
        "learn_s": round(sum(e.learn_s for e in epochs), 3),
    }
