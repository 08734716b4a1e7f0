"""Corpus test: BARC-style programs, written in the model's idioms, solve the real ARC tasks they are for.

Each file in tests/dsl_corpus/ is `<task id>_<what it does>.py`, a program as the BARC
induction model writes them (`from common import *`, `def transform(input_grid)`),
written to solve that task of ../shared/data (ARC-AGI-1 tasks of the 2025 training
set). Their coordinates come from np.argwhere / np.where / .shape and their colours
from grid cells, so the DSL sees numpy scalars as it does from the model. Every
program runs through the session's real sandboxed executor (`execute_on_tasks`;
every one takes well under its timeout: 60 ms at most here) and must
reproduce every train output and every test solution of its task.
`test_corpus_covers_the_idioms` keeps the corpus honest about what it exercises.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from arc25.augment import Augmentation
from arc25.exec_worker import DSL_PATH
from arc25.execution import TaskExecution, execute_on_tasks
from arc25.tasks import Task, load_tasks
from helpers import EVAL_2024, EVAL_2024_SOLUTIONS, EVAL_2025, EVAL_2025_SOLUTIONS, TRAIN_2025, TRAIN_2025_SOLUTIONS

CORPUS = Path(__file__).resolve().parent / "dsl_corpus"
PROGRAMS = sorted(CORPUS.glob("*.py"))
DATASETS = [(TRAIN_2025, TRAIN_2025_SOLUTIONS), (EVAL_2025, EVAL_2025_SOLUTIONS), (EVAL_2024, EVAL_2024_SOLUTIONS)]

# idiom -> a pattern that shows it in a program's source
IDIOMS = {
    "for x, y in np.argwhere(...)": r"for \w+, \w+ in np\.argwhere\(",
    "x, y = np.where(...)": r"\w+, \w+ = np\.where\(",
    "n, m = grid.shape": r"n, m = \w+\.shape",
    "colour read from a grid cell": r"color\s*=\s*\w+\[\w+, \w+\]",
    "draw_line with end_x/end_y": r"draw_line\([^)]*end_x=",
    "draw_line with direction": r"draw_line\([^)]*direction=",
    "draw_line with stop_at_color": r"draw_line\([^)]*stop_at_color=",
    "blit_sprite": r"blit_sprite\(",
    "flood_fill": r"flood_fill\(",
    "translate": r"translate\(",
    "find_connected_components": r"find_connected_components\(",
    "detect_objects": r"detect_objects\(",
    "detect_objects with allowed_dimensions": r"detect_objects\([^)]*allowed_dimensions=",
    "crop": r"crop\(",
    "bounding_box": r"bounding_box\(",
}


def _task_id(program: Path) -> str:
    return program.name.split("_", 1)[0]


@pytest.fixture(scope="module")
def tasks() -> dict[str, Task]:
    wanted = {_task_id(p) for p in PROGRAMS}
    found: dict[str, Task] = {}
    for challenges, solutions in DATASETS:
        for task_id, task in load_tasks(challenges, solutions).items():
            if task_id in wanted:
                found.setdefault(task_id, task)
    return found


@pytest.fixture(scope="module")
def executions(executor, tasks) -> dict[str, TaskExecution]:
    """Every corpus program on its task, in one batch (as the search loop sends an epoch's programs)."""
    jobs = [(p.read_text(), tasks[_task_id(p)], Augmentation()) for p in PROGRAMS if _task_id(p) in tasks]
    names = [p.name for p in PROGRAMS if _task_id(p) in tasks]
    return dict(zip(names, execute_on_tasks(executor, jobs)))


def test_corpus_is_large_enough_and_in_barc_style():
    assert len(PROGRAMS) >= 30
    assert len({_task_id(p) for p in PROGRAMS}) == len(PROGRAMS), "one program per task"
    for program in PROGRAMS:
        source = program.read_text()
        assert source.startswith("from common import *\n"), program.name
        assert "import numpy as np" in source and "def transform(input_grid):" in source, program.name


@pytest.mark.parametrize("idiom", list(IDIOMS))
def test_corpus_covers_the_idioms(idiom):
    users = [p.name for p in PROGRAMS if re.search(IDIOMS[idiom], p.read_text())]
    assert users, f"no corpus program uses {idiom}"


@pytest.mark.parametrize("program", PROGRAMS, ids=[p.stem for p in PROGRAMS])
def test_program_solves_its_task(program, tasks, executions):
    task = tasks.get(_task_id(program))
    assert task is not None, f"{program.name}: task {_task_id(program)} is in none of the data files"
    result = executions[program.name]
    assert result.ok, f"{program.name}: {result.kind} {result.error}"
    for i, (example, output) in enumerate(zip(task.train, result.train_outputs)):
        assert output is not None, f"{program.name} train {i}: {result.train_errors[i]}"
        assert np.array_equal(output, example.output), f"{program.name}: wrong output on train {i}"
    assert task.test_outputs is not None
    for i, (expected, output) in enumerate(zip(task.test_outputs, result.test_outputs)):
        assert output is not None, f"{program.name} test {i}: {result.test_errors[i]}"
        assert np.array_equal(output, expected), f"{program.name}: wrong output on test {i}"


# DSL functions that must be reached with numpy scalars (coordinates, offsets, seeds) by the corpus
NUMPY_CALLS = ["draw_line", "blit_sprite", "flood_fill", "translate"]


def _has_numpy_scalar(value) -> bool:
    if isinstance(value, np.generic) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return True
    return isinstance(value, (list, tuple)) and any(_has_numpy_scalar(v) for v in value)


def test_corpus_passes_numpy_scalars_to_the_dsl(tasks, monkeypatch):
    """In process, with a recording copy of the DSL: the corpus really hands numpy scalars to the DSL."""
    spec = importlib.util.spec_from_file_location("common", DSL_PATH)
    dsl = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dsl)
    seen: set[str] = set()

    def recording(name, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if _has_numpy_scalar(args) or _has_numpy_scalar(tuple(kwargs.values())):
                seen.add(name)
            return fn(*args, **kwargs)
        return wrapper

    for name in NUMPY_CALLS:
        setattr(dsl, name, recording(name, getattr(dsl, name)))
    monkeypatch.setitem(sys.modules, "common", dsl)
    for program in PROGRAMS:
        namespace: dict = {}
        exec(compile(program.read_text(), str(program), "exec"), namespace)
        for example in tasks[_task_id(program)].train:
            namespace["transform"](example.input.copy())
    assert seen == set(NUMPY_CALLS)
