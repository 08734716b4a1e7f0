"""Votes count distinct programs, not samples: for the attempts and for the search's stop rule.

Real programs on a real ARC task (3c9b0459, a half turn) through the session's
sandboxed executor.
"""

from __future__ import annotations

import numpy as np
import pytest

from arc25.attempts import agreeing_programs, candidates, distinct_programs, normalize_code, select_attempts
from arc25.execution import execute_on_task
from arc25.metrics import score_prediction
from arc25.prediction import Prediction
from arc25.prompts import PromptSpec
from arc25.tasks import load_tasks
from helpers import TRAIN_2025, TRAIN_2025_SOLUTIONS

TASK_ID = "3c9b0459"

# Three different programs that agree (the right answer)...
RIGHT = [
    "from common import *\n\ndef transform(input_grid):\n    return np.rot90(input_grid, 2)\n",
    "from common import *\n\ndef transform(input_grid):\n    return np.flipud(np.fliplr(input_grid))\n",
    "from common import *\n\ndef transform(input_grid):\n    return input_grid[::-1, ::-1].copy()\n",
]

# ...and one program, right on every train pair, that changes a cell where only the test
# input has two colours of equal count. After training the model resamples it with other
# comments and layout: eight samples, one program.
ODD_BODY = """def transform(input_grid):{doc}
    out = np.rot90(input_grid, 2).copy(){comment}
    counts = np.unique(input_grid, return_counts=True)[1]
    if len(counts) != len(set(counts)):
        out[0, 0] = (out[0, 0] + 1) % 10
    return out
"""


def odd_sample(i: int) -> str:
    doc = f'\n    """Half turn, variant {i}."""' if i % 2 else ""
    comment = "  " + "# rotate" * (i % 3)
    return f"from common import *\n\n# concepts:\n# rotation (sample {i})\n\n" + ODD_BODY.format(doc=doc, comment=comment)


ODD = [odd_sample(i) for i in range(8)]


@pytest.fixture(scope="module")
def task():
    return load_tasks(TRAIN_2025, TRAIN_2025_SOLUTIONS)[TASK_ID]


def predictions(task, executor, codes: list[str]) -> list[Prediction]:
    out = []
    for i, code in enumerate(codes):
        execution = execute_on_task(executor, code, task)
        out.append(Prediction(task.task_id, 0, i, PromptSpec(), code, code, execution, score_prediction(task, execution)))
    return out


@pytest.fixture(scope="module")
def mixed(task, executor):
    preds = predictions(task, executor, ODD + RIGHT)
    assert all(p.train_pass and p.valid_outputs for p in preds)
    return preds


@pytest.mark.parametrize("a, b", [
    ("def f(x):\n    return x + 1\n", "def f(x):\n    # add one\n    return x+1   # the answer\n"),
    ("def f(x):\n    return x\n", 'def f(x):\n    """Identity."""\n    return x\n'),
    ("def f(x):\n    return x\n", "\n\n# concepts: nothing\ndef f(x) :\n\n    return (x)\n"),
    ('"""Module doc."""\nimport numpy as np\n', "import numpy as np\n"),
    ("class A:\n    pass\n", 'class A:\n    """Only a docstring."""\n'),
    ("def f(x):\n    return 'a'\n", 'def f(x):\n    return "a"\n'),
], ids=["comments-and-spaces", "function-docstring", "blank-lines-and-parentheses", "module-docstring",
        "docstring-only-body", "quote-style"])
def test_normalize_code_ignores_what_does_not_change_the_program(a, b):
    assert normalize_code(a) == normalize_code(b)


@pytest.mark.parametrize("a, b", [
    ("def f(x):\n    return x + 1\n", "def f(x):\n    return x + 2\n"),
    ("def f(x):\n    return x\n", "def f(y):\n    return y\n"),  # renaming is a different text: kept apart
    ("def f(x):\n    return '# not a comment'\n", "def f(x):\n    return ''\n"),
    ("def f(x):\n    s = 'doc'\n    return s\n", "def f(x):\n    return s\n"),  # only a first string is a docstring
], ids=["constant", "renamed", "hash-in-string", "string-statement-not-first"])
def test_normalize_code_keeps_different_programs_apart(a, b):
    assert normalize_code(a) != normalize_code(b)


def test_normalize_code_of_code_that_does_not_parse_compares_stripped_lines():
    assert normalize_code("def f(:\n    x  \n\n") == normalize_code("def f(:\n  x\n") == "def f(:\nx"
    assert normalize_code("def f(:\n    x\n") != normalize_code("def f(:\n    y\n")
    assert normalize_code("") == ""


def test_eight_copies_of_one_program_do_not_outvote_three_that_agree(task, mixed):
    right_answer = task.test_outputs[0]
    odd_answer = mixed[0].test_outputs[0]
    assert not np.array_equal(odd_answer, right_answer)
    assert sum(np.array_equal(p.test_outputs[0], odd_answer) for p in mixed) == 8  # 8 samples against 3
    assert distinct_programs(mixed[:8]) == 1 and distinct_programs(mixed[8:]) == 3

    top = candidates(mixed, 0)
    assert [(c.votes, np.array_equal(c.output, right_answer)) for c in top] == [(3, True), (1, False)]
    first, second = select_attempts(task, mixed)[0]
    assert np.array_equal(first, right_answer) and np.array_equal(second, odd_answer)


def test_agreeing_programs_counts_distinct_programs_per_answer(task, mixed):
    votes = agreeing_programs(mixed)
    assert sorted(votes.values()) == [1, 3]
    # the stop rule of the search, with stop_agreeing_programs = 3 and stop_distinct_outputs = 3
    assert max(votes.values()) >= 3
    only_copies = agreeing_programs(mixed[:8])
    assert list(only_copies.values()) == [1]  # eight samples of one program: one vote, not enough to stop
    assert not (len(only_copies) >= 3 or max(only_copies.values()) >= 3)


def test_agreeing_programs_ignores_programs_without_a_full_answer(task, executor):
    # wrong on train, and right on train but failing on the test input: neither is an answer
    wrong = "from common import *\n\ndef transform(input_grid):\n    return input_grid\n"
    no_test = ("from common import *\n\ndef transform(input_grid):\n"
               "    counts = np.unique(input_grid, return_counts=True)[1]\n"
               "    assert len(counts) == len(set(counts))\n    return np.rot90(input_grid, 2)\n")
    preds = predictions(task, executor, [wrong, no_test])
    assert not preds[0].train_pass and preds[1].train_pass and not preds[1].valid_outputs
    assert agreeing_programs(preds) == {}
    votes = agreeing_programs(preds + predictions(task, executor, RIGHT[:1]))
    assert list(votes.values()) == [1]
