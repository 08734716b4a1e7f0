"""Who works on which task: claim files that workers take, refresh and release under one lock.

RUN_DIR/claims/<name>.json holds the task's claim (<name>: `rundir.task_dir_name`):

    {task_id, state, worker, pid, pid_started, host, attempt, generation, crashes, failed_workers,
     claimed_at, heartbeat, released_at}

state is active (a worker is on it), done, failed (the worker raised; it may be
retried), interrupted (stopped by the run, not the task's fault: no crash counted)
or given_up (crashed `max_crashes` times: the merger uses its best result so far or
the fallback). Every read-modify-write happens under RUN_DIR/claims/.lock (a
`filelock` flock, released by the OS if its holder dies), so two workers never take
the same task. An active claim can be taken over when its process is gone (same
host, pid dead or reused) or its heartbeat is older than `stale_after_s`; the
takeover counts as a crash.

Fencing: a worker frozen past `stale_after_s` (SIGSTOP, swapping, a stuck driver) may
wake after its task was taken over. Every claim and takeover increments the claim's
`generation`, and the owner writes the task's files only inside `fenced(run_dir,
claim)`, which checks under the lock that the claim on disk is still its own and
active (else `ClaimLost`) and holds the lock while the caller writes, so a takeover
cannot slip in between the check and the atomic rename.

Whether a task is finished is decided by its result, as the merger sees it:
RUN_DIR/tasks/<name>/result.json with status "done". A result file that cannot
be read (truncated on disk) is ignored with a warning and the task is redone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import psutil
from filelock import FileLock

from arc25.io import atomic_write_json, read_text
from arc25.rundir import (CLAIMS_DIR, TASKS_DIR, claim_path, read_result,  # noqa: F401  (TASKS_DIR: callers' path)
                          result_path, task_dir_name)

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
LOCK_TIMEOUT_S = 60.0  # the lock is held for milliseconds; a minute means something is badly wrong

ACTIVE, DONE, FAILED, INTERRUPTED, GIVEN_UP = "active", "done", "failed", "interrupted", "given_up"


@dataclass
class Claim:
    task_id: str
    state: str = ACTIVE
    worker: int = -1
    pid: int = 0
    pid_started: float = 0.0  # process create time: tells a live pid from a reused one
    host: str = ""
    attempt: int = 0  # how many times the task was claimed
    generation: int = 0  # +1 on every claim and takeover: fences the writes of an owner that lost the task
    crashes: int = 0
    failed_workers: list[int] = field(default_factory=list)
    claimed_at: float = 0.0
    heartbeat: float = 0.0
    released_at: float | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Claim:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class ClaimLost(Exception):
    """This process's claim was taken over or ended: the task's files belong to someone else now."""


@dataclass
class ClaimScan:
    """What a worker learned while looking for a task."""

    claim: Claim | None  # the task it took, or None
    unfinished: int  # tasks neither done nor given up (the claimed one included)
    in_progress: int  # unfinished tasks other workers hold


# -- processes ----------------------------------------------------------------------------


def process_started(pid: int) -> float:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return 0.0


def process_alive(pid: int, started: float = 0.0) -> bool:
    """The process exists, is not a zombie and (when `started` is known) is the same process."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return not started or abs(proc.create_time() - started) < 1.0
    except psutil.Error:
        return False


def owner_gone(claim: Claim, now: float, stale_after_s: float) -> bool:
    """An active claim nobody is working on any more."""
    if now - claim.heartbeat > stale_after_s:
        return True
    return claim.host == socket.gethostname() and not process_alive(claim.pid, claim.pid_started)


# -- files --------------------------------------------------------------------------------


def claims_dir(run_dir: Path) -> Path:
    return Path(run_dir) / CLAIMS_DIR


# One FileLock object per lock file and process: re-entrant in the thread that holds it (a claims call
# inside `fenced` must not wait a minute on its own flock), exclusive for the process's other threads.
_LOCKS: dict[tuple[int, str], FileLock] = {}


def claim_lock(run_dir: Path) -> FileLock:
    path = claims_dir(run_dir) / LOCK_FILE
    key = (os.getpid(), str(path.resolve()))  # the pid: a forked child must not inherit a held lock
    lock = _LOCKS.get(key)
    if lock is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = _LOCKS[key] = FileLock(str(path), timeout=LOCK_TIMEOUT_S)
    return lock


def read_claim(run_dir: Path, task_id: str) -> Claim | None:
    return _read_claim_file(claim_path(run_dir, task_id), task_id)


def _read_claim_file(path: Path, task_id: str | None = None) -> Claim | None:
    """The claim in `path`, None when absent or unreadable; with `task_id`, also when it is another task's."""
    try:
        claim = Claim.from_dict(json.loads(read_text(path)))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        # Claims are written atomically, so this is outside damage: treat the task as unclaimed.
        log.warning("%s: unreadable claim (%s); treating the task as unclaimed", path, exc)
        return None
    if not isinstance(claim.task_id, str) or path.name != f"{task_dir_name(claim.task_id)}.json" \
            or task_id not in (None, claim.task_id):
        log.warning("%s: claim of task %r does not belong here; treating the task as unclaimed", path, claim.task_id)
        return None
    return claim


def write_claim(run_dir: Path, claim: Claim) -> None:
    atomic_write_json(claim_path(run_dir, claim.task_id), asdict(claim))


def all_claims(run_dir: Path) -> list[Claim]:
    """Every readable claim on disk, found by listing but named by the raw id stored inside each one."""
    found = (_read_claim_file(path) for path in sorted(claims_dir(run_dir).glob("*.json")))
    return [claim for claim in found if claim is not None]


# (inode, mtime, size) -> done, per result file: the parent polls every task's result every
# half second, and results are replaced by atomic renames, so a file that did not change need not be parsed again.
_DONE_CACHE: dict[Path, tuple[tuple[int, int, int], bool]] = {}


def result_done(run_dir: Path, task_id: str, warn: bool = True) -> bool:
    path = result_path(run_dir, task_id)
    try:
        st = path.stat()
    except OSError:
        return False
    key = (st.st_ino, st.st_mtime_ns, st.st_size)
    cached = _DONE_CACHE.get(path)
    if cached is not None and cached[0] == key:
        return cached[1]
    result = read_result(run_dir, task_id, warn)
    done = result is not None and result.done
    _DONE_CACHE[path] = (key, done)
    return done


def finished(run_dir: Path, task_id: str, claim: Claim | None, warn: bool = True) -> bool:
    """Done (its result says so) or given up: nothing more to do for this task."""
    if claim is not None and claim.state == GIVEN_UP:
        return True
    return result_done(run_dir, task_id, warn)


def count_finished(run_dir: Path, task_ids: Iterable[str], warn: bool = False) -> int:
    return sum(finished(run_dir, t, read_claim(run_dir, t), warn) for t in task_ids)


# -- claiming -----------------------------------------------------------------------------


def _retire_if_crashed_out(run_dir: Path, claim: Claim, max_crashes: int) -> bool:
    if claim.crashes >= max_crashes and claim.state != GIVEN_UP:
        claim.state, claim.released_at = GIVEN_UP, time.time()
        write_claim(run_dir, claim)
        log.warning("task %s crashed %d times: given up (the merger uses its best result or the fallback)",
                    claim.task_id, claim.crashes)
    return claim.state == GIVEN_UP


def claim_next(run_dir: Path, task_ids: list[str], worker: int, *, max_crashes: int, stale_after_s: float,
               others_alive: bool = True) -> ClaimScan:
    """Take the first task in `task_ids` that nobody is working on, or none.

    A task this worker already crashed on is left to the others while any of them
    is alive (`others_alive`): a fault tied to one device or process is not retried there.
    """
    pid = os.getpid()
    with claim_lock(run_dir):
        now = time.time()
        unfinished = in_progress = 0
        chosen: Claim | None = None
        for task_id in task_ids:
            claim = read_claim(run_dir, task_id)
            if finished(run_dir, task_id, claim):
                continue
            if claim is not None and claim.state == ACTIVE:
                if not owner_gone(claim, now, stale_after_s):
                    unfinished += 1
                    in_progress += 1
                    continue
                log.warning("task %s: worker %d (pid %d) is gone; taking over its claim", task_id, claim.worker,
                            claim.pid)
                claim.state, claim.crashes, claim.released_at = FAILED, claim.crashes + 1, now
                claim.generation += 1  # the frozen owner's fenced writes now fail
                claim.failed_workers.append(claim.worker)
                write_claim(run_dir, claim)
                if _retire_if_crashed_out(run_dir, claim, max_crashes):
                    continue
            if claim is not None and _retire_if_crashed_out(run_dir, claim, max_crashes):
                continue
            unfinished += 1
            if chosen is not None:
                continue
            if claim is not None and claim.state == FAILED and worker in claim.failed_workers and others_alive:
                continue
            chosen = Claim(task_id, ACTIVE, worker, pid, process_started(pid), socket.gethostname(),
                           attempt=(claim.attempt if claim else 0) + 1,
                           generation=(claim.generation if claim else 0) + 1, crashes=claim.crashes if claim else 0,
                           failed_workers=list(claim.failed_workers) if claim else [], claimed_at=now, heartbeat=now)
            write_claim(run_dir, chosen)
    return ClaimScan(chosen, unfinished, in_progress)


def _owned(current: Claim | None, mine: Claim) -> bool:
    return (current is not None and current.state == ACTIVE and current.pid == mine.pid
            and current.attempt == mine.attempt and current.worker == mine.worker
            and current.generation == mine.generation)


def _describe(claim: Claim | None) -> str:
    if claim is None:
        return "no claim on disk"
    return f"now {claim.state}, generation {claim.generation}, worker {claim.worker} (pid {claim.pid})"


@contextlib.contextmanager
def fenced(run_dir: Path, claim: Claim) -> Iterator[Claim]:
    """Hold the claims lock while `claim` is still this process's active claim; raise ClaimLost if it is not.

    Wrap every write of a task's files (result.json, predictions appends) in it: the check and the
    write happen under one lock, so an owner that froze past `stale_after_s` and woke after a takeover
    cannot overwrite the new owner's result. Keep the body short (the lock is shared by every worker);
    other claims calls inside it are fine in the same thread.
    """
    with claim_lock(run_dir):
        current = read_claim(run_dir, claim.task_id)
        if not _owned(current, claim):
            raise ClaimLost(f"task {claim.task_id}: lost the claim (generation {claim.generation}, worker "
                            f"{claim.worker}, pid {claim.pid}); {_describe(current)}")
        yield current


def refresh(run_dir: Path, claim: Claim) -> bool:
    """Renew the heartbeat; False when the claim was taken over (the caller should drop the task)."""
    with claim_lock(run_dir):
        current = read_claim(run_dir, claim.task_id)
        if not _owned(current, claim):
            return False
        claim.heartbeat = time.time()
        write_claim(run_dir, claim)
        return True


def release(run_dir: Path, claim: Claim, state: str, max_crashes: int) -> str:
    """End a claim as done, failed (counts a crash) or interrupted; returns the state written.

    A failed claim that reaches `max_crashes` becomes given_up.
    """
    with claim_lock(run_dir):
        current = read_claim(run_dir, claim.task_id)
        if not _owned(current, claim):
            log.warning("task %s: claim was taken over; not releasing it", claim.task_id)
            return current.state if current else state
        claim.state, claim.released_at = state, time.time()
        if state == FAILED:
            claim.crashes += 1
            claim.failed_workers.append(claim.worker)
            if claim.crashes >= max_crashes:
                claim.state = GIVEN_UP
                log.warning("task %s crashed %d times: given up", claim.task_id, claim.crashes)
        write_claim(run_dir, claim)
        return claim.state


def interrupt_claims_of(run_dir: Path, pid: int) -> list[Claim]:
    """Mark the active claims of a process the run itself stopped (deadline) as interrupted, not crashed."""
    changed = []
    with claim_lock(run_dir):
        for claim in all_claims(run_dir):
            if claim.state == ACTIVE and claim.pid == pid:
                claim.state, claim.released_at = INTERRUPTED, time.time()
                write_claim(run_dir, claim)
                changed.append(claim)
    return changed


def interrupt_orphaned(run_dir: Path) -> list[Claim]:
    """At the start of a run, whose parent holds the run folder alone (so the previous run is over): active
    claims of processes on this host that are gone were cut off by the end of that run (its parent killed,
    the machine rebooted), not by their task. Mark them interrupted, so resuming counts no crash against them."""
    changed = []
    host = socket.gethostname()
    with claim_lock(run_dir):
        for claim in all_claims(run_dir):
            if claim.state == ACTIVE and claim.host == host and \
                    not process_alive(claim.pid, claim.pid_started):
                claim.state, claim.released_at = INTERRUPTED, time.time()
                write_claim(run_dir, claim)
                changed.append(claim)
    return changed


# -- time -----------------------------------------------------------------------------------


def task_budget_s(remaining_s: float, n_workers: int, remaining_tasks: int, cap_s: float) -> float:
    """This task's fair share of the time left: min(cap, remaining * workers / tasks left), never past the deadline.

    Computed at claim time, so time that early-solved tasks did not use goes to the rest.
    """
    if remaining_s <= 0:
        return 0.0
    share = remaining_s * max(1, n_workers) / max(1, remaining_tasks)
    return min(cap_s, share, remaining_s)
