"""Task augmentation: the 8 dihedral transforms and colour permutations.

An `Augmentation` is applied to every grid of a task (inputs and outputs alike) and
has an exact inverse for output grids, so a program's outputs on augmented inputs
can be mapped back to the original task before scoring and voting.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from arc25.tasks import Example, Task

IDENTITY_COLORS: tuple[int, ...] = tuple(range(10))


@dataclass(frozen=True)
class Augmentation:
    """Optional transpose-free horizontal flip, then `rotations` quarter-turns, then recolour.

    `colors[c]` is the new colour of colour c.
    """

    flip: bool = False
    rotations: int = 0
    colors: tuple[int, ...] = field(default=IDENTITY_COLORS)

    def __post_init__(self) -> None:
        if not 0 <= self.rotations < 4:
            raise ValueError(f"rotations must be 0..3, got {self.rotations}")
        if sorted(self.colors) != list(range(10)):
            raise ValueError(f"colors must be a permutation of 0..9, got {self.colors}")

    @property
    def is_identity(self) -> bool:
        return not self.flip and self.rotations == 0 and self.colors == IDENTITY_COLORS

    def apply(self, grid: np.ndarray) -> np.ndarray:
        out = np.fliplr(grid) if self.flip else grid
        out = np.rot90(out, self.rotations)
        return np.asarray(self.colors, dtype=grid.dtype)[out]

    def invert(self, grid: np.ndarray) -> np.ndarray:
        inverse = np.argsort(np.asarray(self.colors)).astype(grid.dtype)
        out = np.rot90(inverse[grid], -self.rotations)
        out = np.fliplr(out) if self.flip else out
        return np.ascontiguousarray(out)

    def apply_task(self, task: Task) -> Task:
        """The task with every grid (train pairs, test inputs, known test outputs) augmented."""
        train = [Example(self.apply(ex.input), self.apply(ex.output)) for ex in task.train]
        test_outputs = None if task.test_outputs is None else [self.apply(g) for g in task.test_outputs]
        return Task(task.task_id, train, [self.apply(g) for g in task.test_inputs], test_outputs)

    def to_dict(self) -> dict[str, Any]:
        return {"flip": self.flip, "rotations": self.rotations, "colors": list(self.colors)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Augmentation:
        if not data:
            return cls()
        return cls(bool(data["flip"]), int(data["rotations"]), tuple(int(c) for c in data["colors"]))

    @classmethod
    def random(cls, rng: random.Random, keep_black_p: float = 0.9) -> Augmentation:
        """One of the 8 dihedral transforms and a colour permutation.

        Black is kept fixed with probability `keep_black_p` because black is the
        background in most tasks and the model's priors depend on it.
        """
        flip = rng.random() < 0.5
        rotations = rng.randrange(4)
        if rng.random() < keep_black_p:
            rest = list(range(1, 10))
            rng.shuffle(rest)
            colors = (0, *rest)
        else:
            perm = list(range(10))
            rng.shuffle(perm)
            colors = tuple(perm)
        return cls(flip, rotations, tuple(colors))


def all_dihedral() -> list[Augmentation]:
    """The 8 dihedral transforms with identity colours."""
    return [Augmentation(flip, k) for flip in (False, True) for k in range(4)]


def shuffled_train(task: Task, rng: random.Random) -> Task:
    """The task with its train pairs in a random order (prompt diversity)."""
    train = list(task.train)
    rng.shuffle(train)
    return Task(task.task_id, train, task.test_inputs, task.test_outputs)
