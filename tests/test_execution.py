"""The sandboxed executor: classification of failures, isolation, seeding, augmentation.

What counts as a valid output grid is tested in test_output_validity.py.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest

from arc25.augment import Augmentation
from arc25.execution import ErrorKind, ExecutionResult, Executor, execute_on_task, execute_on_tasks
from arc25.tasks import Example, Task

REPO = Path(__file__).resolve().parents[1]
GRID = np.array([[0, 1, 2], [3, 4, 5]])

ROT = "from common import *\n\ndef transform(input_grid):\n    return np.rot90(input_grid)\n"


def run_one(executor: Executor, code: str, grids: list[np.ndarray] | None = None) -> ExecutionResult:
    return executor.run([(code, grids if grids is not None else [GRID])])[0]


def assert_pool_healthy(executor: Executor) -> None:
    results = executor.run([(ROT, [GRID, GRID.T])] * 6)
    for r in results:
        assert r.ok, r.error
        assert np.array_equal(r.outputs[0], np.rot90(GRID))
        assert np.array_equal(r.outputs[1], np.rot90(GRID.T))


# --------------------------------------------------------------------------- hostile programs

TIMED_OUT = r"no result within {timeout} s"  # {timeout}: the session executor's timeout_s
PYPROJECT = re.escape(repr(str(REPO / "pyproject.toml")))

# name: (program, kind, the whole message as a regular expression)
HOSTILE = {
    "swallow_loop": ("def transform(g):\n    while True:\n        try:\n            pass\n        except:\n            pass\n",
                     ErrorKind.TIMEOUT, TIMED_OUT),
    "base_exception": ("def transform(g):\n    while True:\n        try:\n            g = g + 0\n"
                       "        except BaseException:\n            continue\n", ErrorKind.TIMEOUT, TIMED_OUT),
    "signal_handlers": ("import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
                        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                        "def transform(g):\n    while True:\n        pass\n", ErrorKind.TIMEOUT, TIMED_OUT),
    "module_level_hang": ("while True:\n    pass\n", ErrorKind.TIMEOUT, TIMED_OUT),
    "sleep": ("import time\ndef transform(g):\n    time.sleep(1000)\n", ErrorKind.TIMEOUT, TIMED_OUT),
    "print_flood": ("def transform(g):\n    while True:\n        print('spam' * 1000)\n", ErrorKind.TIMEOUT, TIMED_OUT),
    "sys_exit": ("import sys\ndef transform(g):\n    sys.exit(0)\n", ErrorKind.EXCEPTION, r"SystemExit: 0"),
    "module_sys_exit": ("import sys\nsys.exit(1)\n", ErrorKind.EXCEPTION, r"SystemExit: 1 at module level"),
    "os_exit": ("import os\ndef transform(g):\n    os._exit(0)\n", ErrorKind.CRASHED,
                r"process exited with code 0 before returning a result"),
    "self_kill": ("import signal, ctypes\ndef transform(g):\n    signal.raise_signal(signal.SIGKILL)\n",
                  ErrorKind.CRASHED, r"process killed by SIGKILL"),
    "segfault": ("import faulthandler\ndef transform(g):\n    faulthandler._sigsegv()\n", ErrorKind.CRASHED,
                 r"process killed by SIGSEGV"),
    "recursion": ("def transform(g):\n    return transform(g)\n", ErrorKind.EXCEPTION,
                  r"RecursionError: maximum recursion depth exceeded.*"),
    "fork": ("import os\ndef transform(g):\n    os.fork()\n    return g\n", ErrorKind.EXCEPTION,
             r"PermissionError: sandbox: os\.fork is not allowed"),
    "fork_bomb": ("import os\ndef transform(g):\n    while True:\n        os.fork()\n", ErrorKind.EXCEPTION,
                  r"PermissionError: sandbox: os\.fork is not allowed"),
    "subprocess": ("import subprocess\ndef transform(g):\n    subprocess.run(['true'])\n    return g\n",
                   ErrorKind.EXCEPTION, r"PermissionError: sandbox: subprocess\.Popen is not allowed"),
    "huge_alloc": ("import numpy as np\ndef transform(g):\n    return np.zeros((10**6, 10**6))\n",
                   ErrorKind.MEMORY_LIMIT,
                   r"MemoryError: Unable to allocate .* for an array with shape \(1000000, 1000000\) .*"),
    # np.empty maps without touching: the cap is reached at once, however slow page faults are
    "memory_leak": ("import numpy as np\ndef transform(g):\n    hog = []\n    while True:\n"
                    "        hog.append(np.empty(10**7))\n", ErrorKind.MEMORY_LIMIT, r"MemoryError(: Unable to allocate .*)?"),
    "write_repo_file": (f"def transform(g):\n    open({str(REPO / 'pyproject.toml')!r}, 'w').write('x')\n    return g\n",
                        ErrorKind.EXCEPTION, rf"PermissionError: sandbox: opening {PYPROJECT} for writing is not allowed"),
    "write_cwd_file": ("import os\ndef transform(g):\n    fd = os.open('x.txt', os.O_CREAT | os.O_WRONLY)\n    return g\n",
                       ErrorKind.EXCEPTION, r"PermissionError: sandbox: opening 'x\.txt' for writing is not allowed"),
    "remove_file": (f"import os\ndef transform(g):\n    os.remove({str(REPO / 'pyproject.toml')!r})\n",
                    ErrorKind.EXCEPTION, r"PermissionError: sandbox: os\.remove is not allowed"),
    "kill_parent": ("import os\ndef transform(g):\n    os.kill(os.getppid(), 9)\n    return g\n",
                    ErrorKind.EXCEPTION, r"PermissionError: sandbox: os\.kill is not allowed"),
    "kill_group": ("import os\ndef transform(g):\n    os.killpg(0, 9)\n    return g\n", ErrorKind.EXCEPTION,
                   r"PermissionError: sandbox: os\.killpg is not allowed"),
    "ctypes_kill": ("import ctypes, os\ndef transform(g):\n    ctypes.CDLL(None).kill(os.getppid(), 9)\n    return g\n",
                    ErrorKind.EXCEPTION, r"PermissionError: sandbox: ctypes\.dlopen is not allowed"),
    "syntax": ("def transform(g)\n    return g\n", ErrorKind.SYNTAX_ERROR,
               r"SyntaxError: expected ':' \(<program>, line 1\)"),
    # Python 3.12 raises SyntaxError for a null byte, 3.11 ValueError: both are a syntax error here
    "null_byte": ("def transform(g):\n    return g\x00\n", ErrorKind.SYNTAX_ERROR,
                  r"(SyntaxError|ValueError): source code (string )?cannot contain null bytes.*"),
    "no_transform": ("def solve(g):\n    return g\n", ErrorKind.NO_TRANSFORM, r"no callable `transform` defined"),
    "transform_not_callable": ("transform = 3\n", ErrorKind.NO_TRANSFORM, r"no callable `transform` defined"),
    "exception": ("def transform(g):\n    return g[99, 99]\n", ErrorKind.EXCEPTION,
                  r"IndexError: index 99 is out of bounds for axis 0 with size 2"),
    "import_error": ("import not_a_module_xyz\ndef transform(g):\n    return g\n", ErrorKind.EXCEPTION,
                     r"ModuleNotFoundError: No module named 'not_a_module_xyz' at module level"),
    # its __str__ raises: the report falls back to the type's name
    "hostile_str": ("class E(Exception):\n    def __str__(self):\n        raise RuntimeError('no')\n"
                    "def transform(g):\n    raise E()\n", ErrorKind.EXCEPTION, r"E"),
    "wrong_output": ("def transform(g):\n    return 'hello'\n", ErrorKind.INVALID_OUTPUT,
                     r"transform returned a str, not a grid"),
    "empty_code": ("", ErrorKind.NO_CODE, r"no code"),
}


@pytest.fixture(scope="session")
def hostile_results(executor):
    names = list(HOSTILE)
    restarts = executor.restarts
    results = executor.run([(HOSTILE[n][0], [GRID, GRID]) for n in names])
    return dict(zip(names, results)), executor.restarts - restarts


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_program_is_classified(hostile_results, executor, name):
    _, kind, pattern = HOSTILE[name]
    result = hostile_results[0][name]
    assert result.kind == kind, (name, result.kind, result.error)
    pattern = pattern.replace("{timeout}", re.escape(f"{executor.timeout_s:g}"))
    assert re.fullmatch(pattern, result.error or ""), (name, result.error)
    assert result.outputs == [None, None]
    assert result.errors == [f"{kind.value}: {result.error}"] * 2


def test_pool_works_after_hostile_batch(executor, hostile_results):
    assert not (REPO / "x.txt").exists()
    assert (REPO / "pyproject.toml").read_text().startswith("[build-system]")
    assert hostile_results[1] == 0  # nothing managed to kill a worker
    assert_pool_healthy(executor)


def test_environment_is_scrubbed(executor):
    code = "import os\ndef transform(g):\n    return np.full((1, 1), min(len(os.environ), 9))\nimport numpy as np\n"
    result = run_one(executor, code)
    assert result.ok and result.outputs[0].tolist() == [[0]]
    proc_environ = ("def transform(g):\n    try:\n        data = open('/proc/self/environ', 'rb').read()\n"
                    "    except PermissionError:  # the sandbox refuses /proc (test_sandbox.py)\n"
                    "        data = b''\n    return [[1 if b'SECRET_TOKEN' in data else 0]]\n")
    os.environ["SECRET_TOKEN"] = "x"  # workers were started before, and never copy the full environment
    try:
        assert run_one(executor, proc_environ).outputs[0].tolist() == [[0]]
    finally:
        del os.environ["SECRET_TOKEN"]


def test_partial_results_kept_on_timeout(executor):
    code = "def transform(g):\n    if g[0, 0] == 7:\n        while True:\n            pass\n    return g\n"
    hang = np.array([[7]])
    result = run_one(executor, code, [GRID, hang, GRID])
    assert result.kind == ErrorKind.TIMEOUT
    assert np.array_equal(result.outputs[0], GRID)
    assert result.outputs[1] is None and result.outputs[2] is None
    assert result.errors[0] is None and result.errors[1].startswith("timeout")


def test_per_grid_errors(executor):
    code = "def transform(g):\n    if g.shape[0] == 1:\n        raise ValueError('one row')\n    return g\n"
    result = run_one(executor, code, [GRID, np.array([[1, 2]])])
    assert result.kind == ErrorKind.EXCEPTION and "one row" in result.error
    assert np.array_equal(result.outputs[0], GRID)
    assert result.errors == [None, "exception: ValueError: one row"]


# --------------------------------------------------------------------------- isolation


ROGUE = """from common import *
import common
Color.GREEN = Color.RED
Color.ALL_COLORS.clear()
common.crop = lambda grid, background=0: grid[:1, :1]
np.rot90 = lambda *a, **k: None
import random
random.seed = lambda *a: None

def transform(input_grid):
    return np.full((1, 1), Color.GREEN)
"""

CHECK_PRISTINE = """from common import *

def transform(input_grid):
    ok = (Color.GREEN == 3 and Color.ALL_COLORS == list(range(10))
          and crop(np.array([[0, 0], [0, 4]])).shape == (1, 1)
          and np.rot90(input_grid) is not None)
    return np.full((1, 1), Color.GREEN if ok else 0)
"""


def test_rogue_program_cannot_change_the_next(executor):
    results = executor.run([(ROGUE, [GRID])] + [(CHECK_PRISTINE, [GRID])] * 4)
    assert results[0].outputs[0].tolist() == [[2]]  # the rogue saw its own change...
    for r in results[1:]:
        assert r.outputs[0].tolist() == [[3]]  # ...nobody else did


PARENT_MODULES = """import sys

def transform(input_grid):
    loaded = set(sys.modules)
    parent = {"arc25.execution", "arc25.tasks", "arc25.augment", "arc25.run", "arc25.workers", "arc25.config"}
    return [[len(parent & loaded), int("arc25.exec_child" in loaded)]]
"""


def test_a_program_inherits_the_worker_side_only(executor):
    """The worker imports the executor's own modules, not the parent's: a program finds its child's code in
    memory (arc25.exec_child), and no module of the parent's (the pool, task files, the run)."""
    assert run_one(executor, PARENT_MODULES).outputs[0].tolist() == [[0, 1]]


def test_input_is_a_fresh_int64_copy(executor):
    code = "def transform(g):\n    assert g.dtype == np.int64 and g.ndim == 2\n    g[0, 0] = 9\n    return g\nimport numpy as np\n"
    grid = np.array([[1, 2]], dtype=np.int8)
    result = run_one(executor, code, [grid, grid])
    assert [o.tolist() for o in result.outputs] == [[[9, 2]], [[9, 2]]]
    assert grid.tolist() == [[1, 2]]


def test_seeded_randomness_is_reproducible(executor):
    code = ("from common import *\n\ndef transform(g):\n"
            "    return np.array([[random.randint(0, 9) for _ in range(5)], list(np.random.randint(0, 10, 5))])\n")
    first, second = executor.run([(code, [GRID, GRID])] * 2)
    assert first.ok and second.ok
    assert np.array_equal(first.outputs[0], second.outputs[0])
    assert np.array_equal(first.outputs[0], first.outputs[1])  # reseeded before every call


def test_dsl_is_available_as_common(executor):
    code = ("from common import *\n\ndef transform(input_grid):\n"
            "    objs = find_connected_components(input_grid, background=Color.BLACK, connectivity=4)\n"
            "    return np.array([[len(objs), Color.PURPLE, Color.BROWN, Color.GRAY]])\n")
    grid = np.array([[1, 0, 1], [0, 0, 0], [2, 2, 0]])
    assert run_one(executor, code, [grid]).outputs[0].tolist() == [[3, 8, 9, 5]]


# --------------------------------------------------------------------------- worker death


def test_dead_worker_is_replaced_and_its_program_reported_crashed():
    with Executor(workers=1, timeout_s=5.0) as ex:
        sleeper = "import time\ndef transform(g):\n    time.sleep(3)\n    return g\n"
        assert ex.run([(ROT, [GRID])])[0].ok  # the worker is up
        pid = ex.worker_pids[0]
        import threading

        threading.Timer(0.5, os.kill, (pid, signal.SIGKILL)).start()
        results = ex.run([(sleeper, [GRID]), (ROT, [GRID])])
        assert results[0].kind == ErrorKind.CRASHED and "worker" in results[0].error
        assert results[1].ok and np.array_equal(results[1].outputs[0], np.rot90(GRID))
        assert ex.restarts == 1 and ex.worker_pids[0] != pid


# --------------------------------------------------------------------------- tasks and augmentations


def make_task() -> Task:
    a = np.array([[1, 2, 0], [0, 3, 0]])
    b = np.array([[4], [5]])
    return Task("t", [Example(a, np.rot90(a)), Example(b, np.rot90(b))], [np.array([[6, 7]])], [np.array([[7], [6]])])


@pytest.mark.parametrize("aug", [Augmentation(), Augmentation(True, 1, (0, 2, 3, 4, 5, 6, 7, 8, 9, 1)),
                                 Augmentation(False, 3, (9, 8, 7, 6, 5, 4, 3, 2, 1, 0))])
def test_outputs_are_mapped_back_through_the_inverse_augmentation(executor, aug):
    task = make_task()
    # Colour-only logic commutes with any augmentation; the program sees augmented inputs.
    recolor = "def transform(g):\n    return (g == g[0, 0]).astype(int) * g[0, 0]\n"
    result = execute_on_task(executor, recolor, task, aug)
    for inp, out in zip([ex.input for ex in task.train] + task.test_inputs, result.train_outputs + result.test_outputs):
        shown = aug.apply(inp)
        expected = aug.invert((shown == shown[0, 0]).astype(int) * shown[0, 0])
        assert np.array_equal(out, expected)
    assert result.ok


def test_execute_on_tasks_batch_and_no_code(executor):
    task = make_task()
    identity = Augmentation()
    results = execute_on_tasks(executor, [(ROT, task, identity), (None, task, identity),
                                          (ROT, task, Augmentation(True, 0))])
    assert results[0].ok
    assert all(np.array_equal(o, ex.output) for o, ex in zip(results[0].train_outputs, task.train))
    assert np.array_equal(results[0].test_outputs[0], task.test_outputs[0])
    assert results[1].kind == ErrorKind.NO_CODE and results[1].test_outputs == [None]
    # rot90 does not commute with a flip: mapped back, it is the other rotation
    assert np.array_equal(results[2].train_outputs[0], np.rot90(task.train[0].input, -1))
