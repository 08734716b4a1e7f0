"""The executor's worker process: between the trusted parent and the untrusted children.

Started by `arc25.execution.Executor` as `python -c "from arc25.exec_worker import worker_main;
worker_main()" SETTINGS_JSON` (execution.WORKER_COMMAND), so it imports none of the parent's modules
(tests/test_execution.py checks). It imports numpy, scipy.ndimage and the DSL once (`preload`),
prepares the sandbox and the confinement once, then for every job forks a child
(arc25.exec_child), SIGKILLs the child's process group at the wall-clock timeout (a signal no
`except:` can swallow), and validates what the child sent as plain data (`parse_line`: JSON,
never pickle). It never runs untrusted code itself. Parent <-> worker framing: arc25.exec_protocol.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from arc25.exec_child import Confinement, child_main
from arc25.exec_protocol import MAX_MESSAGE_CHARS, ErrorKind, ExecutionResult, failed, read_msg, write_msg
from arc25.grid import shape_ok
from arc25.sandbox import Sandbox, parse_layers

DSL_PATH = Path(__file__).resolve().parent / "dsl" / "common.py"
# A legitimate result line is ~1 KB per grid; anything far beyond is garbage.
MAX_RESULT_BYTES = 4 << 20


def worker_main() -> None:
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
    preload()
    cwd = tempfile.mkdtemp(prefix="arc25-exec-")
    os.chmod(cwd, 0o555)
    sandbox = Sandbox(parse_layers(settings["layers"]))
    confinement = Confinement(float(settings["timeout_s"]), int(settings["memory_mb"]), cwd, sandbox)
    import gc

    gc.freeze()  # keep the collector from touching (and so copying) inherited pages in children
    write_msg(proto_out, sandbox.report)  # "ready", and what the children run under
    try:
        while True:
            job = read_msg(proto_in)
            if job is None:
                break
            code, grids = job
            write_msg(proto_out, run_in_child(code, grids, confinement))
    except EOFError:
        pass  # the parent is gone
    finally:
        os.chmod(cwd, 0o755)
        os.rmdir(cwd)


def preload() -> None:
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


def run_in_child(code: str, grids: list[np.ndarray], confinement: Confinement) -> ExecutionResult:
    """Fork, run the program in the child under the timeout, and collect its results."""
    start = time.monotonic()
    read_fd, write_fd = os.pipe()
    worker_pid = os.getpid()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        child_main(write_fd, code, grids, confinement, worker_pid)
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


# --------------------------------------------------------------------------- what the child sent (untrusted)


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
            message = parse_line(line, n)
        except (ValueError, TypeError, KeyError) as exc:
            return failed(ErrorKind.CRASHED, f"malformed result from the program's process ({exc})", n, duration)
        if "fatal" in message:
            return failed(ErrorKind(message["fatal"]), message["msg"], n, duration)
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


def parse_line(line: bytes, n: int) -> dict[str, Any]:
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
    if not (type(h) is int and type(w) is int and shape_ok((h, w))):
        raise ValueError(f"bad shape {message['shape']!r}")
    # one ASCII digit per cell: the colours 0..MAX_COLOR (9) and nothing else
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
