"""Scores of predictions (one program run on one task) and of tasks, plus summary tables.

Prediction level (`PredictionMetrics`):
- valid code: code was extracted and defines `transform` (kinds no_code,
  syntax_error and no_transform are the invalid ones);
- valid outputs: a valid grid for every train and test input;
- pixel similarity: mean over train grids of the fraction of equal cells when the
  shapes match, 0 otherwise (no output counts 0);
- correct grids: fraction of train grids exactly right;
- train pass: every train grid right; test pass: every test output right, and
  test correct: which test outputs are right (both None when the solutions are
  unknown).

Task level (`TaskMetrics`): fractions of the above over the task's predictions,
unique outputs (distinct output sets, by fingerprint, among predictions with valid
outputs), train pass@n (some program right on every train example), pass@n and
pass@2 of the two attempts that would be submitted
(`arc25.attempts.select_attempts`, scored by `score_attempts`).

pass@n counts per test input, as Kaggle scores: the fraction of test inputs that
some prediction got right. Each test input is scored on its own, so one program
answering the first and another the second solves the task (pass@n = 1).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from arc25.execution import ErrorKind, TaskExecution
from arc25.grid import fingerprint
from arc25.tasks import Task

INVALID_CODE_KINDS = frozenset({ErrorKind.NO_CODE, ErrorKind.SYNTAX_ERROR, ErrorKind.NO_TRANSFORM})
Attempts = list[list[np.ndarray | None]]  # per test input, up to 2 candidate grids


@dataclass
class PredictionMetrics:
    task_id: str
    valid_code: bool
    valid_outputs: bool
    pixel_similarity: float
    correct_grids: float
    train_pass: bool
    test_pass: bool | None
    kind: str | None = None  # the program-level ErrorKind value, None when it ran cleanly
    outputs_key: str | None = None  # fingerprint of all outputs, set when they are all valid
    test_correct: list[bool] | None = None  # per test input: output right (None: solutions unknown)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def same_grid(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return a is not None and b is not None and a.shape == b.shape and bool(np.array_equal(a, b))


def pixel_similarity(output: np.ndarray | None, target: np.ndarray) -> float:
    """Fraction of equal cells when the shapes match, else 0."""
    if output is None or output.shape != target.shape:
        return 0.0
    return float(np.mean(output == target))


def outputs_key(outputs: Sequence[np.ndarray | None]) -> str | None:
    """One fingerprint for a whole output set; None if any output is missing."""
    if any(o is None for o in outputs):
        return None
    return "-".join(fingerprint(o) for o in outputs)  # type: ignore[arg-type]


def score_prediction(task: Task, execution: TaskExecution) -> PredictionMetrics:
    """Metrics of one program's run (outputs already in the task's original frame)."""
    targets = [ex.output for ex in task.train]
    train = execution.train_outputs
    correct = [same_grid(o, t) for o, t in zip(train, targets)]
    all_outputs = list(train) + list(execution.test_outputs)
    test_correct = None
    if task.test_outputs is not None:
        test_correct = [same_grid(o, t) for o, t in zip(execution.test_outputs, task.test_outputs)]
    return PredictionMetrics(
        task_id=task.task_id,
        valid_code=execution.kind not in INVALID_CODE_KINDS,
        valid_outputs=all(o is not None for o in all_outputs),
        pixel_similarity=float(np.mean([pixel_similarity(o, t) for o, t in zip(train, targets)])),
        correct_grids=sum(correct) / len(correct),
        train_pass=all(correct),
        test_pass=None if test_correct is None else all(test_correct),
        kind=None if execution.kind is None else str(execution.kind),
        outputs_key=outputs_key(all_outputs),
        test_correct=test_correct,
    )


def pass_at_n(task: Task, predictions: Sequence[PredictionMetrics]) -> float | None:
    """Fraction of the task's test inputs that some prediction got right; None without solutions.

    Per test input, as Kaggle scores: two programs that each answer one of two test
    inputs make 1.0. Predictions saved before `test_correct` existed count by their
    `test_pass` (all test inputs or none).
    """
    if task.test_outputs is None:
        return None
    n = len(task.test_outputs)
    solved = [False] * n
    for p in predictions:
        correct = p.test_correct if p.test_correct is not None else [bool(p.test_pass)] * n
        solved = [s or bool(c) for s, c in zip(solved, correct)]
    return sum(solved) / n


def train_pass_at_n(predictions: Sequence[PredictionMetrics]) -> bool:
    """Some program is right on every train example.

    Unlike pass@n this is not split per example: a program is a candidate answer
    only if it explains all the train pairs at once.
    """
    return any(p.train_pass for p in predictions)


def score_attempts(task: Task, attempts: Attempts) -> float | None:
    """Kaggle score of a task: fraction of test inputs where either attempt is right.

    None when the solutions are unknown.
    """
    if task.test_outputs is None:
        return None
    hits = 0
    for i, target in enumerate(task.test_outputs):
        chosen = attempts[i] if i < len(attempts) else []
        hits += any(same_grid(a, target) for a in chosen)
    return hits / len(task.test_outputs)


@dataclass
class TaskMetrics:
    task_id: str
    n_predictions: int
    valid_code: float
    valid_outputs: float
    unique_outputs: int  # distinct output sets among predictions with valid outputs
    unique_fraction: float  # unique_outputs / n_predictions
    pixel_similarity: float
    correct_grids: float
    train_pass: float
    train_pass_at_n: bool
    pass_at_n: float | None  # fraction of test inputs some prediction got right (`pass_at_n`)
    pass_at_2: float | None  # Kaggle score of the two selected attempts

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_task(task: Task, predictions: Sequence[PredictionMetrics], attempts: Attempts) -> TaskMetrics:
    """Task metrics from its predictions and the two attempts chosen for it (`arc25.attempts`)."""
    n = len(predictions)

    def mean(name: str) -> float:
        return float(np.mean([getattr(p, name) for p in predictions])) if n else 0.0

    unique = len({p.outputs_key for p in predictions if p.outputs_key is not None})
    known = task.test_outputs is not None
    return TaskMetrics(
        task_id=task.task_id,
        n_predictions=n,
        valid_code=mean("valid_code"),
        valid_outputs=mean("valid_outputs"),
        unique_outputs=unique,
        unique_fraction=unique / n if n else 0.0,
        pixel_similarity=mean("pixel_similarity"),
        correct_grids=mean("correct_grids"),
        train_pass=mean("train_pass"),
        train_pass_at_n=train_pass_at_n(predictions),
        pass_at_n=pass_at_n(task, predictions),
        pass_at_2=score_attempts(task, attempts) if known else None,
    )


# --------------------------------------------------------------------------- tables


def summary_rows(tasks: Sequence[TaskMetrics], predictions: Sequence[PredictionMetrics]) -> list[dict[str, str]]:
    """Aggregate metrics over tasks as rows {metric, value, detail}."""
    n_pred, n_tasks = len(predictions), len(tasks)
    rows = [_row("tasks", str(n_tasks)), _row("predictions", str(n_pred))]
    for name, label in (("valid_code", "valid code"), ("valid_outputs", "valid outputs"), ("train_pass", "train pass")):
        count = sum(bool(getattr(p, name)) for p in predictions)
        rows.append(_row(label, _pct(count, n_pred), f"{count}/{n_pred} predictions"))
    known = [p for p in predictions if p.test_pass is not None]
    if known:
        count = sum(bool(p.test_pass) for p in known)
        rows.append(_row("test pass", _pct(count, len(known)), f"{count}/{len(known)} predictions"))
    for name, label in (("pixel_similarity", "pixel similarity"), ("correct_grids", "correct grids")):
        value = float(np.mean([getattr(p, name) for p in predictions])) if predictions else 0.0
        rows.append(_row(label, f"{value:.3f}", "mean over predictions"))
    unique = sum(t.unique_outputs for t in tasks)
    rows.append(_row("unique outputs", f"{unique / n_tasks:.1f}" if n_tasks else "0",
                     f"mean per task; {_pct(unique, n_pred)} of predictions"))
    count = sum(t.train_pass_at_n for t in tasks)
    rows.append(_row("train pass@n", _pct(count, n_tasks), f"{count}/{n_tasks} tasks"))
    scored = [t for t in tasks if t.pass_at_n is not None]
    if scored:
        score = sum(t.pass_at_n or 0.0 for t in scored)
        rows.append(_row("pass@n", f"{100 * score / len(scored):.1f}%", f"{score:g}/{len(scored)} tasks"))
        score = sum(t.pass_at_2 or 0.0 for t in scored)
        rows.append(_row("pass@2", f"{100 * score / len(scored):.1f}%", f"{score:g}/{len(scored)} tasks"))
    return rows


def kind_rows(predictions: Sequence[PredictionMetrics]) -> list[dict[str, str]]:
    """How many predictions ended with each error kind ("ok" for none)."""
    counts = Counter(p.kind or "ok" for p in predictions)
    return [{"kind": k, "count": str(c), "share": _pct(c, len(predictions))} for k, c in counts.most_common()]


def task_rows(tasks: Sequence[TaskMetrics]) -> list[dict[str, str]]:
    """One row per task, for a per-task table."""
    rows = []
    for t in tasks:
        rows.append({
            "task": t.task_id,
            "n": str(t.n_predictions),
            "valid": f"{t.valid_outputs:.2f}",
            "unique": str(t.unique_outputs),
            "pixels": f"{t.pixel_similarity:.2f}",
            "train": f"{t.train_pass:.2f}",
            "pass@n": "-" if t.pass_at_n is None else f"{t.pass_at_n:g}",
            "pass@2": "-" if t.pass_at_2 is None else f"{t.pass_at_2:g}",
        })
    return rows


def format_table(rows: Sequence[dict[str, str]], columns: Sequence[str] | None = None) -> str:
    """A plain-text table with a header line; columns default to the first row's keys."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns).rstrip()]
    lines.append("  ".join("-" * widths[c] for c in columns))
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns).rstrip() for r in rows]
    return "\n".join(lines)


def _row(metric: str, value: str, detail: str = "") -> dict[str, str]:
    return {"metric": metric, "value": value, "detail": detail}


def _pct(count: float, total: int) -> str:
    return f"{100 * count / total:.1f}%" if total else "-"
