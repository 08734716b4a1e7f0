"""Prediction and task metrics against hand-computed values; pass@n per test input on a real task."""

from __future__ import annotations

import numpy as np
import pytest

from arc25.execution import ErrorKind, TaskExecution, execute_on_task
from arc25.attempts import select_attempts
from arc25.metrics import (
    PredictionMetrics,
    format_table,
    kind_rows,
    pass_at_n,
    pixel_similarity,
    score_attempts,
    score_prediction,
    score_task,
    summary_rows,
    task_rows,
    train_pass_at_n,
)
from arc25.prediction import Prediction
from arc25.prompts import PromptSpec
from arc25.tasks import Example, Task, load_tasks
from helpers import TRAIN_2025, TRAIN_2025_SOLUTIONS

A_IN, A_OUT = np.array([[1, 0], [0, 1]]), np.array([[2, 0], [0, 2]])
B_IN, B_OUT = np.array([[3, 3, 3]]), np.array([[4, 4, 4]])
TEST_IN, TEST_OUT = np.array([[5]]), np.array([[6]])
TEST2_IN, TEST2_OUT = np.array([[5, 5]]), np.array([[7, 7]])


def task(with_solutions: bool = True, two_tests: bool = False) -> Task:
    tests = [TEST_IN, TEST2_IN] if two_tests else [TEST_IN]
    outputs = [TEST_OUT, TEST2_OUT] if two_tests else [TEST_OUT]
    return Task("t1", [Example(A_IN, A_OUT), Example(B_IN, B_OUT)], tests, outputs if with_solutions else None)


def execution(train, test, kind=None) -> TaskExecution:
    errors = lambda outs: [None if o is not None else "x: y" for o in outs]  # noqa: E731
    return TaskExecution(list(train), list(test), errors(train), errors(test), kind, None if kind is None else "e")


PERFECT = execution([A_OUT, B_OUT], [TEST_OUT])
# 3 of 4 cells right on A, wrong shape on B, wrong test output
PARTIAL = execution([np.array([[2, 0], [0, 9]]), np.array([[4, 4]])], [np.array([[1]])])
# train right but test wrong: passes train, fails test
OVERFIT = execution([A_OUT, B_OUT], [np.array([[8]])])
CRASH = execution([None, None], [None], ErrorKind.TIMEOUT)
SYNTAX = execution([None, None], [None], ErrorKind.SYNTAX_ERROR)


def choose(t: Task, executions) -> list:
    """The attempts the pipeline would submit for these executions."""
    preds = [Prediction(t.task_id, 0, i, PromptSpec(), "", "code", e, score_prediction(t, e))
             for i, e in enumerate(executions)]
    return select_attempts(t, preds)


def test_pixel_similarity():
    assert pixel_similarity(np.array([[2, 0], [0, 9]]), A_OUT) == 0.75
    assert pixel_similarity(np.array([[4, 4]]), B_OUT) == 0.0
    assert pixel_similarity(None, B_OUT) == 0.0


def test_perfect_prediction():
    m = score_prediction(task(), PERFECT)
    assert (m.valid_code, m.valid_outputs, m.train_pass, m.test_pass) == (True, True, True, True)
    assert m.pixel_similarity == 1.0 and m.correct_grids == 1.0 and m.kind is None
    assert m.outputs_key is not None
    assert set(m.to_dict()) >= {"task_id", "valid_code", "valid_outputs", "pixel_similarity", "correct_grids",
                                "train_pass", "test_pass", "kind"}


def test_partial_prediction():
    m = score_prediction(task(), PARTIAL)
    assert m.valid_code and m.valid_outputs
    assert m.pixel_similarity == pytest.approx((0.75 + 0.0) / 2)
    assert m.correct_grids == 0.0 and not m.train_pass and m.test_pass is False


def test_failed_predictions():
    timeout = score_prediction(task(), CRASH)
    assert timeout.valid_code and not timeout.valid_outputs and timeout.kind == "timeout"
    assert timeout.outputs_key is None and timeout.pixel_similarity == 0.0
    syntax = score_prediction(task(), SYNTAX)
    assert not syntax.valid_code and syntax.kind == "syntax_error"


def test_test_pass_unknown_without_solutions():
    assert score_prediction(task(with_solutions=False), PERFECT).test_pass is None


def test_task_metrics():
    executions = [PERFECT, PARTIAL, OVERFIT, CRASH, SYNTAX, PERFECT]
    preds = [score_prediction(task(), e) for e in executions]
    t = score_task(task(), preds, choose(task(), executions))
    assert t.n_predictions == 6
    assert t.valid_code == pytest.approx(5 / 6)
    assert t.valid_outputs == pytest.approx(4 / 6)
    assert t.unique_outputs == 3  # PERFECT (twice), PARTIAL, OVERFIT
    assert t.unique_fraction == pytest.approx(3 / 6)
    assert t.pixel_similarity == pytest.approx((1 + 0.375 + 1 + 0 + 0 + 1) / 6)
    assert t.correct_grids == pytest.approx(3 / 6)
    assert t.train_pass == pytest.approx(3 / 6)
    assert t.train_pass_at_n and t.pass_at_n
    assert t.pass_at_2 == 1.0


def test_pass_at_2_voting():
    # OVERFIT's wrong answer outvotes PERFECT 2:1, but two attempts still include the right one
    executions = [OVERFIT, OVERFIT, PERFECT, PARTIAL]
    attempts = choose(task(), executions)
    assert [a.tolist() for a in attempts[0]] == [[[8]], [[6]]]
    assert score_attempts(task(), attempts) == 1.0
    # a third candidate with more votes pushes the right one out
    other = execution([A_OUT, B_OUT], [np.array([[9]])])
    attempts = choose(task(), [OVERFIT, OVERFIT, other, other, PERFECT])
    assert score_attempts(task(), attempts) == 0.0
    # with no train-perfect program the best partial one stands, then the fallback (the test input)
    assert [a.tolist() for a in choose(task(), [PARTIAL, CRASH])[0]] == [[[1]], [[5]]]


def test_score_attempts_per_test_input():
    t = task(two_tests=True)
    assert score_attempts(t, [[TEST_OUT], [np.array([[1]]), TEST2_OUT]]) == 1.0
    assert score_attempts(t, [[np.array([[1]])], [TEST2_OUT]]) == 0.5
    assert score_attempts(t, [[], []]) == 0.0
    assert score_attempts(task(with_solutions=False), [[TEST_OUT]]) is None


def test_tables():
    executions = [PERFECT, PARTIAL, CRASH]
    preds = [score_prediction(task(), e) for e in executions]
    tasks = [score_task(task(), preds, choose(task(), executions))]
    rows = {r["metric"]: r for r in summary_rows(tasks, preds)}
    assert rows["predictions"]["value"] == "3"
    assert rows["valid outputs"]["value"] == "66.7%" and rows["valid outputs"]["detail"] == "2/3 predictions"
    assert rows["train pass"]["value"] == "33.3%"
    assert rows["pass@n"]["detail"] == "1/1 tasks"
    assert rows["unique outputs"]["value"] == "2.0"
    text = format_table(summary_rows(tasks, preds))
    assert text.splitlines()[0].split() == ["metric", "value", "detail"]
    assert "pass@2" in text
    assert {r["kind"]: r["count"] for r in kind_rows(preds)} == {"ok": "2", "timeout": "1"}
    assert task_rows(tasks)[0]["pass@n"] == "1"
    assert format_table([]) == "(no rows)"


# --------------------------------------------------------------------------- pass@n per test input

FIRST_ONLY = execution([A_OUT, B_OUT], [TEST_OUT, np.array([[1, 1]])])  # right on test input 0 only
SECOND_ONLY = execution([A_OUT, B_OUT], [np.array([[1]]), TEST2_OUT])  # right on test input 1 only
BOTH = execution([A_OUT, B_OUT], [TEST_OUT, TEST2_OUT])


def test_pass_at_n_counts_each_test_input_on_its_own():
    t = task(two_tests=True)
    first, second, both = (score_prediction(t, e) for e in (FIRST_ONLY, SECOND_ONLY, BOTH))
    assert first.test_correct == [True, False] and first.test_pass is False
    assert second.test_correct == [False, True] and second.test_pass is False
    assert both.test_correct == [True, True] and both.test_pass is True
    assert pass_at_n(t, [first, second]) == 1.0  # two programs, one test input each: solved, as Kaggle scores
    assert pass_at_n(t, [first]) == 0.5
    assert pass_at_n(t, [first, first]) == 0.5
    assert pass_at_n(t, [both]) == 1.0
    assert pass_at_n(t, []) == 0.0
    assert pass_at_n(task(with_solutions=False, two_tests=True), [first, second]) is None
    metrics = score_task(t, [first, second], choose(t, [FIRST_ONLY, SECOND_ONLY]))
    assert metrics.pass_at_n == 1.0 and metrics.pass_at_2 == 1.0  # pass@n is not below pass@2 any more


def test_pass_at_n_of_rows_saved_before_test_correct():
    t = task(two_tests=True)
    old = [PredictionMetrics("t1", True, True, 1.0, 1.0, True, ok, None, None) for ok in (False, True)]
    assert [m.test_correct for m in old] == [None, None]
    assert pass_at_n(t, old[:1]) == 0.0 and pass_at_n(t, old) == 1.0  # test_pass: all test inputs or none


def test_train_pass_at_n_needs_one_program_right_on_every_train_example():
    t = task()
    assert train_pass_at_n([score_prediction(t, e) for e in (PARTIAL, OVERFIT)])
    # one program right on A only and another right on B only: no program explains the task
    a_only = execution([A_OUT, np.array([[0]])], [TEST_OUT])
    b_only = execution([np.array([[0]]), B_OUT], [TEST_OUT])
    assert not train_pass_at_n([score_prediction(t, e) for e in (a_only, b_only, CRASH)])
    assert not train_pass_at_n([])


def test_tables_show_fractional_pass_at_n():
    t = task(two_tests=True)
    preds = [score_prediction(t, FIRST_ONLY)]
    tasks = [score_task(t, preds, choose(t, [FIRST_ONLY])), score_task(task(), [score_prediction(task(), PERFECT)],
                                                                     choose(task(), [PERFECT]))]
    rows = {r["metric"]: r for r in summary_rows(tasks, preds)}
    assert rows["pass@n"]["value"] == "75.0%" and rows["pass@n"]["detail"] == "1.5/2 tasks"
    assert [r["pass@n"] for r in task_rows(tasks)] == ["0.5", "1"]


# Real task dae9d2b5 (two test inputs): the cells where either half of the input is coloured become 6.
HALVES = """from common import *

def transform(input_grid):
    width = input_grid.shape[1] // 2
    {guard}
    return np.where((input_grid[:, :width] != 0) | (input_grid[:, width:] != 0), 6, 0)
"""


def test_pass_at_n_with_real_programs_on_a_real_two_test_task(executor):
    t = load_tasks(TRAIN_2025, TRAIN_2025_SOLUTIONS)["dae9d2b5"]
    assert len(t.test_inputs) == 2
    # two programs, each refusing one of the test inputs (a wrong special case, as sampled programs have)
    guards = [f"assert input_grid.tolist() != {t.test_inputs[i].tolist()}" for i in (1, 0)]
    codes = [HALVES.format(guard=g) for g in guards]
    executions = [execute_on_task(executor, code, t) for code in codes]
    metrics = [score_prediction(t, e) for e in executions]
    assert [m.train_pass for m in metrics] == [True, True]
    assert [m.test_correct for m in metrics] == [[True, False], [False, True]]
    assert [m.test_pass for m in metrics] == [False, False]
    preds = [Prediction(t.task_id, 0, i, PromptSpec(), "", code, e, m)
             for i, (code, e, m) in enumerate(zip(codes, executions, metrics))]
    attempts = select_attempts(t, preds)
    summary = score_task(t, metrics, attempts)
    assert summary.pass_at_n == 1.0 and summary.pass_at_2 == 1.0 and summary.train_pass_at_n
    assert pass_at_n(t, metrics[:1]) == 0.5
