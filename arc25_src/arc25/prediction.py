"""One prediction: a completion, the program in it, what that program did on the task, its scores.

Outputs are in the original task's frame (already mapped back through the inverse
augmentation the program was sampled under).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from arc25.execution import ErrorKind, TaskExecution
from arc25.grid import grid_from_json, grid_to_json
from arc25.metrics import PredictionMetrics
from arc25.prompts import PromptSpec


@dataclass
class Prediction:
    task_id: str
    epoch: int
    index: int  # position within the task's predictions: stable ordering and tie-breaks
    prompt: PromptSpec
    completion: str
    code: str | None
    execution: TaskExecution
    metrics: PredictionMetrics
    finish_reason: str = "stop"  # stop | length | deadline: a cut-off answer is not a wrong program
    completion_tokens: int = 0

    @property
    def truncated(self) -> bool:
        return self.finish_reason != "stop"

    @property
    def train_outputs(self) -> list[np.ndarray | None]:
        return self.execution.train_outputs

    @property
    def test_outputs(self) -> list[np.ndarray | None]:
        return self.execution.test_outputs

    @property
    def error(self) -> str | None:
        return self.metrics.kind

    @property
    def valid_code(self) -> bool:
        return self.metrics.valid_code

    @property
    def valid_outputs(self) -> bool:
        return self.metrics.valid_outputs

    @property
    def correct_grids(self) -> float:
        return self.metrics.correct_grids

    @property
    def pixel_similarity(self) -> float:
        return self.metrics.pixel_similarity

    @property
    def train_pass(self) -> bool:
        return self.metrics.train_pass

    @property
    def test_pass(self) -> bool | None:
        return self.metrics.test_pass

    def outputs_key(self) -> str | None:
        """Fingerprint of all outputs (None unless all are valid): one training sample per output set."""
        return self.metrics.outputs_key

    def to_dict(self) -> dict[str, Any]:
        def grids(gs: list[np.ndarray | None]) -> list[Any]:
            return [None if g is None else grid_to_json(g) for g in gs]

        return {
            "epoch": self.epoch, "index": self.index, "prompt": self.prompt.to_dict(),
            "completion": self.completion, "code": self.code, "finish_reason": self.finish_reason,
            "completion_tokens": self.completion_tokens,
            **self.metrics.to_dict(), "error_message": self.execution.error,
            "duration_s": round(self.execution.duration_s, 4),
            "train_outputs": grids(self.train_outputs), "test_outputs": grids(self.test_outputs),
        }

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Prediction:
        """Rebuild a prediction from its `to_dict()` row (a resumed task keeps what it found)."""

        def grids(values: list[Any]) -> list[np.ndarray | None]:
            return [None if v is None else grid_from_json(v) for v in values]

        train, test = grids(row["train_outputs"]), grids(row["test_outputs"])
        kind = ErrorKind(row["kind"]) if row.get("kind") else None
        execution = TaskExecution(train, test, [None] * len(train), [None] * len(test), kind,
                                  row.get("error_message"), float(row.get("duration_s", 0.0)))
        fields = PredictionMetrics.__dataclass_fields__
        metrics = PredictionMetrics(**{k: row[k] for k in fields if k in row})
        return cls(metrics.task_id, int(row["epoch"]), int(row["index"]), PromptSpec.from_dict(row["prompt"]),
                   row["completion"], row["code"], execution, metrics, row.get("finish_reason", "stop"),
                   int(row.get("completion_tokens", 0)))
