"""Choosing two attempts per test input from a task's predictions.

Among the programs with the highest train correctness, identical test outputs are
grouped; groups rank by votes, then by the shortest program (Occam). The second
attempt is the next group of the same level, else the best of the next level down.
With nothing to choose from, a fallback fills the gap so a submission is never
missing an attempt.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from arc25.grid import fingerprint
from arc25.prediction import Prediction
from arc25.tasks import Task


@dataclass(frozen=True)
class Candidate:
    output: np.ndarray
    correct_grids: float
    votes: int
    code_length: int


def fallback_attempts(test_input: np.ndarray) -> list[np.ndarray]:
    """When no program produced an output: the input itself (right for some tasks), then 1x1 grids.

    Three grids, at least two of them distinct, so two distinct attempts always exist.
    """
    return [np.array(test_input, copy=True), np.zeros((1, 1), dtype=np.int64), np.ones((1, 1), dtype=np.int64)]


def candidates(predictions: list[Prediction], test_index: int) -> list[Candidate]:
    """Distinct test outputs, best first: correctness level, votes, shortest code."""
    groups: dict[tuple[float, str], list[Prediction]] = defaultdict(list)
    for p in predictions:
        # per test input: a program that fails on another test input still answers this one
        if test_index >= len(p.test_outputs) or p.test_outputs[test_index] is None:
            continue
        groups[(p.correct_grids, fingerprint(p.test_outputs[test_index]))].append(p)
    ranked = [
        Candidate(ps[0].test_outputs[test_index], level, len(ps), min(len(p.code or "") for p in ps))
        for (level, _), ps in groups.items()
    ]
    ranked.sort(key=lambda c: (-c.correct_grids, -c.votes, c.code_length))
    return ranked


def select_attempts(task: Task, predictions: list[Prediction]) -> list[list[np.ndarray]]:
    """Two distinct attempts for each test input of `task`, fallbacks where needed."""
    attempts = []
    for i, test_input in enumerate(task.test_inputs):
        chosen: list[np.ndarray] = []
        for c in candidates(predictions, i):
            # the same grid can stand at two levels; never spend both attempts on it
            if not any(np.array_equal(c.output, g) for g in chosen):
                chosen.append(c.output)
            if len(chosen) == 2:
                break
        for g in fallback_attempts(test_input):
            if len(chosen) < 2 and not any(np.array_equal(g, c) for c in chosen):
                chosen.append(g)
        attempts.append(chosen[:2])
    return attempts
