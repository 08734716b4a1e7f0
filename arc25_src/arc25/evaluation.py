"""Evaluate saved predictions: read completions, execute them in the sandbox, score them.

A predictions file is JSONL (optionally gzip, `.jsonl.gz`), one object per line:
- `task_id`: a task of the challenges file;
- `completion` (the model's full answer; the code is extracted with
  `arc25.prompts.extract_code`) or `code` (the program itself);
- optionally the frame the program was written in: `prompt` (a
  `PromptSpec.to_dict()`) or `augmentation` (an `Augmentation.to_dict()`);
  neither means the original task.
"""

from __future__ import annotations

import gzip
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator, Sequence

from arc25.attempts import select_attempts
from arc25.augment import Augmentation
from arc25.errors import UserError
from arc25.execution import Executor, TaskExecution, execute_on_tasks
from arc25.grid import grid_to_json
from arc25.metrics import PredictionMetrics, TaskMetrics, score_prediction, score_task
from arc25.prediction import Prediction
from arc25.prompts import PromptSpec, extract_code
from arc25.tasks import Task

log = logging.getLogger(__name__)

BATCH_SIZE = 256  # programs per executor call: big enough to keep every worker busy


@dataclass(frozen=True)
class PredictionRecord:
    task_id: str
    code: str | None  # None: nothing could be extracted from the completion
    augmentation: Augmentation
    line: int  # 1-based line in the predictions file


@dataclass
class Evaluation:
    records: list[PredictionRecord]
    executions: list[TaskExecution]
    predictions: list[PredictionMetrics]
    tasks: list[TaskMetrics] = field(default_factory=list)


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open("r", encoding="utf-8")


def read_predictions(path: str | Path, tasks: dict[str, Task] | None = None) -> list[PredictionRecord]:
    """Parse a predictions file; a bad line raises UserError naming the file, line and problem.

    With `tasks`, a task id that is not among them is an error too. Blank lines are skipped.
    """
    path = Path(path)
    records = []
    try:
        with _open_text(path) as f:
            for number, line in enumerate(f, start=1):
                if line.strip():
                    records.append(_parse_record(line, number, path, tasks))
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read predictions ({exc})") from None
    if not records:
        raise UserError(f"{path}: no predictions in file")
    return records


def _parse_record(line: str, number: int, path: Path, tasks: dict[str, Task] | None) -> PredictionRecord:
    def bad(message: str) -> UserError:
        return UserError(f"{path}: line {number}: {message}")

    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise bad(f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, dict):
        raise bad(f"expected a JSON object, got {type(data).__name__}")
    task_id = data.get("task_id")
    if not isinstance(task_id, str):
        raise bad("missing or non-string 'task_id'")
    if tasks is not None and task_id not in tasks:
        raise bad(f"unknown task id {task_id!r} (not in the challenges file)")
    if isinstance(data.get("code"), str):
        code = data["code"].strip() or None
    elif isinstance(data.get("completion"), str):
        code = extract_code(data["completion"])
    else:
        raise bad("needs a string 'completion' or 'code'")
    return PredictionRecord(task_id, code, _parse_frame(data, bad), number)


def _parse_frame(data: dict[str, Any], bad: Any) -> Augmentation:
    try:
        if data.get("prompt") is not None:
            if not isinstance(data["prompt"], dict):
                raise TypeError("'prompt' must be an object")
            return PromptSpec.from_dict(data["prompt"]).augmentation
        if data.get("augmentation") is not None:
            if not isinstance(data["augmentation"], dict):
                raise TypeError("'augmentation' must be an object")
            return Augmentation.from_dict(data["augmentation"])
    except (KeyError, TypeError, ValueError) as exc:
        raise bad(f"invalid prompt/augmentation ({type(exc).__name__}: {exc})") from None
    return Augmentation()


def evaluate_predictions(
    tasks: dict[str, Task], records: Sequence[PredictionRecord], executor: Executor, progress: bool = True
) -> Evaluation:
    """Execute every record on its task and score predictions and tasks."""
    executions: list[TaskExecution] = []
    for batch in _batches(records, BATCH_SIZE, progress):
        executions += execute_on_tasks(executor, [(r.code, tasks[r.task_id], r.augmentation) for r in batch])
    predictions = [score_prediction(tasks[r.task_id], ex) for r, ex in zip(records, executions)]
    evaluation = Evaluation(list(records), executions, predictions)
    evaluation.tasks = _score_tasks(tasks, evaluation)
    log.info("evaluated %d predictions on %d tasks", len(records), len(evaluation.tasks))
    return evaluation


def _batches(records: Sequence[PredictionRecord], size: int, progress: bool) -> Iterator[Sequence[PredictionRecord]]:
    from tqdm import tqdm

    with tqdm(total=len(records), unit="prog", desc="executing", disable=not progress or len(records) < size) as bar:
        for start in range(0, len(records), size):
            batch = records[start : start + size]
            yield batch
            bar.update(len(batch))


def _score_tasks(tasks: dict[str, Task], evaluation: Evaluation) -> list[TaskMetrics]:
    by_task: dict[str, list[Prediction]] = {}
    for i, (record, ex, metrics) in enumerate(zip(evaluation.records, evaluation.executions, evaluation.predictions)):
        prediction = Prediction(record.task_id, 0, i, PromptSpec(augmentation=record.augmentation), "", record.code,
                                ex, metrics)
        by_task.setdefault(record.task_id, []).append(prediction)
    return [
        score_task(tasks[task_id], [p.metrics for p in preds], select_attempts(tasks[task_id], preds))
        for task_id, preds in by_task.items()
    ]


def result_dict(record: PredictionRecord, execution: TaskExecution, metrics: PredictionMetrics) -> dict[str, Any]:
    """One line of the results file."""
    return {
        "line": record.line,
        **metrics.to_dict(),
        "error": execution.error,
        "duration_s": round(execution.duration_s, 4),
        "train_errors": execution.train_errors,
        "test_errors": execution.test_errors,
        "test_outputs": [None if g is None else grid_to_json(g) for g in execution.test_outputs],
    }


def write_results(path: str | Path, evaluation: Evaluation) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as f:
        for record, execution, metrics in zip(evaluation.records, evaluation.executions, evaluation.predictions):
            f.write(json.dumps(result_dict(record, execution, metrics)) + "\n")
    log.info("wrote %d results to %s", len(evaluation.records), path)
