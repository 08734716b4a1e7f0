"""The run's parent at work: it starts one worker process per device, watches them, owns the deadline and the merges.

Workers are subprocesses rather than multiprocessing children: CUDA_VISIBLE_DEVICES
is in their environment before Python starts (nothing imported by the parent can
have touched CUDA), each can be killed on its own without taking a pool down, their
stdout/stderr go straight to their log file, and the same command can be run by
hand to debug one worker. It also works the same from a notebook as from a shell.

Stopping: SIGTERM and SIGHUP (`stop_on_signals`) and Ctrl-C stop the workers (SIGTERM, a
grace, SIGKILL), and the submission is merged; `final_merge` falls back on the disk space
`MergeSpace` held for it. Workers die with the parent even when it is SIGKILLed: each asks the
kernel for SIGKILL on its parent's death (PR_SET_PDEATHSIG, `WORKER_BOOTSTRAP`) before it imports
anything. A worker that dies or stops answering is restarted while there is time and work.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, TextIO

from arc25 import claims
from arc25.config import Config
from arc25.errors import USER_ERROR_EXIT, UserError, one_line
from arc25.io import open_regular
from arc25.progress import Progress
from arc25.rundir import (SUBMISSION_FILE, append_timeline, last_line, log_path, log_write_failed,
                          read_json_or_none, status_age_s, status_path, timeline_row, write_status)
from arc25.tasks import Task
from arc25.workers import ENGINE_STALLED_EXIT, POLL_S

log = logging.getLogger(__name__)

KILL_WAIT_S = 5.0  # SIGKILL -> giving up on the process (a task in uninterruptible sleep can outlive SIGKILL)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)  # handled like Ctrl-C: stop the workers, merge, exit

# How a worker starts: PR_SET_PDEATHSIG (1) first, so it is SIGKILLed when the parent dies, however it dies;
# then the parent check closes the race of a parent that died before prctl; then `python -m arc25.workers`.
# The setting survives nothing but this process: the worker's own children set their own (see exec_child).
WORKER_BOOTSTRAP = ("import ctypes, os, runpy, signal, sys; "
                    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL); "
                    "os.getppid() == int(sys.argv[1]) or os._exit(1); "
                    "sys.argv = ['arc25.workers', *sys.argv[2:]]; "
                    "runpy.run_module('arc25.workers', run_name='__main__', alter_sys=True)")


# -- stopping ---------------------------------------------------------------------------------------


@dataclass
class StopRequest:
    """Set by a SIGTERM/SIGHUP handler; the supervisor polls it, so a signal never interrupts a merge."""

    signum: int | None = None

    @property
    def name(self) -> str | None:
        return signal.Signals(self.signum).name if self.signum else None


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """While inside, SIGTERM and SIGHUP request a stop (logged once; a repeat is logged and ignored).

    Only the main thread can set handlers: elsewhere (a notebook's worker thread) signals keep their default.
    A signal the process was told to ignore stays ignored (`nohup arc25 run ...` survives its terminal).
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if request.signum is None:
            request.signum = signum
            log.warning("received %s: stopping workers, merging", name)
        else:
            log.warning("received %s again: already stopping", name)

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        yield request
    finally:
        for s, old in previous.items():
            signal.signal(s, old if old is not None else signal.SIG_DFL)


# -- the workers ----------------------------------------------------------------------------------


class WorkerProcess:
    """A worker subprocess in its own session, so a terminal's Ctrl-C reaches only the parent."""

    def __init__(self, run_dir: Path, index: int, device: str, n_workers: int, log_level: int) -> None:
        self.run_dir, self.index, self.device = run_dir, index, device
        self.restarts = 0
        self.proc: subprocess.Popen | None = None
        self.log_file: TextIO | None = None
        self.env = self._env(device, n_workers)
        self.log_level = log_level

    @staticmethod
    def _env(device: str, n_workers: int) -> dict[str, str]:
        env = dict(os.environ)
        env["CUDA_VISIBLE_DEVICES"] = "" if device == "cpu" else device  # before torch is imported there
        threads = str(max(1, len(os.sched_getaffinity(0)) // n_workers))
        env.setdefault("OMP_NUM_THREADS", threads)  # CPU workers must not each take every core
        env.setdefault("MKL_NUM_THREADS", threads)
        # The worker imports arc25 from wherever the parent did (e.g. a notebook's sys.path entry).
        package_root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        return env

    def command(self) -> list[str]:
        """`python -m arc25.workers ...` behind the PR_SET_PDEATHSIG bootstrap (run the module by hand to debug)."""
        return [sys.executable, "-c", WORKER_BOOTSTRAP, str(os.getpid()), "--run-dir", str(self.run_dir),
                "--index", str(self.index), "--log-level", logging.getLevelName(self.log_level)]

    def start(self) -> None:
        self.close()
        try:
            self.log_file = open_regular(log_path(self.run_dir, self.index), "a")
        except OSError as exc:  # the log is best effort: the worker runs without one
            log_write_failed(log_path(self.run_dir, self.index), exc)
        command = self.command()
        self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self.log_file or subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        # A status right away, so the other workers count this one as alive while it starts up
        # (a task that failed elsewhere waits for it rather than being retried where it failed).
        pid = self.proc.pid
        write_status(status_path(self.run_dir, self.index), {
            "worker": self.index, "pid": pid, "pid_started": claims.process_started(pid), "device": self.device,
            "state": "starting", "tasks": [], "updated_at": time.time()})
        log.info("worker %d started (pid %d, device %s)", self.index, pid, self.device)

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def kill(self) -> None:
        """SIGKILL, and a bounded wait: a process stuck in the kernel (a hung driver call) may outlive even
        SIGKILL, and the parent must still merge and exit."""
        self.signal(signal.SIGKILL)
        try:
            self.proc.wait(timeout=KILL_WAIT_S)
        except subprocess.TimeoutExpired:
            log.error("worker %d (pid %d) did not exit %.0f s after SIGKILL (stuck in the kernel?); leaving it",
                      self.index, self.pid, KILL_WAIT_S)

    def close(self) -> None:
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None


class Supervisor:
    """Starts the workers, watches them, and owns the deadline and the merges."""

    def __init__(self, run_dir: Path, tasks: dict[str, Task], task_ids: list[str], config: Config,
                 devices: list[str], deadline: float, stop_grace_s: float, progress: bool, log_level: int,
                 stop: StopRequest | None = None) -> None:
        self.run_dir, self.tasks, self.task_ids, self.config = run_dir, tasks, task_ids, config
        self.deadline, self.stop_grace_s = deadline, stop_grace_s
        self.stop = stop or StopRequest()
        self.workers = [WorkerProcess(run_dir, k, d, len(devices), log_level) for k, d in enumerate(devices)]
        initial = claims.count_finished(run_dir, task_ids, warn=True)  # says which results are unreadable
        self.progress = Progress(len(task_ids), initial, self.workers, progress)
        self.crashes = 0
        self.exits: dict[int, int | None] = {}
        self.deadline_hit = False

    def merge(self) -> None:
        from arc25.submission import write_submission

        write_submission(self.run_dir, self.tasks, self.run_dir / SUBMISSION_FILE)

    def run(self) -> None:
        if self.stop.signum:  # the signal came while the run was being set up
            return
        for worker in self.workers:
            worker.start()
        try:
            with self.progress.logging():
                self.watch()
        finally:
            self.stop_all()  # also on Ctrl-C or a bug here: no orphaned worker keeps a GPU
            self.progress.update(claims.count_finished(self.run_dir, self.task_ids), self.run_dir)
            self.progress.close()
            for worker in self.workers:
                worker.close()

    def watch(self) -> None:
        while True:
            if self.stop.signum:
                return  # run() stops the workers, the caller merges
            for worker in self.workers:
                self.check(worker)
            self.progress.update(claims.count_finished(self.run_dir, self.task_ids), self.run_dir)
            if not any(w.alive() for w in self.workers):
                return
            if time.time() >= self.deadline:
                self.deadline_hit = True
                log.warning("deadline: merging before stopping the workers still busy")
                try:
                    self.merge()  # a valid submission exists before anything is killed
                except Exception:
                    log.exception("merge at the deadline failed; stopping the workers and merging again")
                return
            time.sleep(POLL_S)

    def check(self, worker: WorkerProcess) -> None:
        """Notice a worker that died or froze; restart it while there is time and work."""
        if worker.proc is None or worker.index in self.exits:
            return
        path = status_path(self.run_dir, worker.index)
        status = read_json_or_none(path)
        if worker.alive():
            stale = status and status.get("pid") == worker.pid and \
                status_age_s(path, status, time.time()) > self.config.run.stale_after_s
            if stale:  # even its heartbeat thread is stuck
                log.error("worker %d (pid %d) stopped responding; killing it", worker.index, worker.pid)
                worker.kill()
            else:
                return
        code = worker.proc.returncode
        if code == 0:
            self.exits[worker.index] = code
            return
        self.crashes += 1
        why = "its engine stalled, its tasks went to the others" if code == ENGINE_STALLED_EXIT else \
            last_line(log_path(self.run_dir, worker.index))
        log.error("worker %d (pid %d) died with exit code %s: %s (log: %s)", worker.index, worker.pid, code, why,
                  log_path(self.run_dir, worker.index))
        self.record_interrupted(worker, status, "crashed")
        unfinished = claims.count_finished(self.run_dir, self.task_ids) < len(self.task_ids)
        retry = code != USER_ERROR_EXIT  # a setup error (bad model path...) fails the same way again
        if retry and worker.restarts < self.config.run.max_worker_restarts and unfinished and \
                time.time() < self.deadline:
            worker.restarts += 1
            log.warning("restarting worker %d (restart %d of %d)", worker.index, worker.restarts,
                        self.config.run.max_worker_restarts)
            worker.start()
        else:
            self.exits[worker.index] = code

    def record_interrupted(self, worker: WorkerProcess, status: dict[str, Any] | None, outcome: str) -> None:
        """The timeline line a worker could not write itself: the task it was on when it died or was stopped."""
        if not status or status.get("pid") != worker.pid or status.get("state") != "working":
            return
        for task in status.get("tasks") or []:
            task_id = task.get("task_id")
            claim = claims.read_claim(self.run_dir, task_id)
            mine = claim is not None and claim.pid == worker.pid  # else the result is already the next owner's
            result = claims.read_result(self.run_dir, task_id, warn=False) if mine else None
            start = task.get("started") or status.get("updated_at") or time.time()
            append_timeline(self.run_dir, worker.index, timeline_row(worker.index, task_id, start, outcome, result))

    def stop_all(self) -> None:
        """SIGTERM, a short grace, then SIGKILL; their claims are marked interrupted (not the tasks' fault)."""
        running = [w for w in self.workers if w.alive()]
        for worker in running:
            worker.signal(signal.SIGTERM)
        limit = time.time() + self.stop_grace_s
        for worker in running:
            try:
                worker.proc.wait(timeout=max(0.0, limit - time.time()))
            except subprocess.TimeoutExpired:
                worker.kill()
        outcome = "stopped" if self.stop.signum else "deadline"
        for worker in running:
            self.exits[worker.index] = worker.proc.returncode
            self.record_interrupted(worker, read_json_or_none(status_path(self.run_dir, worker.index)), outcome)
            try:
                for claim in claims.interrupt_claims_of(self.run_dir, worker.pid):
                    log.info("task %s: interrupted (worker %d stopped)", claim.task_id, worker.index)
            except OSError as exc:  # a full disk: resuming takes these claims over (the pid is gone)
                log.error("worker %d: cannot mark its claims interrupted (%s)", worker.index, one_line(exc))


# -- the merges -----------------------------------------------------------------------------------


class MergeSpace:
    """Disk space held for the final merge: a file of the largest submission's size, given back when a merge
    finds the disk full (the workers' results and logs may fill it during the run: issue 18).
    A submission holds at most 2 attempts of a 30x30 grid per test input: 3.8 KB of JSON, ids included."""

    BYTES_PER_TEST_INPUT = 4096
    FILE = ".merge-space"

    def __init__(self, run_dir: Path, tasks: dict[str, Task]) -> None:
        self.path = run_dir / self.FILE
        self.size = 4096 + self.BYTES_PER_TEST_INPUT * sum(len(t.test_inputs) for t in tasks.values())

    def __enter__(self) -> MergeSpace:
        try:
            with open(self.path, "wb") as f:
                os.posix_fallocate(f.fileno(), 0, self.size)
        except OSError as exc:
            log.warning("%s: cannot hold %d bytes for the final merge (%s)", self.path, self.size,
                        exc.strerror or one_line(exc))
            self.release()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> bool:
        """Give the space back; False if none was held."""
        try:
            self.path.unlink()
            return True
        except OSError:
            return False


def final_merge(supervisor: Supervisor, space: MergeSpace | None = None) -> None:
    """The submission, or one line saying why it cannot be written. On a full disk the space held for it is
    given back and the merge tried again; if that fails too, the submission written at the start stands."""
    try:
        supervisor.merge()
        return
    except OSError as exc:
        error = exc
    if space is not None and space.release():
        log.warning("the disk is full: merging into the space held for it")
        try:
            supervisor.merge()
            return
        except OSError as exc:
            error = exc
    path = supervisor.run_dir / SUBMISSION_FILE
    standing = "; the last one written stands (at worst the fallback written at the start)" if path.exists() else ""
    raise UserError(f"{path}: cannot write the submission ({error.strerror or one_line(error)}){standing}") from None


def supervise(supervisor: Supervisor, started: float) -> None:
    n, initial = len(supervisor.task_ids), supervisor.progress.initial
    if initial == n:
        log.info("run %s: every task is already finished; merging only", supervisor.run_dir)
        supervisor.progress.close()
        return
    log.info("run %s: %d tasks (%d already finished), %d worker(s) on %s, deadline in %.0f s", supervisor.run_dir, n,
             initial, len(supervisor.workers), ",".join(w.device for w in supervisor.workers),
             supervisor.deadline - started)
    try:
        supervisor.run()
    except KeyboardInterrupt:
        log.warning("interrupted: merging what the workers left")
        final_merge(supervisor)
        raise
