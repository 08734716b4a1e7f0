"""What crosses the executor's process boundaries: error kinds, results, and the parent <-> worker framing.

Three processes run a program (arc25.execution has the whole picture):

    parent (arc25.execution)  --pickle frames-->  worker (arc25.exec_worker)  --fork-->  child (arc25.exec_child)
                              <--pickle frames--                              <--JSON lines--

Between the parent and its workers both sides are trusted, so the frames are pickle (4-byte
little-endian length, then the pickle): jobs `(code, grids)` or None (stop) one way, the worker's
`SandboxReport` (ready) and then one `ExecutionResult` per job the other. The child is not trusted:
its lines are plain JSON that the worker validates (`arc25.exec_worker.parse_line`), never pickle.
The child imports `ErrorKind` and `MAX_MESSAGE_CHARS` from here, so this module stays small.
"""

from __future__ import annotations

import enum
import os
import pickle
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_MESSAGE_CHARS = 300  # an error message as reported: a program's exception text is cut to this


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


def failed(kind: ErrorKind, message: str, n_grids: int, duration_s: float = 0.0) -> ExecutionResult:
    """A result where the whole program failed the same way on every grid."""
    text = f"{kind.value}: {message}"
    return ExecutionResult([None] * n_grids, [text] * n_grids, kind, message, duration_s)


# --------------------------------------------------------------------------- framing (trusted processes only)


def write_msg(fd: int, obj: Any) -> None:
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


def read_msg(fd: int) -> Any:
    (size,) = struct.unpack("<I", _read_exact(fd, 4))
    return pickle.loads(_read_exact(fd, size))
