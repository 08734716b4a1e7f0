"""Choosing two attempts per test input from a task's predictions.

Among the programs with the highest train correctness, identical test outputs are
grouped; groups rank by votes, then by the shortest program (Occam). The second
attempt is the next group of the same level, else the best of the next level down.
With nothing to choose from, a fallback fills the gap so a submission is never
missing an attempt.

A vote is a distinct program (`normalize_code`), not a sample: after training on
its own programs the model resamples them, and eight copies of one program must
not outvote three different programs that agree. The search's stop rule counts
the same way (`agreeing_programs`).
"""

from __future__ import annotations

import ast
import functools
from collections import Counter, defaultdict
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


@functools.lru_cache(maxsize=4096)
def normalize_code(code: str) -> str:
    """The program without comments, docstrings and layout: two samples that differ only there are one program.

    An `ast` round trip; code that does not parse is compared by its non-blank lines, stripped.
    """
    try:
        tree = ast.parse(code)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and _docstring(node):
                node.body = node.body[1:] or [ast.Pass()]
        return ast.unparse(tree)
    except (SyntaxError, ValueError, RecursionError):  # ValueError: null bytes; RecursionError: deep nesting
        return "\n".join(line.strip() for line in code.splitlines() if line.strip())


def _docstring(node: ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> bool:
    first = node.body[0] if node.body else None
    return isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)


def distinct_programs(predictions: list[Prediction]) -> int:
    """How many different programs (by `normalize_code`) these predictions hold."""
    return len({normalize_code(p.code or "") for p in predictions})


def agreeing_programs(predictions: list[Prediction]) -> Counter[str]:
    """Votes of train-perfect programs: test answer (fingerprints of all test outputs) -> distinct programs.

    Only programs right on every train example and with an output for every test
    input count (right on train but failing a test input gives no answer). The
    search stops when `len(votes) >= stop_distinct_outputs` or
    `max(votes.values()) >= stop_agreeing_programs`.
    """
    programs: dict[str, set[str]] = defaultdict(set)
    for p in predictions:
        if p.train_pass and p.valid_outputs:
            key = "|".join(fingerprint(o) for o in p.test_outputs)  # type: ignore[arg-type]
            programs[key].add(normalize_code(p.code or ""))
    return Counter({key: len(codes) for key, codes in programs.items()})


def candidates(predictions: list[Prediction], test_index: int) -> list[Candidate]:
    """Distinct test outputs, best first: correctness level, votes (distinct programs), shortest program."""
    groups: dict[tuple[float, str], list[Prediction]] = defaultdict(list)
    for p in predictions:
        # per test input: a program that fails on another test input still answers this one
        if test_index >= len(p.test_outputs) or p.test_outputs[test_index] is None:
            continue
        groups[(p.correct_grids, fingerprint(p.test_outputs[test_index]))].append(p)
    ranked = [
        Candidate(ps[0].test_outputs[test_index], level, distinct_programs(ps),
                  min(len(normalize_code(p.code or "")) for p in ps))
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
