"""The untrusted side of the executor: what runs in the child forked for each program.

Trusted here: only what the child inherited from its worker (arc25.exec_worker) at the fork,
before any program code ran: this module's functions and the references captured below, the
`Confinement` the worker prepared (its sandbox, /dev/null fd, prctl), the loaded DSL and numpy,
and the result pipe's fd.
Not trusted: the program and everything after `exec` of it. It may patch any module it can reach
(json, os, numpy, random, `common`), return anything (`coerce_output` never raises), print
forever, exit or die at any point. So the child confines itself before the program is compiled
(`Confinement.apply`: own process group, parent-death signal, rlimits, empty environment, no fd
but the pipe, read-only cwd, then arc25.sandbox), reports through references captured at import,
and the worker treats every byte it sends as hostile text (`arc25.exec_worker.parse_line`).

Imports are kept to what the child needs: the worker imports this module before it forks, so
nothing here is imported inside the sandbox (whose Landlock layer allows reads only beneath the
standard library, site-packages and the DSL: arc25.sandbox.read_allowlist).
"""

from __future__ import annotations

import builtins
import json
import math
import os
import random
import resource
import signal
from typing import TYPE_CHECKING, Any

import numpy as np

from arc25.exec_protocol import MAX_MESSAGE_CHARS, ErrorKind
from arc25.grid import MAX_COLOR, MAX_SIDE, shape_ok

if TYPE_CHECKING:
    from arc25.sandbox import Sandbox

SEED = 0  # random and numpy.random are seeded with it before every grid


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
        return None, f"cannot convert to an array: {short(exc)}"


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
        return None, f"cannot convert to an array: {short(exc)}"
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
    if not shape_ok(arr.shape):
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
    if low < 0 or high > MAX_COLOR:
        return None, f"values outside 0..{MAX_COLOR} (min {low:g}, max {high:g})"
    return arr.astype(np.int64), None


def short(exc: BaseException) -> str:
    """`Type: message`, cut to MAX_MESSAGE_CHARS; a hostile __str__ cannot make it raise."""
    try:
        text = f"{type(exc).__name__}: {exc}"
    except BaseException:  # a hostile __str__ must not break error reporting
        text = type(exc).__name__
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


# --------------------------------------------------------------------------- confinement


class Confinement:
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


# --------------------------------------------------------------------------- running the program

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


def child_main(fd: int, code: str, grids: list[np.ndarray], confinement: Confinement, worker_pid: int) -> None:
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
        _send(fd, {"fatal": ErrorKind.SYNTAX_ERROR.value, "msg": short(exc)})
        return
    namespace: dict[str, Any] = {"__name__": "__program__", "__builtins__": builtins}
    try:
        exec(compiled, namespace)
    except MemoryError as exc:
        _send(fd, {"fatal": ErrorKind.MEMORY_LIMIT.value, "msg": short(exc) + " at module level"})
        return
    except BaseException as exc:  # SystemExit, KeyboardInterrupt too: the program is at fault
        _send(fd, {"fatal": ErrorKind.EXCEPTION.value, "msg": short(exc) + " at module level"})
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
        return {"i": i, "kind": ErrorKind.MEMORY_LIMIT.value, "msg": short(exc)}
    except BaseException as exc:
        return {"i": i, "kind": ErrorKind.EXCEPTION.value, "msg": short(exc)}
    arr, why = coerce_output(value)
    if arr is None:
        return {"i": i, "kind": ErrorKind.INVALID_OUTPUT.value, "msg": why}
    digits = "".join(map(str, arr.ravel().tolist()))
    return {"i": i, "shape": list(arr.shape), "data": digits}
