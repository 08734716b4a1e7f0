"""The sandboxed executor: classification of failures, isolation, seeding, coercion, augmentation."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from arc25.augment import Augmentation
from arc25.execution import ErrorKind, ExecutionResult, Executor, coerce_output, execute_on_task, execute_on_tasks
from arc25.tasks import Example, Task

TIMEOUT_S = 1.0
REPO = Path(__file__).resolve().parents[1]
GRID = np.array([[0, 1, 2], [3, 4, 5]])

ROT = "from common import *\n\ndef transform(input_grid):\n    return np.rot90(input_grid)\n"


@pytest.fixture(scope="session")
def executor():
    with Executor(workers=2, timeout_s=TIMEOUT_S, memory_mb=256) as ex:
        yield ex


def run_one(executor: Executor, code: str, grids: list[np.ndarray] | None = None) -> ExecutionResult:
    return executor.run([(code, grids if grids is not None else [GRID])])[0]


def assert_pool_healthy(executor: Executor) -> None:
    results = executor.run([(ROT, [GRID, GRID.T])] * 6)
    for r in results:
        assert r.ok, r.error
        assert np.array_equal(r.outputs[0], np.rot90(GRID))
        assert np.array_equal(r.outputs[1], np.rot90(GRID.T))


# --------------------------------------------------------------------------- hostile programs

HOSTILE = {
    "swallow_loop": ("def transform(g):\n    while True:\n        try:\n            pass\n        except:\n            pass\n",
                     ErrorKind.TIMEOUT, "no result"),
    "base_exception": ("def transform(g):\n    while True:\n        try:\n            g = g + 0\n"
                       "        except BaseException:\n            continue\n", ErrorKind.TIMEOUT, ""),
    "signal_handlers": ("import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
                        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                        "def transform(g):\n    while True:\n        pass\n", ErrorKind.TIMEOUT, ""),
    "module_level_hang": ("while True:\n    pass\n", ErrorKind.TIMEOUT, ""),
    "sleep": ("import time\ndef transform(g):\n    time.sleep(1000)\n", ErrorKind.TIMEOUT, ""),
    "print_flood": ("def transform(g):\n    while True:\n        print('spam' * 1000)\n", ErrorKind.TIMEOUT, ""),
    "sys_exit": ("import sys\ndef transform(g):\n    sys.exit(0)\n", ErrorKind.EXCEPTION, "SystemExit"),
    "module_sys_exit": ("import sys\nsys.exit(1)\n", ErrorKind.EXCEPTION, "SystemExit"),
    "os_exit": ("import os\ndef transform(g):\n    os._exit(0)\n", ErrorKind.CRASHED, "exited with code 0"),
    "self_kill": ("import signal, ctypes\ndef transform(g):\n    signal.raise_signal(signal.SIGKILL)\n",
                  ErrorKind.CRASHED, "SIGKILL"),
    "segfault": ("import faulthandler\ndef transform(g):\n    faulthandler._sigsegv()\n", ErrorKind.CRASHED, "SIGSEGV"),
    "recursion": ("def transform(g):\n    return transform(g)\n", ErrorKind.EXCEPTION, "RecursionError"),
    "fork": ("import os\ndef transform(g):\n    os.fork()\n    return g\n", ErrorKind.EXCEPTION, "os.fork"),
    "fork_bomb": ("import os\ndef transform(g):\n    while True:\n        os.fork()\n", ErrorKind.EXCEPTION, "PermissionError"),
    "subprocess": ("import subprocess\ndef transform(g):\n    subprocess.run(['true'])\n    return g\n",
                   ErrorKind.EXCEPTION, "PermissionError"),
    "huge_alloc": ("import numpy as np\ndef transform(g):\n    return np.zeros((10**6, 10**6))\n",
                   ErrorKind.MEMORY_LIMIT, "MemoryError"),
    # np.empty maps without touching: the cap is reached at once, however slow page faults are
    "memory_leak": ("import numpy as np\ndef transform(g):\n    hog = []\n    while True:\n"
                    "        hog.append(np.empty(10**7))\n", ErrorKind.MEMORY_LIMIT, "MemoryError"),
    "write_repo_file": (f"def transform(g):\n    open({str(REPO / 'pyproject.toml')!r}, 'w').write('x')\n    return g\n",
                        ErrorKind.EXCEPTION, "PermissionError"),
    "write_cwd_file": ("import os\ndef transform(g):\n    fd = os.open('x.txt', os.O_CREAT | os.O_WRONLY)\n    return g\n",
                       ErrorKind.EXCEPTION, "PermissionError"),
    "remove_file": (f"import os\ndef transform(g):\n    os.remove({str(REPO / 'pyproject.toml')!r})\n",
                    ErrorKind.EXCEPTION, "os.remove"),
    "kill_parent": ("import os\ndef transform(g):\n    os.kill(os.getppid(), 9)\n    return g\n",
                    ErrorKind.EXCEPTION, "os.kill"),
    "kill_group": ("import os\ndef transform(g):\n    os.killpg(0, 9)\n    return g\n", ErrorKind.EXCEPTION, "os.killpg"),
    "ctypes_kill": ("import ctypes, os\ndef transform(g):\n    ctypes.CDLL(None).kill(os.getppid(), 9)\n    return g\n",
                    ErrorKind.EXCEPTION, "PermissionError"),
    "syntax": ("def transform(g)\n    return g\n", ErrorKind.SYNTAX_ERROR, "SyntaxError"),
    "null_byte": ("def transform(g):\n    return g\x00\n", ErrorKind.SYNTAX_ERROR, ""),
    "no_transform": ("def solve(g):\n    return g\n", ErrorKind.NO_TRANSFORM, "transform"),
    "transform_not_callable": ("transform = 3\n", ErrorKind.NO_TRANSFORM, ""),
    "exception": ("def transform(g):\n    return g[99, 99]\n", ErrorKind.EXCEPTION, "IndexError"),
    "import_error": ("import not_a_module_xyz\ndef transform(g):\n    return g\n", ErrorKind.EXCEPTION,
                     "ModuleNotFoundError"),
    "hostile_str": ("class E(Exception):\n    def __str__(self):\n        raise RuntimeError('no')\n"
                    "def transform(g):\n    raise E()\n", ErrorKind.EXCEPTION, "E"),
    "wrong_output": ("def transform(g):\n    return 'hello'\n", ErrorKind.INVALID_OUTPUT, "scalar"),
    "empty_code": ("", ErrorKind.NO_CODE, ""),
}


@pytest.fixture(scope="session")
def hostile_results(executor):
    names = list(HOSTILE)
    results = executor.run([(HOSTILE[n][0], [GRID, GRID]) for n in names])
    return dict(zip(names, results))


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_program_is_classified(hostile_results, name):
    _, kind, fragment = HOSTILE[name]
    result = hostile_results[name]
    assert result.kind == kind, (name, result.kind, result.error)
    assert fragment in (result.error or "")
    assert result.outputs == [None, None]
    assert all(e is not None and e.startswith(kind.value) for e in result.errors)


def test_pool_works_after_hostile_batch(executor, hostile_results):
    assert not (REPO / "x.txt").exists()
    assert (REPO / "pyproject.toml").read_text().startswith("[build-system]")
    assert executor.restarts == 0  # nothing managed to kill a worker
    assert_pool_healthy(executor)


def test_environment_is_scrubbed(executor):
    code = "import os\ndef transform(g):\n    return np.full((1, 1), min(len(os.environ), 9))\nimport numpy as np\n"
    result = run_one(executor, code)
    assert result.ok and result.outputs[0].tolist() == [[0]]
    proc_environ = ("def transform(g):\n    data = open('/proc/self/environ', 'rb').read()\n"
                    "    return [[1 if b'SECRET_TOKEN' in data else 0]]\n")
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


# --------------------------------------------------------------------------- output coercion


@pytest.mark.parametrize(
    "value, expected",
    [
        (np.array([[1, 2], [3, 4]]), [[1, 2], [3, 4]]),
        ([[1, 2], [3, 4]], [[1, 2], [3, 4]]),
        (((5,),), [[5]]),
        (np.array([[1.0, 2.0]]), [[1, 2]]),
        (np.array([[True, False]]), [[1, 0]]),
        (np.array([[1, 2]], dtype=np.uint8), [[1, 2]]),
        (np.array([[1, 2]], dtype=object), [[1, 2]]),
        (np.zeros((30, 30), dtype=int), [[0] * 30] * 30),
    ],
)
def test_coerce_valid(value, expected):
    grid, why = coerce_output(value)
    assert why is None and grid.dtype == np.int64 and grid.tolist() == expected


@pytest.mark.parametrize(
    "value, fragment",
    [
        (None, "None"),
        (3, "scalar"),
        (True, "scalar"),
        ("abc", "scalar"),
        ([[1, 2], [3]], "ragged"),
        (np.array([[1.5, 2.0]]), "fractions"),
        (np.array([[np.nan]]), "non-finite"),
        (np.array([1, 2, 3]), "2-D"),
        (np.zeros((2, 2, 2), dtype=int), "3-D"),
        (np.zeros((0, 3), dtype=int), "empty"),
        (np.zeros((31, 2), dtype=int), "side"),
        (np.array([[10]]), "outside 0..9"),
        (np.array([[-1]]), "outside 0..9"),
        (np.array([["a"]]), "not integers"),
        (np.array([[1 + 2j]]), "not integers"),
        (np.array([[1, None]], dtype=object), "not all integers"),
        ([[True, 2], [3, 4]], None),  # numpy makes this an int array: valid
        ({"a": 1}, "ragged or non-numeric"),
        (np.array(5), "2-D"),
    ],
)
def test_coerce_invalid(value, fragment):
    grid, why = coerce_output(value)
    if fragment is None:
        assert grid is not None
        return
    assert grid is None and fragment in why


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
