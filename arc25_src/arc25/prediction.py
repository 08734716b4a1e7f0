"""One prediction: a completion, the program in it, and what that program did on the task.

Outputs are stored in the original task's orientation and colours (already mapped back
through the inverse augmentation), train outputs first, then test outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from arc25.grid import fingerprint, grid_to_json
from arc25.prompts import PromptSpec


@dataclass
class Prediction:
    task_id: str
    epoch: int
    index: int  # position within the task's predictions, for stable ordering
    prompt: PromptSpec
    completion: str
    code: str | None
    train_outputs: list[np.ndarray | None] = field(default_factory=list)
    test_outputs: list[np.ndarray | None] = field(default_factory=list)
    error: str | None = None  # program-level error kind from the executor
    error_message: str | None = None
    correct_grids: float = 0.0  # fraction of train grids exactly right
    pixel_similarity: float = 0.0
    test_correct: list[bool] | None = None  # per test input, when solutions are known

    @property
    def valid_code(self) -> bool:
        return self.code is not None and self.error not in ("syntax_error", "no_transform")

    @property
    def valid_outputs(self) -> bool:
        outputs = self.train_outputs + self.test_outputs
        return bool(outputs) and all(o is not None for o in outputs)

    @property
    def train_pass(self) -> bool:
        return self.valid_outputs and self.correct_grids == 1.0

    @property
    def test_pass(self) -> bool | None:
        return None if self.test_correct is None else all(self.test_correct)

    def outputs_key(self) -> str:
        """Fingerprint of all outputs: one training sample per distinct output set."""
        return "|".join("-" if o is None else fingerprint(o) for o in self.train_outputs + self.test_outputs)

    def to_dict(self) -> dict[str, Any]:
        def grids(gs: list[np.ndarray | None]) -> list[Any]:
            return [None if g is None else grid_to_json(g) for g in gs]

        return {
            "task_id": self.task_id, "epoch": self.epoch, "index": self.index, "prompt": self.prompt.to_dict(),
            "completion": self.completion, "code": self.code, "error": self.error, "error_message": self.error_message,
            "train_outputs": grids(self.train_outputs), "test_outputs": grids(self.test_outputs),
            "valid_code": self.valid_code, "valid_outputs": self.valid_outputs,
            "correct_grids": self.correct_grids, "pixel_similarity": self.pixel_similarity,
            "train_pass": self.train_pass, "test_pass": self.test_pass,
        }
