"""Sandboxed, fast execution of model-written BARC programs.

Every program does `from common import *` and defines `transform(input_grid)`.
A hung, crashing or hostile program must never stall a worker or change another
program's result, so:

- `Executor` keeps a pool of long-lived worker processes (one per usable CPU),
  started once. Each worker has imported numpy, scipy.ndimage and the DSL
  (`arc25/dsl/common.py`, registered as `sys.modules['common']`) and never runs
  untrusted code itself.
- For every program the worker forks a child. Copy-on-write gives the child a
  pristine `common`/`Color` for free; whatever the program reassigns, patches or
  leaks dies with the child. The child confines itself (own process group,
  parent-death signal, address-space/CPU/file-size limits, stdout/stderr to
  /dev/null, empty environment, no open fd but its result pipe, read-only temp
  cwd), then enters the sandbox (arc25.sandbox: Landlock, seccomp-bpf and the
  audit hook, as far as the kernel allows), runs the program on every grid and
  streams one result line per grid back. Its process group is killed when it ends.
- The worker SIGKILLs the child's process group at the wall-clock timeout (a
  signal no `except:` can swallow), and validates what came back as plain data
  (JSON, never pickle: the child is untrusted).
- The parent watches workers too: a worker that dies (or stops answering) is
  replaced and its program reported as `crashed`.

Results are `ExecutionResult`s; `execute_on_tasks` runs programs on the augmented
inputs of a task and maps outputs back with `Augmentation.invert`.
"""

from __future__ import annotations

import builtins
import enum
import json
import logging
import math
import os
import pickle
import random
import resource
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from arc25.augment import Augmentation
from arc25.sandbox import ALL_LAYERS, Layer, Sandbox, SandboxReport, parse_layers
from arc25.tasks import Task

log = logging.getLogger(__name__)

DSL_PATH = Path(__file__).resolve().parent / "dsl" / "common.py"
SEED = 0
MAX_SIDE = 30
# How long the parent waits beyond a program's timeout before it declares the
# worker itself hung (the worker enforces the timeout; this is the backstop).
WORKER_GRACE_S = 5.0
WORKER_START_TIMEOUT_S = 120.0
# A legitimate result line is ~1 KB per grid; anything far beyond is garbage.
MAX_RESULT_BYTES = 4 << 20
MAX_MESSAGE_CHARS = 300


class ErrorKind(str, enum.Enum):
    """Why a program (or one grid of it) produced no valid output."""

    NO_CODE = "no_code"  # no code could be extracted from the completion
    SYNTAX_ERROR = "syntax_error"
    NO_TRANSFORM = "no_transform"  # no callable `transform` after running the module
    EXCEPTION = "exception"  # raised (at module level or in transform): type and message
    TIMEOUT = "timeout"
    MEMORY_LIMIT = "memory_limit"  # MemoryError under the address-space limit
    INVALID_OUTPUT = "invalid_output"  # not a valid grid, with the reason
    CRASHED = "crashed"  # the process died: os._exit, segfault, killed, garbage result

    def __str__(self) -> str:
        return self.value


@dataclass
class ExecutionResult:
    """One program run on a list of grids.

    `outputs[i]` is the int64 output grid for input i or None; `errors[i]` is then
    "<kind>: <message>". `kind`/`error` are the program-level summary: the kind and
    message of the first failing grid (or of the program as a whole, e.g. a syntax
    error), None when every grid gave a valid output.
    """

    outputs: list[np.ndarray | None]
    errors: list[str | None]
    kind: ErrorKind | None = None
    error: str | None = None
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.kind is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "outputs": [None if o is None else o.tolist() for o in self.outputs],
            "errors": list(self.errors),
            "kind": None if self.kind is None else self.kind.value,
            "error": self.error,
            "duration_s": round(self.duration_s, 6),
        }


def _failed(kind: ErrorKind, message: str, n_grids: int, duration_s: float = 0.0) -> ExecutionResult:
    """A result where the whole program failed the same way on every grid."""
    text = f"{kind.value}: {message}"
    return ExecutionResult([None] * n_grids, [text] * n_grids, kind, message, duration_s)


# --------------------------------------------------------------------------- output validation


def coerce_output(value: Any) -> tuple[np.ndarray | None, str | None]:
    """A program's return value as an int64 grid, or (None, why it is not one). Never raises.

    The contract (barc-induction-format.md, section 3): a valid output is 2-D, each
    side 1..30, every value an integer 0..9. Coerced: integer arrays of any width,
    lists (or tuples) of lists of ints, floats that are all whole numbers. Invalid:
    None, scalars and strings, 0-D/1-D/3-D arrays, ragged rows, empty arrays, bool
    masks (`input_grid != 0` is a mask, not a grid of colours), object arrays,
    fractional or non-finite floats, other dtypes, values outside 0..9.
    """
    try:
        return _coerce(value)
    except BaseException as exc:  # e.g. a custom __array__ or __len__ raising
        return None, f"cannot convert to an array: {_short(exc)}"


def _coerce(value: Any) -> tuple[np.ndarray | None, str | None]:
    if value is None:
        return None, "transform returned None"
    if isinstance(value, (str, bytes)):
        return None, f"transform returned a {type(value).__name__}, not a grid"
    if isinstance(value, (bool, int, float, complex)) or np.isscalar(value):
        return None, f"transform returned a scalar ({type(value).__name__}), not a grid"
    try:
        arr = np.asarray(value)
    except ValueError as exc:
        if "inhomogeneous" in str(exc):  # numpy's word for rows of different lengths
            return None, "ragged rows (not all the same length)"
        return None, f"cannot convert to an array: {_short(exc)}"
    if arr.dtype == object and arr.ndim == 0:  # numpy wrapped a dict, a set, a function...
        return None, f"transform returned a {type(value).__name__}, not a grid"
    return _check_grid(arr)


def _check_grid(arr: np.ndarray) -> tuple[np.ndarray | None, str | None]:
    """Shape first, then cell type, then the colour range."""
    if arr.dtype == object:  # ragged nesting numpy accepted, None cells, huge ints, dicts...
        return None, f"object array of shape {arr.shape}, not a grid of integers"
    if arr.size == 0:
        return None, f"empty array of shape {arr.shape}"
    if arr.ndim != 2:
        return None, f"{arr.ndim}-D array of shape {arr.shape}, not a 2-D grid"
    if not (1 <= arr.shape[0] <= MAX_SIDE and 1 <= arr.shape[1] <= MAX_SIDE):
        return None, f"shape {arr.shape} has a side outside 1..{MAX_SIDE}"
    kind = arr.dtype.kind
    if kind == "b":
        return None, "bool array (a mask), not a grid of colours"
    if kind == "f":
        if not np.all(np.isfinite(arr)):
            return None, "non-finite float values (nan or inf)"
        fractional = arr[arr != np.round(arr)]
        if fractional.size:
            return None, f"float values with a fraction (e.g. {fractional.flat[0]:g})"
    elif kind not in "iu":
        return None, f"cells of dtype {arr.dtype} are not integers"
    low, high = arr.min(), arr.max()
    if low < 0 or high > 9:
        return None, f"values outside 0..9 (min {low:g}, max {high:g})"
    return arr.astype(np.int64), None


def _short(exc: BaseException) -> str:
    try:
        text = f"{type(exc).__name__}: {exc}"
    except BaseException:  # a hostile __str__ must not break error reporting
        text = type(exc).__name__
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


# --------------------------------------------------------------------------- the child (untrusted side)

class _Confinement:
    """Settings the worker prepares once; applied in each child right after fork."""

    def __init__(self, timeout_s: float, memory_mb: int, cwd: str, sandbox: Sandbox) -> None:
        self.timeout_s, self.memory_mb, self.cwd, self.sandbox = timeout_s, memory_mb, cwd, sandbox
        self.devnull = os.open(os.devnull, os.O_RDWR)
        self.prctl = _load_prctl()

    def apply(self, keep_fd: int, worker_pid: int) -> None:
        os.setpgid(0, 0)  # own group: the worker kills the whole group, and kill(0, ...) hits only us
        if self.prctl is not None:
            self.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the worker
        if os.getppid() != worker_pid:
            os._exit(70)  # the worker died before prctl took effect
        for fd in (0, 1, 2):
            os.dup2(self.devnull, fd)  # infinite printing goes nowhere, fast
        _close_all_but(sorted({keep_fd, *self.sandbox.keep_fds()}))  # the worker's protocol pipes too
        os.chdir(self.cwd)  # read-only temp dir: relative writes fail
        os.environ.clear()  # no secrets or paths from the environment
        self._set_limits()
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # exceeding RLIMIT_FSIZE: EFBIG, not death
        self.sandbox.enter()  # Landlock, seccomp, the audit hook: last, nothing above needs what they refuse

    def _set_limits(self) -> None:
        # RLIMIT_AS counts the inherited address space (numpy, scipy, OpenBLAS
        # buffers), so the cap is what we have now plus the allowance.
        current = _vm_size_bytes()
        cap = current + self.memory_mb * (1 << 20)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        cpu = math.ceil(self.timeout_s) + 1  # backstop for a child that somehow outlives its worker
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        try:
            resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))  # no effect as root; the audit hook covers fork
        except (ValueError, OSError):
            pass


def _close_all_but(keep: list[int]) -> None:
    low = 3
    for fd in keep:
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, _max_fd())


def _load_prctl() -> Any:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl
    except (OSError, AttributeError):
        return None


def _max_fd() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return min(soft, 65536) if soft > 0 else 4096


def _vm_size_bytes() -> int:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


# References captured before any program runs: a program may patch these
# modules' attributes, and that must not change how its results are reported.
_dumps = json.dumps
_os_write = os.write
_np_array = np.array
_random_seed = random.seed
_np_seed = np.random.seed


def _send(fd: int, message: dict[str, Any]) -> None:
    data = (_dumps(message) + "\n").encode()
    while data:
        data = data[_os_write(fd, data) :]


def _child_main(fd: int, code: str, grids: list[np.ndarray], confinement: _Confinement, worker_pid: int) -> None:
    """Runs in the forked child. Never returns: always ends with os._exit."""
    try:
        confinement.apply(fd, worker_pid)
        _run_program(fd, code, grids)
        os._exit(0)
    except BaseException:  # anything escaping here is our bug or a broken pipe; the worker sees EOF
        os._exit(71)


def _run_program(fd: int, code: str, grids: list[np.ndarray]) -> None:
    try:
        compiled = compile(code, "<program>", "exec")
    except (SyntaxError, ValueError) as exc:  # ValueError: null bytes in source
        _send(fd, {"fatal": ErrorKind.SYNTAX_ERROR.value, "msg": _short(exc)})
        return
    namespace: dict[str, Any] = {"__name__": "__program__", "__builtins__": builtins}
    try:
        exec(compiled, namespace)
    except MemoryError as exc:
        _send(fd, {"fatal": ErrorKind.MEMORY_LIMIT.value, "msg": _short(exc) + " at module level"})
        return
    except BaseException as exc:  # SystemExit, KeyboardInterrupt too: the program is at fault
        _send(fd, {"fatal": ErrorKind.EXCEPTION.value, "msg": _short(exc) + " at module level"})
        return
    transform = namespace.get("transform")
    if not callable(transform):
        _send(fd, {"fatal": ErrorKind.NO_TRANSFORM.value, "msg": "no callable `transform` defined"})
        return
    for i, grid in enumerate(grids):
        _send(fd, _run_one(i, transform, grid))


def _run_one(i: int, transform: Any, grid: np.ndarray) -> dict[str, Any]:
    # Same seed before every call: programs may use randomness, results stay reproducible.
    _random_seed(SEED)
    _np_seed(SEED)
    try:
        value = transform(_np_array(grid, dtype=np.int64, copy=True))
    except MemoryError as exc:
        return {"i": i, "kind": ErrorKind.MEMORY_LIMIT.value, "msg": _short(exc)}
    except BaseException as exc:
        return {"i": i, "kind": ErrorKind.EXCEPTION.value, "msg": _short(exc)}
    arr, why = coerce_output(value)
    if arr is None:
        return {"i": i, "kind": ErrorKind.INVALID_OUTPUT.value, "msg": why}
    digits = "".join(map(str, arr.ravel().tolist()))
    return {"i": i, "shape": list(arr.shape), "data": digits}


# --------------------------------------------------------------------------- the worker (trusted side)


def _worker_main() -> None:
    """Entry point of a worker process (started by `Executor`).

    Protocol on stdin/stdout: 4-byte length + pickle, parent -> worker jobs
    (code, grids) or None to stop; worker -> parent its SandboxReport (ready),
    then one ExecutionResult per job. The parent is trusted; the worker's children are not.
    """
    settings = json.loads(sys.argv[1])
    proto_in, proto_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)  # stray prints (ours or a library's) must not corrupt the protocol
    os.dup2(devnull, 1)
    sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) != os.getcwd()]  # no imports from our cwd
    sys.dont_write_bytecode = True  # a child cannot write, and need not try
    _preload()
    cwd = tempfile.mkdtemp(prefix="arc25-exec-")
    os.chmod(cwd, 0o555)
    sandbox = Sandbox(parse_layers(settings["layers"]))
    confinement = _Confinement(float(settings["timeout_s"]), int(settings["memory_mb"]), cwd, sandbox)
    import gc

    gc.freeze()  # keep the collector from touching (and so copying) inherited pages in children
    _write_msg(proto_out, sandbox.report)  # "ready", and what the children run under
    try:
        while True:
            job = _read_msg(proto_in)
            if job is None:
                break
            code, grids = job
            _write_msg(proto_out, run_in_child(code, grids, confinement))
    except EOFError:
        pass  # the parent is gone
    finally:
        os.chmod(cwd, 0o755)
        os.rmdir(cwd)


def _preload() -> None:
    """Import what programs use, once: children then start with it in memory."""
    import collections  # noqa: F401
    import copy  # noqa: F401
    import functools  # noqa: F401
    import heapq  # noqa: F401
    import itertools  # noqa: F401
    import typing  # noqa: F401

    import scipy.ndimage  # noqa: F401  (the DSL imports it lazily; a child must not pay for that)

    load_dsl()


def load_dsl() -> Any:
    """Load arc25/dsl/common.py as `sys.modules['common']` (once)."""
    import importlib.util

    if "common" in sys.modules and getattr(sys.modules["common"], "__file__", None) == str(DSL_PATH):
        return sys.modules["common"]
    spec = importlib.util.spec_from_file_location("common", DSL_PATH)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the DSL from {DSL_PATH}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["common"] = module
    spec.loader.exec_module(module)
    return module


def run_in_child(code: str, grids: list[np.ndarray], confinement: _Confinement) -> ExecutionResult:
    """Fork, run the program in the child under the timeout, and collect its results."""
    start = time.monotonic()
    read_fd, write_fd = os.pipe()
    worker_pid = os.getpid()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _child_main(write_fd, code, grids, confinement, worker_pid)
    os.close(write_fd)
    try:
        os.setpgid(pid, pid)  # also here, so the group exists before we might kill it
    except OSError:
        pass  # the child already did it, or already exited
    data, why_killed = _collect(read_fd, pid, start + confinement.timeout_s)
    os.close(read_fd)
    # Whatever it started dies with it (the group leader is not reaped yet, so its pid is still its own).
    _kill_group(pid)
    _, status = os.waitpid(pid, 0)
    duration = time.monotonic() - start
    return _parse_child_output(data, len(grids), why_killed, status, duration, confinement.timeout_s)


def _collect(fd: int, pid: int, deadline: float) -> tuple[bytes, str | None]:
    """Read the child's output until EOF; SIGKILL its group at the deadline or on excess output."""
    chunks: list[bytes] = []
    size = 0
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            _kill_group(pid)
            return b"".join(chunks), "timeout"
        if not poller.poll(left * 1000):
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks), None
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_RESULT_BYTES:
            _kill_group(pid)
            return b"".join(chunks), "too_much_output"


def _kill_group(pid: int) -> None:
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            target()
        except (ProcessLookupError, PermissionError):
            pass


def _parse_child_output(
    data: bytes, n: int, why_killed: str | None, status: int, duration: float, timeout_s: float
) -> ExecutionResult:
    outputs: list[np.ndarray | None] = [None] * n
    errors: list[str | None] = [None] * n
    seen: set[int] = set()
    lines = data.split(b"\n")
    complete, tail = lines[:-1], lines[-1]  # the last piece is partial (or empty after a final newline)
    for line in complete:
        try:
            message = _parse_line(line, n)
        except (ValueError, TypeError, KeyError) as exc:
            return _failed(ErrorKind.CRASHED, f"malformed result from the program's process ({exc})", n, duration)
        if "fatal" in message:
            return _failed(ErrorKind(message["fatal"]), message["msg"], n, duration)
        i = message["i"]
        seen.add(i)
        if "grid" in message:
            outputs[i] = message["grid"]
        else:
            errors[i] = f"{message['kind']}: {message['msg']}"
    if len(seen) < n:  # the child did not finish: say why for the grids it never reported
        kind, reason = _why_unfinished(why_killed, status, timeout_s, bool(tail))
        for i in range(n):
            if i not in seen:
                errors[i] = f"{kind.value}: {reason}"
    return _summarise(outputs, errors, duration)


def _parse_line(line: bytes, n: int) -> dict[str, Any]:
    """Validate one JSON line from the child; raises ValueError/TypeError/KeyError if malformed."""
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError("not an object")
    if "fatal" in message:
        ErrorKind(message["fatal"])
        return {"fatal": message["fatal"], "msg": str(message["msg"])[:MAX_MESSAGE_CHARS]}
    i = message["i"]
    if type(i) is not int or not 0 <= i < n:
        raise ValueError(f"bad grid index {i!r}")
    if "data" not in message:
        kind = ErrorKind(message["kind"])
        return {"i": i, "kind": kind.value, "msg": str(message["msg"])[:MAX_MESSAGE_CHARS]}
    h, w = message["shape"]
    data = message["data"]
    if not (type(h) is int and type(w) is int and 1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise ValueError(f"bad shape {message['shape']!r}")
    if not isinstance(data, str) or len(data) != h * w or not data.isascii() or not data.isdigit():
        raise ValueError("bad grid data")
    grid = (np.frombuffer(data.encode(), dtype=np.uint8) - ord("0")).astype(np.int64).reshape(h, w)
    return {"i": i, "grid": grid}


def _why_unfinished(why_killed: str | None, status: int, timeout_s: float, partial: bool) -> tuple[ErrorKind, str]:
    if why_killed == "timeout":
        return ErrorKind.TIMEOUT, f"no result within {timeout_s:g} s"
    if why_killed == "too_much_output":
        return ErrorKind.CRASHED, "the program's process wrote too much to the result pipe"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXCPU:  # the RLIMIT_CPU backstop fired before our wall clock did
            return ErrorKind.TIMEOUT, "CPU time limit reached (SIGXCPU)"
        return ErrorKind.CRASHED, f"process killed by {_signal_name(sig)}"
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else status
    return ErrorKind.CRASHED, f"process exited with code {code} before returning a result"


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _summarise(outputs: list[np.ndarray | None], errors: list[str | None], duration: float) -> ExecutionResult:
    first = next((e for e in errors if e is not None), None)
    if first is None:
        return ExecutionResult(outputs, errors, None, None, duration)
    kind, _, message = first.partition(": ")
    return ExecutionResult(outputs, errors, ErrorKind(kind), message, duration)


def _write_msg(fd: int, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(struct.pack("<I", len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def _read_exact(fd: int, n: int) -> bytes:
    parts = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            raise EOFError("pipe closed")
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def _read_msg(fd: int) -> Any:
    (size,) = struct.unpack("<I", _read_exact(fd, 4))
    return pickle.loads(_read_exact(fd, size))


# --------------------------------------------------------------------------- the pool (parent side)


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
        command = [sys.executable, "-c", "from arc25.execution import _worker_main; _worker_main()", self._settings]
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
            results[index] = _failed(ErrorKind.NO_CODE, "no code", len(grids))
            return
        if not worker.jobs:
            worker.deadline = time.monotonic() + self.timeout_s + WORKER_GRACE_S
        worker.jobs.append((index, len(grids)))
        try:
            _write_msg(worker.fd_in, (code, grids))
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
            message = _read_msg(worker.fd_out)
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
            results[index] = _failed(ErrorKind.CRASHED, f"executor worker {why}", n_grids)
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
