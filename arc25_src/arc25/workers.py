"""One worker of a run: a process that owns one GPU (or a share of the CPU) and solves tasks.

`python -m arc25.workers --run-dir R --index K` is started by the run's parent
(`arc25.run`). It loads the model once, creates `run.tasks_per_worker` adapter
slots and its own program executor, then keeps that many tasks in flight: the
scheduler (`arc25.scheduler`) streams all their requests through one stepped engine,
runs their programs beside the engine's steps and trains their adapters in turn;
a finished task's slot is refilled at once from the claims (`arc25.claims`), with a
budget that adapts to the time and tasks left. Solvers write each task's result after
every epoch, inside the claim's fence, so a crash or kill costs at most the epoch in
flight and a worker that lost its claim writes nothing. A heartbeat thread refreshes
the worker's claims and status file, so a long engine call does not look like a dead
worker. The run folder's layout is in `arc25.rundir`.

Test hook: the environment variable ARC25_FAULT_INJECT, read only by workers,
makes them misbehave on purpose: a comma-separated list of ACTION:TASK_ID[@ATTEMPT]
with ACTION raise | hang | exit and TASK_ID a task id or * (e.g. "raise:abc",
"hang:*@1"). It exists for the failure tests and is not a setting.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arc25 import claims
from arc25.config import Config, config_from_dict
from arc25.errors import USER_ERROR_EXIT, UserError
from arc25.io import read_text
from arc25.rundir import (RUN_FILE, append_timeline, dropped_log_writes, engine_path, read_json_or_none,
                          status_path, tasks_dir, timeline_row, write_status)
from arc25.tasks import Task, load_tasks_tolerant

if TYPE_CHECKING:  # imported where they are used, once the worker's device is set
    from arc25.backends.base import Backend
    from arc25.execution import Executor
    from arc25.scheduler import EngineLog, Scheduler
    from arc25.search_and_learn import TaskSolver

log = logging.getLogger("arc25.workers")  # not __name__: workers run this module as __main__

FAULT_ENV = "ARC25_FAULT_INJECT"
POLL_S = 0.5
ENGINE_STALLED_EXIT = 70  # the watchdog gave the tasks up (Heartbeat); the parent restarts the worker


class StatusFile:
    """workers/worker-<k>.status.json, rewritten atomically; shared by the main and heartbeat threads."""

    def __init__(self, run_dir: Path, index: int, device: str) -> None:
        self.path = status_path(run_dir, index)
        self.lock = threading.Lock()
        pid = os.getpid()
        self.data: dict[str, Any] = {"worker": index, "pid": pid, "pid_started": claims.process_started(pid),
                                     "device": device, "state": "starting", "tasks": [], "tasks_done": 0}
        self.update()

    def update(self, **fields: Any) -> None:
        with self.lock:
            self.data.update(fields, updated_at=time.time())
            write_status(self.path, self.data)  # best effort: a full disk must not kill the worker


class Heartbeat(threading.Thread):
    """Keeps the status file and the claims in flight fresh while the main thread is inside a long call,
    and is the worker's watchdog: when the main thread has made no progress (`progress()`) for `stall_s`
    with tasks in flight before the run's deadline, the engine is stuck in a call that will not return
    (issue 18: 3 tasks held for 66 s while the other worker idled). It then releases those tasks as
    crashed, so other workers take them at once (a task that stalls engines `max_crashes` times is given
    up), and exits with ENGINE_STALLED_EXIT: the parent restarts the worker with a fresh engine."""

    def __init__(self, run_dir: Path, status: StatusFile, every_s: float, stall_s: float = 0.0,
                 deadline: float = math.inf, max_crashes: int = 2) -> None:
        super().__init__(name="heartbeat", daemon=True)
        self.run_dir, self.status, self.every_s = run_dir, status, every_s
        self.stall_s, self.deadline, self.max_crashes = stall_s, deadline, max_crashes
        self.claims: dict[str, claims.Claim] = {}  # task id -> claim in flight
        self.lost: set[str] = set()  # tasks whose claim was taken over
        self.halt = threading.Event()
        self.progress_at = time.time()

    def progress(self) -> None:
        """The main thread went round its loop: its engine is not stuck."""
        self.progress_at = time.time()

    def stalled_s(self, now: float) -> float:
        """How long the main thread has been stuck with tasks in flight; 0 when it is not (or may be)."""
        idle = now - self.progress_at
        return idle if self.stall_s > 0 and self.claims and idle > self.stall_s and now < self.deadline else 0.0

    def run(self) -> None:
        parent = os.getppid()
        while not self.halt.wait(self.every_s):
            if os.getppid() != parent:  # the run is gone; don't hold a GPU nobody will merge for
                log.error("the parent process died; exiting")
                os._exit(1)
            stalled = self.stalled_s(time.time())
            if stalled:
                self.give_up(stalled)
            try:
                self.beat()
            except Exception:  # a missed beat is harmless; a dead heartbeat thread is not
                log.exception("heartbeat failed")

    def give_up(self, stalled_s: float) -> None:
        """The engine is stuck: release the tasks in flight as crashed and exit (the main thread cannot be
        interrupted inside the engine call)."""
        log.error("engine stalled: no progress for %.0f s with task(s) %s in flight; releasing them to the other "
                  "workers and exiting (exit %d) to be restarted", stalled_s, ", ".join(sorted(self.claims)),
                  ENGINE_STALLED_EXIT)
        for claim in list(self.claims.values()):
            try:
                claims.release(self.run_dir, claim, claims.FAILED, self.max_crashes)
            except Exception as exc:  # noqa: BLE001 - the takeover of a dead worker's claims covers it
                log.error("task %s: cannot release the claim (%s); the other workers take it over", claim.task_id,
                          exc)
        logging.shutdown()
        os._exit(ENGINE_STALLED_EXIT)

    def beat(self) -> None:
        for task_id, claim in list(self.claims.items()):
            if task_id not in self.lost and not claims.refresh(self.run_dir, claim):
                log.warning("task %s: claim was taken over by another worker", task_id)
                self.lost.add(task_id)
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
class Flight:
    """A task in flight: its claim, its solver and when it started."""

    claim: claims.Claim
    solver: TaskSolver | None  # None until it is built
    start: float


@dataclass
class Worker:
    """One worker process: its model, executor, tasks in flight and the run's shared facts."""

    run_dir: Path
    index: int
    config: Config
    tasks: dict[str, Task]
    task_ids: list[str]
    deadline: float
    n_workers: int
    backend: Backend | None = None
    executor: Executor | None = None
    status: StatusFile | None = None
    heartbeat: Heartbeat | None = None
    tasks_done: int = 0
    flights: dict[str, Flight] = field(default_factory=dict)  # task id -> in flight
    unfinished: int = 1 << 30  # tasks neither done nor given up, at the last claim scan (none yet: no cap)

    @property
    def max_crashes(self) -> int:
        return self.config.run.max_attempts_per_task

    @property
    def slots(self) -> int:
        return max(1, self.config.run.tasks_per_worker)

    def others_alive(self) -> bool:
        for k in range(self.n_workers):
            status = read_json_or_none(status_path(self.run_dir, k)) if k != self.index else None
            if status and status.get("state") != "exited" and claims.process_alive(status.get("pid", 0),
                                                                                   status.get("pid_started", 0.0)):
                return True
        return False

    def loop(self, engine_log: EngineLog | None = None) -> None:
        """Keep `tasks_per_worker` tasks in flight until every task is finished or the deadline passes."""
        from arc25.scheduler import Scheduler  # after CUDA_VISIBLE_DEVICES is set
        from arc25.slots import adapter_slots

        slots = adapter_slots(self.backend, self.slots)
        wait_s = min(POLL_S * 2, self.config.run.heartbeat_s)
        with Scheduler(self.backend, self.executor, slots, self.refill, engine_log,
                       concurrent_training=self.config.run.concurrent_training) as scheduler:
            while True:
                self.heartbeat.progress()
                self.stop_lost_and_late(scheduler)
                for solver in scheduler.round():
                    self.finish(solver)
                self.show(scheduler)
                if scheduler.solvers:
                    continue
                if time.time() >= self.deadline:
                    log.info("deadline passed: claiming nothing more")
                    return
                if scheduler.exhausted and self.unfinished == 0:
                    log.info("no tasks left")
                    return
                # the rest is held by others: wait, in case one of them dies and its task needs taking over
                self.status.update(state="waiting", tasks=[])
                time.sleep(wait_s)

    def refill(self, slot: str) -> TaskSolver | None:
        """A solver for the next task this worker can claim, on adapter slot `slot`; None when there is none."""
        from arc25.search_and_learn import TaskSolver

        while time.time() < self.deadline:
            if self.flights and len(self.flights) >= math.ceil(self.unfinished / self.n_workers):
                return None  # its fair share of what is left: the other workers' slots take the rest
            scan = claims.claim_next(self.run_dir, self.task_ids, self.index, max_crashes=self.max_crashes,
                                     stale_after_s=self.config.run.stale_after_s, others_alive=self.others_alive())
            self.unfinished = scan.unfinished
            if scan.claim is None:
                return None
            claim, task, start = scan.claim, self.tasks[scan.claim.task_id], time.time()
            # with K tasks in flight per worker, each task has K times the wall time of one slot
            budget = claims.task_budget_s(self.deadline - start, self.n_workers * self.slots, scan.unfinished,
                                          self.config.run.per_task_cap_s)
            log.info("task %s: attempt %d, budget %.0f s, slot %s", task.task_id, claim.attempt, budget, slot)
            self.heartbeat.claims[task.task_id] = claim
            self.heartbeat.lost.discard(task.task_id)
            flight = self.flights[task.task_id] = Flight(claim, None, start)
            self.show()
            try:
                inject_fault(task.task_id, claim.attempt)
                flight.solver = TaskSolver(task, self.backend, self.executor, self.config, budget,
                                           tasks_dir(self.run_dir), adapter=slot, deadline=self.deadline,
                                           fence=functools.partial(claims.fenced, self.run_dir, claim))
            except Exception as exc:  # noqa: BLE001 - this task failed to start; try the next one
                self.finish_task(task.task_id, None, exc)
                continue
            return flight.solver
        return None

    def stop_lost_and_late(self, scheduler: Scheduler) -> None:
        """Drop tasks whose claim another worker took over; stop everything at the run's deadline."""
        for task_id in list(self.flights):
            solver = self.flights[task_id].solver
            if task_id in self.heartbeat.lost:
                log.warning("task %s: lost the claim; dropping the task", task_id)
                scheduler.remove(solver)
                self.finish_task(task_id, solver, claims.ClaimLost(f"task {task_id}: claim taken over"))
            elif time.time() >= self.deadline:
                scheduler.stop(solver, "deadline")  # after its learn step, if one runs on the training thread

    def finish(self, solver: TaskSolver) -> None:
        """A solver the scheduler retired: done, stopped or failed (its `error`)."""
        self.finish_task(solver.task.task_id, solver, solver.error)

    def finish_task(self, task_id: str, solver: TaskSolver | None, error: BaseException | None) -> None:
        """Release the claim as the outcome says, and write the task's timeline line."""
        flight = self.flights.pop(task_id)
        self.heartbeat.claims.pop(task_id, None)
        if isinstance(error, claims.ClaimLost):
            outcome = "lost"  # another worker owns the task and its files now
        elif error is not None:
            log.error("task %s: attempt %d crashed: %s", task_id, flight.claim.attempt, error)
            state = claims.release(self.run_dir, flight.claim, claims.FAILED, self.max_crashes)
            outcome = "gave_up" if state == claims.GIVEN_UP else "crashed"
            free_device_memory()
        else:
            stopped = solver.state.stop_reason == "deadline"  # not finished: a resumed run redoes it
            claims.release(self.run_dir, flight.claim, claims.INTERRUPTED if stopped else claims.DONE,
                           self.max_crashes)
            outcome = "deadline" if stopped else "done"
        result = solver.result() if solver is not None else None
        append_timeline(self.run_dir, self.index, timeline_row(self.index, task_id, flight.start, outcome, result))
        self.tasks_done += outcome in ("done", "deadline")

    def show(self, scheduler: Scheduler | None = None) -> None:
        """The status file: the tasks in flight, their phases, the engine's busy fraction so far."""
        tasks = [{"task_id": t, "phase": f.solver.phase if f.solver else "starting",
                  "epoch": f.solver.state.epoch if f.solver else 0, "started": f.start}
                 for t, f in self.flights.items()]
        engine = {"engine": scheduler.engine_log.summary()} if scheduler is not None else {}
        self.status.update(state="working" if tasks else "idle", tasks=tasks, tasks_done=self.tasks_done, **engine)


def free_device_memory() -> None:
    """After a crash (e.g. CUDA out of memory) give the cached blocks back before the next task."""
    torch = sys.modules.get("torch")  # only if the backend imported it
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def device_memory() -> tuple[float, float, float] | None:
    """(peak allocated by torch, used on the device by every allocator, card) in GiB; None without CUDA."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    free, total = torch.cuda.mem_get_info()
    return torch.cuda.max_memory_allocated() / 2**30, (total - free) / 2**30, total / 2**30


def worker_main(run_dir: Path, index: int) -> int:
    """Entry point of one worker process."""
    from arc25.backends import load_backend
    from arc25.execution import Executor, executor_workers
    from arc25.scheduler import EngineLog

    run_dir = Path(run_dir)
    run = json.loads(read_text(run_dir / RUN_FILE))
    config = config_from_dict(run["config"])
    n_workers = int(run["n_workers"])
    status = StatusFile(run_dir, index, run["devices"][index])
    heartbeat = Heartbeat(run_dir, status, config.run.heartbeat_s, config.run.engine_stall_s, float(run["deadline"]),
                          config.run.max_attempts_per_task)
    heartbeat.start()
    tasks = load_tasks_tolerant(run["challenges"], run.get("solutions")).tasks
    log.info("worker %d: pid %d, device %s, %d tasks, %d in flight", index, os.getpid(), run["devices"][index],
             len(tasks), config.run.tasks_per_worker)
    status.update(state="loading")
    backend = load_backend(config)
    engine_log = EngineLog(engine_path(run_dir, index))  # from here the engine could be busy
    ex = config.execution
    with Executor(executor_workers(config, n_workers), ex.timeout_s, ex.memory_mb) as executor:
        status.update(sandbox=executor.wait_ready().to_dict())  # the report shows the active layers
        worker = Worker(run_dir, index, config, tasks, list(run["task_ids"]), float(run["deadline"]), n_workers,
                        backend, executor, status, heartbeat)
        worker.loop(engine_log)
    heartbeat.halt.set()
    summary = engine_log.summary()
    log.info("engine busy %.0f%% of %.0f s (generate %.0f s, train %.0f s), %.0f tokens/s",
             100 * summary["busy_fraction"], summary["wall_s"], summary["generate_s"], summary["train_s"],
             summary["tokens_per_s"])
    memory = device_memory()
    if memory:
        log.info("GPU memory: peak allocated %.2f GiB, device used %.2f GiB of %.2f", *memory)
    for path, count in dropped_log_writes().items():
        log.warning("%s: %d write(s) dropped", path, count)
    status.update(state="exited", tasks=[], engine=summary)
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
