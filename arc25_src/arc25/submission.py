"""The Kaggle submission: merge per-task results into submission.json, validate it, score it.

Format: `{task_id: [{"attempt_1": grid, "attempt_2": grid}, ...one per test input, in order]}`.
The submission is the one output that must exist whatever else failed, so the merger
trusts nothing in the run folder: every attempt is re-parsed and checked against the
task, and anything missing or broken is replaced by `fallback_attempts` for that test
input. Scoring follows Kaggle: a test output counts 1 if either attempt matches it
exactly, and the score is the mean over all test outputs.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from arc25.attempts import fallback_attempts
from arc25.rundir import SUBMISSION_FILE, read_result, result_path  # noqa: F401  (SUBMISSION_FILE: for the commands)
from arc25.task_result import TaskResult
from arc25.errors import UserError
from arc25.grid import GridError, grid_from_json, grid_to_json
from arc25.io import atomic_write_json, loads_noting_duplicates, read_text
from arc25.tasks import Task

log = logging.getLogger(__name__)

ATTEMPT_KEYS = ("attempt_1", "attempt_2")
MAX_LISTED_IDS = 5  # missing/extra task ids named in one problem line

Grid = list[list[int]]
Submission = dict[str, list[dict[str, Grid]]]


# -- merging -----------------------------------------------------------------------------------
def _valid_grids(pair: Any, where: str) -> list[np.ndarray]:
    """The valid grids of one test input's attempts, in order; invalid ones are logged and dropped."""
    if not isinstance(pair, list):
        log.warning("%s: expected a list of attempts, got %s", where, type(pair).__name__)
        return []
    grids = []
    for j, value in enumerate(pair[:2]):
        try:
            grids.append(grid_from_json(value, f"{where}[{j}]"))
        except GridError as exc:
            log.warning("%s", exc)
    return grids


def result_attempts(result: TaskResult | None, task: Task, where: str) -> list[list[np.ndarray]]:
    """Valid attempt grids per test input from a result; [] for every input when the result doesn't fit."""
    empty: list[list[np.ndarray]] = [[] for _ in task.test_inputs]
    if result is None:
        return empty
    if result.task_id != task.task_id:
        log.warning("%s: result is for task %r; ignored", where, result.task_id)
        return empty
    attempts = result.attempts
    # a different count means the result cannot be matched to the test inputs safely
    if not isinstance(attempts, list) or len(attempts) != len(task.test_inputs):
        n = len(attempts) if isinstance(attempts, list) else type(attempts).__name__
        log.warning("%s: attempts for %s test input(s), task has %d; ignored", where, n, len(task.test_inputs))
        return empty
    return [_valid_grids(pair, f"{where}: attempts[{i}]") for i, pair in enumerate(attempts)]


def complete_pair(grids: list[np.ndarray], test_input: np.ndarray) -> list[np.ndarray]:
    """Exactly two distinct attempts: the given ones first, then fallbacks."""
    chosen: list[np.ndarray] = []
    for g in list(grids) + fallback_attempts(test_input):
        if len(chosen) < 2 and not any(np.array_equal(g, c) for c in chosen):
            chosen.append(g)
    return chosen


def task_entry(pairs: list[list[np.ndarray]]) -> list[dict[str, Grid]]:
    return [{key: grid_to_json(g) for key, g in zip(ATTEMPT_KEYS, pair)} for pair in pairs]


def fallback_entry(task: Task) -> list[dict[str, Grid]]:
    return task_entry([complete_pair([], g) for g in task.test_inputs])


def merge_task(run_dir: str | Path, task: Task) -> tuple[list[dict[str, Grid]], str]:
    """One task's submission entry and where it came from: result | partial | fallback."""
    path = result_path(run_dir, task.task_id)
    found = result_attempts(read_result(run_dir, task.task_id), task, str(path))
    n_full = sum(len(g) >= 2 for g in found)
    source = "result" if n_full == len(found) else "partial" if any(found) else "fallback"
    return task_entry([complete_pair(g, inp) for g, inp in zip(found, task.test_inputs)]), source


def build_submission(run_dir: str | Path, tasks: Mapping[str, Task]) -> tuple[Submission, dict[str, str]]:
    """The submission for `tasks` from the results in `run_dir`, and each task's source."""
    submission: Submission = {}
    sources: dict[str, str] = {}
    for task_id, task in tasks.items():
        try:
            submission[task_id], sources[task_id] = merge_task(run_dir, task)
        except Exception:  # never let one task's data cost the whole submission
            log.exception("%s: merge failed; using the fallback", task_id)
            submission[task_id], sources[task_id] = fallback_entry(task), "fallback"
    # belt and braces: anything still invalid is replaced by the fallback (per task: an id may hold a ":")
    for task_id, task in tasks.items():
        if _entry_problems(task_id, submission[task_id], task):
            log.error("%s: merged entry invalid; using the fallback", task_id)
            submission[task_id], sources[task_id] = fallback_entry(task), "fallback"
    return submission, sources


def write_submission(run_dir: str | Path, tasks: Mapping[str, Task], out_path: str | Path) -> Submission:
    """Merge the run's results into a complete, valid submission and write it atomically to `out_path`.

    Every task of `tasks` gets one entry with two attempts per test input. Bad run data
    (missing, truncated or invalid result.json) costs only that task's attempts.
    """
    submission, sources = build_submission(run_dir, tasks)
    atomic_write_json(out_path, submission)
    counts = Counter(sources.values())
    log.info("wrote %s: %d tasks (%d from results, %d partial, %d fallback)", out_path, len(submission),
             counts["result"], counts["partial"], counts["fallback"])
    return submission


# -- validation -----------------------------------------------------------------------------------
def _ids(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:MAX_LISTED_IDS])
    return shown + (f", ... ({len(ids) - MAX_LISTED_IDS} more)" if len(ids) > MAX_LISTED_IDS else "")


def _entry_problems(task_id: str, entry: Any, task: Task) -> list[str]:
    if not isinstance(entry, list):
        return [f"{task_id}: expected a list of test entries, got {type(entry).__name__}"]
    problems = []
    if len(entry) != len(task.test_inputs):
        problems.append(f"{task_id}: {len(entry)} test entries, task has {len(task.test_inputs)} test input(s)")
    for i, item in enumerate(entry):
        where = f"{task_id}: test[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: expected an object with attempt_1 and attempt_2, got {type(item).__name__}")
            continue
        problems += [f"{where}: missing {key}" for key in ATTEMPT_KEYS if key not in item]
        problems += [f"{where}: unexpected key {key!r}" for key in item if key not in ATTEMPT_KEYS]
        for key in ATTEMPT_KEYS:
            if key in item:
                try:
                    grid_from_json(item[key], f"{where}.{key}")
                except GridError as exc:
                    problems.append(f"{task_id}: {exc}")
    return problems


def validate_submission(submission: Any, tasks: Mapping[str, Task]) -> list[str]:
    """Every problem that would make Kaggle reject or misread the submission; [] when valid.

    Each line starts with the task id where there is one.
    """
    if not isinstance(submission, dict):
        return [f"submission: expected an object mapping task ids to lists, got {type(submission).__name__}"]
    problems = []
    missing = [t for t in tasks if t not in submission]
    extra = [t for t in submission if t not in tasks]
    if missing:
        problems.append(f"missing {len(missing)} task(s): {_ids(missing)}")
    if extra:
        problems.append(f"{len(extra)} task(s) not in the challenges: {_ids(extra)}")
    for task_id, task in tasks.items():
        if task_id in submission:
            problems += _entry_problems(task_id, submission[task_id], task)
    return problems


# -- scoring --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskScore:
    task_id: str
    correct: list[bool]  # per test output: either attempt matches

    @property
    def n_correct(self) -> int:
        return sum(self.correct)

    @property
    def score(self) -> float:
        """The fraction of this task's test outputs that are right."""
        return self.n_correct / len(self.correct) if self.correct else 0.0


@dataclass(frozen=True)
class ScoreReport:
    tasks: list[TaskScore] = field(default_factory=list)

    @property
    def n_outputs(self) -> int:
        return sum(len(t.correct) for t in self.tasks)

    @property
    def n_correct(self) -> int:
        return sum(t.n_correct for t in self.tasks)

    @property
    def score(self) -> float:
        """Kaggle's score: the mean over all test outputs."""
        return self.n_correct / self.n_outputs if self.n_outputs else 0.0

    @property
    def task_mean(self) -> float:
        """The mean of per-task scores (each task weighs the same), for comparison."""
        return sum(t.score for t in self.tasks) / len(self.tasks) if self.tasks else 0.0

    @property
    def n_solved(self) -> int:
        return sum(t.score == 1.0 for t in self.tasks)

    def summary(self) -> str:
        return (f"score {self.score:.4f} ({self.n_correct}/{self.n_outputs} test outputs), "
                f"{self.n_solved}/{len(self.tasks)} tasks fully solved, task mean {self.task_mean:.4f}")

    def table(self, only_correct: bool = False) -> str:
        """One line per task: id, right/total test outputs, score."""
        rows = [t for t in self.tasks if t.n_correct or not only_correct]
        if not rows:
            return "no task has a right answer"
        width = max((len(t.task_id) for t in rows), default=4)
        lines = [f"{'task':<{width}}  correct  score"]
        lines += [f"{t.task_id:<{width}}  {t.n_correct:>3}/{len(t.correct):<3}  {t.score:.2f}" for t in rows]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"score": self.score, "n_correct": self.n_correct, "n_outputs": self.n_outputs,
                "task_mean": self.task_mean, "n_solved": self.n_solved,
                "tasks": {t.task_id: {"correct": t.correct, "score": t.score} for t in self.tasks}}


def _attempt_matches(item: Any, key: str, truth: np.ndarray) -> bool:
    try:
        return bool(np.array_equal(grid_from_json(item[key], key), truth))
    except (GridError, KeyError, TypeError):
        return False  # a malformed attempt is a wrong attempt


def _truths(value: Task | Sequence[np.ndarray]) -> list[np.ndarray]:
    if isinstance(value, Task):
        if value.test_outputs is None:
            raise UserError(f"task {value.task_id}: no solutions to score against")
        return list(value.test_outputs)
    return list(value)


def score_submission(submission: Any, tasks_with_solutions: Mapping[str, Task | Sequence[np.ndarray]]) -> ScoreReport:
    """Kaggle's score of `submission` against the known test outputs.

    `tasks_with_solutions` maps task ids to Tasks with test_outputs, or directly to the
    list of solution grids. Missing or malformed entries score 0; extra task ids are ignored.
    """
    submission = submission if isinstance(submission, dict) else {}
    rows = []
    for task_id, value in tasks_with_solutions.items():
        entry = submission.get(task_id)
        entry = entry if isinstance(entry, list) else []
        correct = []
        for i, truth in enumerate(_truths(value)):
            item = entry[i] if i < len(entry) and isinstance(entry[i], dict) else {}
            correct.append(any(_attempt_matches(item, key, truth) for key in ATTEMPT_KEYS))
        rows.append(TaskScore(task_id, correct))
    return ScoreReport(rows)


# -- loading --------------------------------------------------------------------------------------
def _read_json(path: str | Path, what: str) -> Any:
    path = Path(path)
    try:
        text = read_text(path, follow=True)
    except OSError as exc:
        raise UserError(f"{path}: cannot read {what} ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: {what} is not UTF-8 text") from None
    try:
        return loads_noting_duplicates(text, str(path))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: {what} is not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") from None


def load_submission(path: str | Path) -> Any:
    """The parsed submission file, unvalidated (see `validate_submission`)."""
    return _read_json(path, "submission")


def load_solutions(path: str | Path) -> dict[str, list[np.ndarray]]:
    """A Kaggle solutions file `{task_id: [grid, ...]}`, strictly parsed."""
    data = _read_json(path, "solutions file")
    if not isinstance(data, dict) or not data:
        raise UserError(f"{path}: expected a non-empty object mapping task ids to lists of grids")
    solutions = {}
    for task_id, grids in data.items():
        if not isinstance(grids, list) or not grids:
            raise UserError(f"{path}: task {task_id}: expected a non-empty list of grids")
        try:
            solutions[task_id] = [grid_from_json(g, f"solution[{i}]") for i, g in enumerate(grids)]
        except GridError as exc:
            raise UserError(f"{path}: task {task_id}: {exc}") from None
    return solutions
