"""Sandboxed, fast execution of model-written BARC programs: the parent's side.

Every program does `from common import *` and defines `transform(input_grid)`.
A hung, crashing or hostile program must never stall a worker or change another
program's result. Three kinds of process, one module each, from trusted to not:

- the parent (this module): `Executor` keeps a pool of long-lived worker processes
  (one per usable CPU), started once, and watches them: a worker that dies (or stops
  answering) is replaced and its program reported as `crashed`. `execute_on_tasks`
  runs programs on the augmented inputs of a task and maps outputs back with
  `Augmentation.invert`.
- the worker (arc25.exec_worker): has imported numpy, scipy.ndimage and the DSL
  (`arc25/dsl/common.py`, registered as `sys.modules['common']`) and never runs
  untrusted code itself. For every program it forks a child, SIGKILLs the child's
  process group at the wall-clock timeout (a signal no `except:` can swallow), and
  validates what came back as plain data (JSON, never pickle: the child is untrusted).
- the child (arc25.exec_child): copy-on-write gives it a pristine `common`/`Color` for
  free; whatever the program reassigns, patches or leaks dies with it. It confines
  itself (own process group, parent-death signal, address-space/CPU/file-size limits,
  stdout/stderr to /dev/null, empty environment, no open fd but its result pipe,
  read-only temp cwd), then enters the sandbox (arc25.sandbox: Landlock, seccomp-bpf
  and the audit hook, as far as the kernel allows), runs the program on every grid and
  streams one result line per grid back. Its process group is killed when it ends.

What crosses the boundaries (`ErrorKind`, `ExecutionResult`, the parent <-> worker
framing) is arc25.exec_protocol; both names are re-exported here.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from arc25.augment import Augmentation
from arc25.exec_protocol import ErrorKind, ExecutionResult, failed, read_msg, write_msg
from arc25.sandbox import ALL_LAYERS, Layer, SandboxReport
from arc25.tasks import Task

__all__ = ["ErrorKind", "ExecutionResult", "Executor", "TaskExecution", "execute_on_task", "execute_on_tasks",
           "executor_workers"]

log = logging.getLogger(__name__)

# How long the parent waits beyond a program's timeout before it declares the
# worker itself hung (the worker enforces the timeout; this is the backstop).
WORKER_GRACE_S = 5.0
WORKER_START_TIMEOUT_S = 120.0
WORKER_COMMAND = "from arc25.exec_worker import worker_main; worker_main()"  # python -c WORKER_COMMAND SETTINGS

# --------------------------------------------------------------------------- the pool


@dataclass(eq=False)
class _Worker:
    proc: subprocess.Popen
    ready: bool = False
    # Jobs sent and not yet answered (indices into the batch, with their grid
    # counts), oldest first. Up to PIPELINE_DEPTH, so the worker never waits
    # for the parent to be scheduled between two programs.
    jobs: deque[tuple[int, int]] = field(default_factory=deque)
    deadline: float = 0.0  # when the oldest job (or start-up) must have answered

    @property
    def fd_out(self) -> int:
        return self.proc.stdout.fileno()  # type: ignore[union-attr]

    @property
    def fd_in(self) -> int:
        return self.proc.stdin.fileno()  # type: ignore[union-attr]


PIPELINE_DEPTH = 2
_WORKER_ENV_KEEP = frozenset(
    "PATH LD_LIBRARY_PATH PYTHONPATH PYTHONHOME PYTHONNOUSERSITE VIRTUAL_ENV CONDA_PREFIX LANG LC_ALL TMPDIR".split()
)


class Executor:
    """A pool of sandboxed worker processes running BARC programs.

    `run([(code, [grid, ...]), ...])` returns one ExecutionResult per program, in
    order. Workers start at construction and are reused across calls; use as a
    context manager or call `close()`. Not thread-safe: one `run` at a time.
    `timeout_s` is the wall-clock budget of one program over all its grids;
    `memory_mb` what it may allocate beyond the inherited interpreter.
    """

    def __init__(self, workers: int | None = None, timeout_s: float = 2.0, memory_mb: int = 1024,
                 layers: frozenset[Layer] = ALL_LAYERS) -> None:
        if timeout_s <= 0 or memory_mb <= 0:
            raise ValueError("timeout_s and memory_mb must be positive")
        self.n_workers = workers if workers and workers > 0 else len(os.sched_getaffinity(0))
        self.timeout_s, self.memory_mb = float(timeout_s), int(memory_mb)
        self.restarts = 0
        # What the last worker to start reported (all of a pool probe the same kernel).
        self.sandbox: SandboxReport | None = None
        self._settings = json.dumps({"timeout_s": self.timeout_s, "memory_mb": self.memory_mb,
                                     "layers": sorted(layer.value for layer in layers)})
        self._workers: list[_Worker] = [self._spawn() for _ in range(self.n_workers)]
        self._requeue: deque[int] = deque()
        self._closed = False
        log.debug("executor: %d workers, timeout %.1f s, memory %d MB", self.n_workers, timeout_s, memory_mb)

    def wait_ready(self) -> SandboxReport:
        """Wait until every worker has started; what their children run under (also logged once per worker)."""
        while not all(w.ready for w in self._workers):
            self._wait([])
        assert self.sandbox is not None
        return self.sandbox

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the current workers (for monitoring, e.g. their CPU time)."""
        return [w.proc.pid for w in self._workers]

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, programs: Sequence[tuple[str, Sequence[np.ndarray]]]) -> list[ExecutionResult]:
        """Run every program on its grids; results in the same order."""
        if self._closed:
            raise RuntimeError("executor is closed")
        results: list[ExecutionResult | None] = [None] * len(programs)
        pending = deque(range(len(programs)))
        self._requeue = pending  # a replaced worker's queued jobs go back here
        try:
            self._loop(programs, pending, results)
        except BaseException:
            self._restart_busy()  # their answers would arrive in the next batch otherwise
            raise
        return results  # type: ignore[return-value]

    def close(self) -> None:
        if getattr(self, "_closed", True):
            return
        self._closed = True
        for worker in self._workers:
            _stop(worker.proc)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # -- internals

    def _spawn(self) -> _Worker:
        # Workers get a minimal environment: a program could read the inherited
        # one from /proc/self/environ even after os.environ is cleared.
        env = {k: v for k, v in os.environ.items() if k in _WORKER_ENV_KEEP}
        # One BLAS thread per worker: the pool provides the parallelism, and
        # forking a process that holds a BLAS thread pool invites deadlocks.
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = "1"
        package_root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        command = [sys.executable, "-c", WORKER_COMMAND, self._settings]
        # Own session: a signal a program sends to its process group can never reach us.
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, start_new_session=True)
        return _Worker(proc, deadline=time.monotonic() + WORKER_START_TIMEOUT_S)

    def _loop(self, programs: Sequence[tuple[str, Sequence[np.ndarray]]], pending: deque[int], results: list) -> None:
        while pending or any(w.jobs for w in self._workers):
            for worker in self._workers:
                while worker.ready and len(worker.jobs) < PIPELINE_DEPTH and pending:
                    self._dispatch(worker, pending.popleft(), programs, results)
            self._wait(results)

    def _dispatch(self, worker: _Worker, index: int, programs: Sequence, results: list) -> None:
        code, grids = programs[index]
        grids = [np.asarray(g, dtype=np.int64) for g in grids]
        if not isinstance(code, str) or not code.strip():
            results[index] = failed(ErrorKind.NO_CODE, "no code", len(grids))
            return
        if not worker.jobs:
            worker.deadline = time.monotonic() + self.timeout_s + WORKER_GRACE_S
        worker.jobs.append((index, len(grids)))
        try:
            write_msg(worker.fd_in, (code, grids))
        except OSError:  # the worker is dead; _wait notices the EOF and replaces it
            pass

    def _wait(self, results: list) -> None:
        watched = {w.fd_out: w for w in self._workers if w.jobs or not w.ready}
        if not watched:
            return
        timeout = max(0.0, min(w.deadline for w in watched.values()) - time.monotonic())
        readable, _, _ = select.select(list(watched), [], [], timeout)
        for fd in readable:
            self._receive(watched[fd], results)
        now = time.monotonic()
        for worker in watched.values():
            if any(w is worker for w in self._workers) and worker.deadline < now:
                self._replace(worker, results, "stopped answering")

    def _receive(self, worker: _Worker, results: list) -> None:
        try:
            message = read_msg(worker.fd_out)
        except (EOFError, OSError, pickle.UnpicklingError, struct.error):
            self._replace(worker, results, "died")
            return
        if not worker.ready:
            worker.ready = isinstance(message, SandboxReport)
            if worker.ready:
                self.sandbox = message
                log.info("executor worker %d: sandbox %s", worker.proc.pid, message.describe())
            return
        index, _ = worker.jobs.popleft()
        results[index] = message
        if worker.jobs:  # the next job starts now
            worker.deadline = time.monotonic() + self.timeout_s + WORKER_GRACE_S

    def _replace(self, worker: _Worker, results: list, why: str) -> None:
        """Report the worker's program as crashed and start a fresh worker in its place."""
        if worker.jobs:
            # Only the oldest job was running; the queued ones never started, so they go back.
            index, n_grids = worker.jobs.popleft()
            results[index] = failed(ErrorKind.CRASHED, f"executor worker {why}", n_grids)
            self._requeue.extend(i for i, _ in worker.jobs)
        elif not worker.ready:
            raise RuntimeError(f"executor worker {why} during start-up (see its stderr)")
        log.warning("executor worker %d %s; starting a new one", worker.proc.pid, why)
        _stop(worker.proc, kill=True)
        self.restarts += 1
        self._workers[self._workers.index(worker)] = self._spawn()

    def _restart_busy(self) -> None:
        for worker in list(self._workers):
            if worker.jobs:
                worker.jobs.clear()
                _stop(worker.proc, kill=True)
                self._workers[self._workers.index(worker)] = self._spawn()


def _stop(proc: subprocess.Popen, kill: bool = False) -> None:
    """Stop a worker: EOF on stdin lets it exit cleanly; SIGKILL if asked or if it lingers."""
    try:
        if kill:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(timeout=2)
    except (OSError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.wait()
    finally:
        if proc.stdout:
            proc.stdout.close()


# --------------------------------------------------------------------------- programs on tasks


@dataclass
class TaskExecution:
    """A program run on a task's train and test inputs, outputs in the task's original frame.

    The program ran on the augmented inputs (as the model saw them); valid outputs
    are mapped back with `augmentation.invert`, so they compare directly with the
    task's own grids.
    """

    train_outputs: list[np.ndarray | None]
    test_outputs: list[np.ndarray | None]
    train_errors: list[str | None]
    test_errors: list[str | None]
    kind: ErrorKind | None = None
    error: str | None = None
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.kind is None


def execute_on_tasks(
    executor: Executor, jobs: Sequence[tuple[str | None, Task, Augmentation]]
) -> list[TaskExecution]:
    """Run each `(code, task, augmentation)` on the task's augmented train and test inputs.

    The batch form the search loop uses (send all of an epoch's programs at once).
    `code` None or empty (nothing extracted from the completion) gives kind `no_code`.
    """
    programs = []
    for code, task, augmentation in jobs:
        grids = [augmentation.apply(ex.input) for ex in task.train] + [augmentation.apply(g) for g in task.test_inputs]
        programs.append((code or "", grids))
    results = executor.run(programs)
    return [_to_task_execution(r, task, aug) for r, (_, task, aug) in zip(results, jobs)]


def execute_on_task(
    executor: Executor, code: str | None, task: Task, augmentation: Augmentation = Augmentation()
) -> TaskExecution:
    """`execute_on_tasks` for a single program."""
    return execute_on_tasks(executor, [(code, task, augmentation)])[0]


def _to_task_execution(result: ExecutionResult, task: Task, augmentation: Augmentation) -> TaskExecution:
    outputs = [None if o is None else augmentation.invert(o) for o in result.outputs]
    n = len(task.train)
    return TaskExecution(
        outputs[:n], outputs[n:], result.errors[:n], result.errors[n:], result.kind, result.error, result.duration_s
    )


def executor_workers(config: Any, n_workers: int) -> int:
    """Program executors per run worker: the machine's cores split between them (4 GPU workers share one CPU)."""
    if config.execution.workers > 0:
        return config.execution.workers
    return max(1, len(os.sched_getaffinity(0)) // max(1, n_workers))
