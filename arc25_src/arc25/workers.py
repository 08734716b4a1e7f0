"""One worker of a run: a process that owns one GPU (or a share of the CPU) and solves tasks.

`python -m arc25.workers --run-dir R --index K` is started by the run's parent
(`arc25.run`). It loads the model once, creates one adapter slot and its own program
executor, then claims tasks one at a time (`arc25.claims`) and runs `TaskSolver` on
them with a budget that adapts to the time and tasks left. The solver writes each
task's result after every epoch, so a crash or kill costs at most the epoch in
flight. A heartbeat thread refreshes the worker's claim and status file, so a long
generate call does not look like a dead worker.

RUN_DIR layout:
    run.json                        challenges, solutions, task_ids (claim order), n_workers, devices,
                                    started_at, deadline, time_limit_s, config, skipped_tasks
    tasks/<task_id>/result.json     written by TaskSolver (+ predictions.jsonl.gz)
    claims/<task_id>.json, .lock    who works on what (see arc25.claims); run.lock: one parent per RUN_DIR
    workers/worker-<k>.log          the worker's log (its stdout and stderr)
    workers/worker-<k>.status.json  {worker, pid, task_id, phase, epoch, updated_at, state, ...}
    workers/worker-<k>.timeline.jsonl  one line per task attempt
    submission.json

Test hook: the environment variable ARC25_FAULT_INJECT, read only by workers,
makes them misbehave on purpose: a comma-separated list of ACTION:TASK_ID[@ATTEMPT]
with ACTION raise | hang | exit and TASK_ID a task id or * (e.g. "raise:abc",
"hang:*@1"). It exists for the failure tests and is not a setting.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from arc25 import claims
from arc25.config import Config, config_from_dict
from arc25.errors import UserError
from arc25.io import atomic_write_json
from arc25.tasks import Task, load_tasks_tolerant

log = logging.getLogger("arc25.workers")  # not __name__: workers run this module as __main__

RUN_FILE = "run.json"
WORKERS_DIR = "workers"
SUBMISSION_FILE = "submission.json"
FAULT_ENV = "ARC25_FAULT_INJECT"
USER_ERROR_EXIT = 2  # a worker's exit code for a UserError, as the CLI's
POLL_S = 0.5


# -- run folder -------------------------------------------------------------------------------


def workers_dir(run_dir: Path) -> Path:
    return Path(run_dir) / WORKERS_DIR


def status_path(run_dir: Path, index: int) -> Path:
    return workers_dir(run_dir) / f"worker-{index}.status.json"


def timeline_path(run_dir: Path, index: int) -> Path:
    return workers_dir(run_dir) / f"worker-{index}.timeline.jsonl"


def log_path(run_dir: Path, index: int) -> Path:
    return workers_dir(run_dir) / f"worker-{index}.log"


def read_json_or_none(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def last_line(path: Path) -> str:
    """The last line of a log file (a worker's last words), for the parent's error message."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 2000))
            lines = f.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else "(empty log)"
    except OSError:
        return "(no log)"


def append_timeline(run_dir: Path, index: int, row: dict[str, Any]) -> None:
    """One line per task attempt; a single small write, so concurrent readers see whole lines."""
    with open(timeline_path(run_dir, index), "a") as f:
        f.write(json.dumps(row, separators=(",", ":")) + "\n")


def timeline_row(index: int, task_id: str, start: float, outcome: str, result: dict[str, Any] | None
                 ) -> dict[str, Any]:
    epochs = (result or {}).get("epochs") or []
    return {
        "worker": index, "task_id": task_id, "start": start, "end": time.time(), "outcome": outcome,
        "epochs": len(epochs), "predictions": (result or {}).get("predictions", 0),
        "search_s": round(sum(e.get("search_s", 0.0) for e in epochs), 3),
        "learn_s": round(sum(e.get("learn_s", 0.0) for e in epochs), 3),
    }


# ============================================================================================
# The worker
# ============================================================================================


class StatusFile:
    """workers/worker-<k>.status.json, rewritten atomically; shared by the main and heartbeat threads."""

    def __init__(self, run_dir: Path, index: int, device: str) -> None:
        self.path = status_path(run_dir, index)
        self.lock = threading.Lock()
        pid = os.getpid()
        self.data: dict[str, Any] = {"worker": index, "pid": pid, "pid_started": claims.process_started(pid),
                                     "device": device, "state": "starting", "task_id": None, "phase": None,
                                     "epoch": None, "task_started": None, "tasks_done": 0}
        self.update()

    def update(self, **fields: Any) -> None:
        with self.lock:
            self.data.update(fields, updated_at=time.time())
            atomic_write_json(self.path, self.data)


class Heartbeat(threading.Thread):
    """Keeps the status file and the current claim fresh while the main thread is inside a long call."""

    def __init__(self, run_dir: Path, status: StatusFile, every_s: float) -> None:
        super().__init__(name="heartbeat", daemon=True)
        self.run_dir, self.status, self.every_s = run_dir, status, every_s
        self.claim: claims.Claim | None = None
        self.lost = threading.Event()  # the current claim was taken over
        self.halt = threading.Event()

    def run(self) -> None:
        parent = os.getppid()
        while not self.halt.wait(self.every_s):
            if os.getppid() != parent:  # the run is gone; don't hold a GPU nobody will merge for
                log.error("the parent process died; exiting")
                os._exit(1)
            try:
                self.beat()
            except Exception:  # a missed beat is harmless; a dead heartbeat thread is not
                log.exception("heartbeat failed")

    def beat(self) -> None:
        claim = self.claim
        if claim is not None and not self.lost.is_set() and not claims.refresh(self.run_dir, claim):
            log.warning("task %s: claim was taken over by another worker", claim.task_id)
            self.lost.set()
        self.status.update()


def inject_fault(task_id: str, attempt: int) -> None:
    """Test hook (see the module docstring): misbehave on this task if ARC25_FAULT_INJECT says so."""
    for item in filter(None, (s.strip() for s in os.environ.get(FAULT_ENV, "").split(","))):
        action, _, target = item.partition(":")
        target, _, only_attempt = target.partition("@")
        if target not in (task_id, "*") or (only_attempt and int(only_attempt) != attempt):
            continue
        log.warning("fault injection: %s on task %s (attempt %d)", action, task_id, attempt)
        if action == "raise":
            raise RuntimeError(f"injected fault on task {task_id}")
        if action == "hang":
            while True:
                time.sleep(1.0)
        if action == "exit":
            os._exit(3)


@dataclass
class Worker:
    """One worker process: its model, executor, tasks and the run's shared facts."""

    run_dir: Path
    index: int
    config: Config
    tasks: dict[str, Task]
    task_ids: list[str]
    deadline: float
    n_workers: int
    backend: Any = None
    executor: Any = None
    status: StatusFile | None = None
    heartbeat: Heartbeat | None = None
    tasks_done: int = 0

    @property
    def max_crashes(self) -> int:
        return self.config.run.max_attempts_per_task

    def others_alive(self) -> bool:
        for k in range(self.n_workers):
            status = read_json_or_none(status_path(self.run_dir, k)) if k != self.index else None
            if status and status.get("state") != "exited" and claims.process_alive(status.get("pid", 0),
                                                                                   status.get("pid_started", 0.0)):
                return True
        return False

    def loop(self) -> None:
        """Claim and solve until every task is finished or the deadline passes."""
        wait_s = min(POLL_S * 2, self.config.run.heartbeat_s)
        while time.time() < self.deadline:
            scan = claims.claim_next(self.run_dir, self.task_ids, self.index, max_crashes=self.max_crashes,
                                     stale_after_s=self.config.run.stale_after_s, others_alive=self.others_alive())
            if scan.claim is not None:
                self.solve(scan.claim, scan.unfinished)
            elif scan.unfinished == 0:
                log.info("no tasks left")
                return
            else:  # the rest is held by others: wait, in case one of them dies and its task needs taking over
                self.status.update(state="waiting", task_id=None, phase=None, epoch=None)
                time.sleep(wait_s)
        log.info("deadline passed: claiming nothing more")

    def solve(self, claim: claims.Claim, unfinished: int) -> None:
        from arc25.search_and_learn import ADAPTER_SLOT, TaskSolver  # after CUDA_VISIBLE_DEVICES is set

        task, start = self.tasks[claim.task_id], time.time()
        budget = claims.task_budget_s(self.deadline - start, self.n_workers, unfinished, self.config.run.per_task_cap_s)
        log.info("task %s: attempt %d, budget %.0f s", task.task_id, claim.attempt, budget)
        self.status.update(state="working", task_id=task.task_id, phase="search", epoch=0, task_started=start)
        self.heartbeat.lost.clear()
        self.heartbeat.claim = claim
        solver = None
        try:
            inject_fault(task.task_id, claim.attempt)
            solver = TaskSolver(task, self.backend, self.executor, self.config, budget,
                                self.run_dir / claims.TASKS_DIR, adapter=ADAPTER_SLOT)
            outcome = self.drive(solver, claim)
        except Exception:
            log.exception("task %s: attempt %d crashed", task.task_id, claim.attempt)
            self.heartbeat.claim = None
            state = claims.release(self.run_dir, claim, claims.FAILED, self.max_crashes)
            outcome = "gave_up" if state == claims.GIVEN_UP else "crashed"
            free_device_memory()
        finally:
            self.heartbeat.claim = None
        result = solver.result() if solver is not None else None
        append_timeline(self.run_dir, self.index, timeline_row(self.index, task.task_id, start, outcome, result))
        self.tasks_done += outcome in ("done", "deadline")
        self.status.update(state="idle", task_id=None, phase=None, epoch=None, tasks_done=self.tasks_done)

    def drive(self, solver: Any, claim: claims.Claim) -> str:
        """Step the solver to the end; refresh the claim between phases; stop at the global deadline."""
        while solver.step():
            self.status.update(phase=solver.state.phase, epoch=solver.state.epoch)
            if self.heartbeat.lost.is_set() or not claims.refresh(self.run_dir, claim):
                # Another worker owns the task now: leave its result file alone.
                log.warning("task %s: lost the claim; dropping the task", claim.task_id)
                return "crashed"
            if time.time() >= self.deadline:
                solver.stop("deadline")
        self.heartbeat.claim = None
        stopped = solver.state.stop_reason == "deadline"  # not finished: a resumed run redoes it
        claims.release(self.run_dir, claim, claims.INTERRUPTED if stopped else claims.DONE, self.max_crashes)
        return "deadline" if stopped else "done"


def free_device_memory() -> None:
    """After a crash (e.g. CUDA out of memory) give the cached blocks back before the next task."""
    torch = sys.modules.get("torch")  # only if the backend imported it
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def executor_workers(config: Config, n_workers: int) -> int:
    """Program executors per worker: the machine's cores split between the workers (4 GPU workers share one CPU)."""
    if config.execution.workers > 0:
        return config.execution.workers
    return max(1, len(os.sched_getaffinity(0)) // max(1, n_workers))


def worker_main(run_dir: Path, index: int) -> int:
    """Entry point of one worker process."""
    from arc25.backends import load_backend
    from arc25.execution import Executor
    from arc25.search_and_learn import ADAPTER_SLOT

    run_dir = Path(run_dir)
    run = json.loads((run_dir / RUN_FILE).read_text())
    config = config_from_dict(run["config"])
    n_workers = int(run["n_workers"])
    status = StatusFile(run_dir, index, run["devices"][index])
    heartbeat = Heartbeat(run_dir, status, config.run.heartbeat_s)
    heartbeat.start()
    tasks = load_tasks_tolerant(run["challenges"], run.get("solutions")).tasks
    log.info("worker %d: pid %d, device %s, %d tasks", index, os.getpid(), run["devices"][index], len(tasks))
    status.update(state="loading")
    backend = load_backend(config)
    backend.create_adapter(ADAPTER_SLOT)  # once per process; the solver resets it for every task
    ex = config.execution
    with Executor(executor_workers(config, n_workers), ex.timeout_s, ex.memory_mb) as executor:
        worker = Worker(run_dir, index, config, tasks, list(run["task_ids"]), float(run["deadline"]), n_workers,
                        backend, executor, status, heartbeat)
        worker.loop()
    heartbeat.halt.set()
    status.update(state="exited", task_id=None, phase=None, epoch=None)
    backend.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m arc25.workers", description="one worker of `arc25 run`")
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--index", required=True, type=int)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s worker-{args.index} %(name)s: %(message)s")
    try:
        return worker_main(args.run_dir, args.index)
    except UserError as exc:
        log.error("%s", exc)
        return USER_ERROR_EXIT


if __name__ == "__main__":
    sys.exit(main())
