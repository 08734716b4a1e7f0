"""Relabeling: a sample counts as trained only once the backend trained it; the relabel choices.

Real programs on a real ARC task (3c9b0459) through the session's executor; the
last test trains the tiny model through the real HF backend, which skips a sample
too long for `training.max_seq_len` and says so in `TrainStats.trained`. The choice
tests (`training.relabel_choice`) check each option on the same real programs, and that
the default is today's choice exactly (`old_select`, a copy of it before the option).
"""

from __future__ import annotations

import itertools
import random
from collections import Counter

import numpy as np
import pytest

from arc25.augment import Augmentation
from arc25.execution import execute_on_task
from arc25.metrics import score_prediction
from arc25.prediction import Prediction
from arc25.prompts import ANSWER_PREFIX, PromptSpec, render_grid
from arc25.config import ConfigError, RelabelChoice, load_config
from arc25.relabel import Relabeler, choose, is_identity, rank_key, training_sample
from arc25.search_and_learn import TaskSolver
from arc25.tasks import load_tasks
from helpers import TRAIN_2025, TRAIN_2025_SOLUTIONS

TASK_ID = "3c9b0459"
BODIES = {  # each a different output set on the task's inputs
    "flipud": "np.flipud(input_grid)",
    "fliplr": "np.fliplr(input_grid)",
    "identity": "input_grid",
    "transpose": "input_grid.T",
    "corner": "input_grid[:1, :1]",  # a 1x1 output: the shortest relabeled prompt
}


def completion(body: str) -> str:
    return f"{ANSWER_PREFIX}```python\nfrom common import *\n\ndef transform(input_grid):\n    return {body}\n```"


def code_of(body: str) -> str:
    return f"from common import *\n\ndef transform(input_grid):\n    return {body}\n"


@pytest.fixture(scope="module")
def task():
    return load_tasks(TRAIN_2025, TRAIN_2025_SOLUTIONS)[TASK_ID]


@pytest.fixture(scope="module")
def preds(task, executor) -> dict[str, Prediction]:
    out = {}
    for i, (name, body) in enumerate(BODIES.items()):
        spec = PromptSpec(0, Augmentation(), None)
        execution = execute_on_task(executor, code_of(body), task)
        out[name] = Prediction(task.task_id, 0, i, spec, completion(body), code_of(body), execution,
                               score_prediction(task, execution))
    assert all(p.valid_outputs for p in out.values())
    assert len({p.outputs_key() for p in out.values()}) == len(BODIES)
    return out


def ranked(preds: dict[str, Prediction]) -> list[str]:
    """Names in the relabeler's order: most correct train grids, closest pixels, earliest."""
    return [n for n, _ in sorted(preds.items(), key=lambda kv: (-kv[1].correct_grids, -kv[1].pixel_similarity,
                                                                 kv[1].index))]


def names(chosen: list[Prediction], preds: dict[str, Prediction]) -> list[str]:
    by_index = {p.index: n for n, p in preds.items()}
    return [by_index[p.index] for p in chosen]


def test_select_marks_nothing(preds):
    relabeler = Relabeler(max_samples=2)
    first = relabeler.select(list(preds.values()))
    assert names(first, preds) == ranked(preds)[:2]
    assert relabeler.select(list(preds.values())) == first and relabeler.trained == set()


def test_only_what_was_trained_counts_and_a_skipped_sample_stays_available(preds):
    order = ranked(preds)
    relabeler = Relabeler(max_samples=2, max_skips=2)
    everything = list(preds.values())

    chosen = relabeler.select(everything)
    relabeler.record_training(chosen, trained=[0])  # the backend skipped the second (too long, say)
    assert relabeler.trained == {preds[order[0]].outputs_key()}
    assert names(relabeler.select(everything), preds) == [order[1], order[2]]  # the skipped one comes again

    chosen = relabeler.select(everything)
    relabeler.record_training(chosen, trained=[])  # the deadline came before any step
    # skipped twice: a sample that never fits must not hold a place forever; the once-skipped one stays
    assert names(relabeler.select(everything), preds) == [order[2], order[3]]

    chosen = relabeler.select(everything)
    relabeler.record_training(chosen, trained=[0, 1])
    assert names(relabeler.select(everything), preds) == [order[4]]
    relabeler.mark_trained([preds[order[4]]])
    assert relabeler.select(everything) == []


def test_an_output_set_once_trained_is_never_selected_again(task, executor, preds):
    relabeler = Relabeler(max_samples=5)
    relabeler.mark_trained([preds["identity"]])
    # another program with the same outputs as the identity: the same relabeled task
    same = "from common import *\n\ndef transform(input_grid):\n    return input_grid.copy()\n"
    execution = execute_on_task(executor, same, task)
    twin = Prediction(task.task_id, 1, 99, PromptSpec(), completion("input_grid.copy()"), same, execution,
                      score_prediction(task, execution))
    assert twin.outputs_key() == preds["identity"].outputs_key()
    chosen = relabeler.select([*preds.values(), twin])
    assert len(chosen) == 4 and all(p.outputs_key() != twin.outputs_key() for p in chosen)


def test_samples_keeps_the_old_contract(task, preds):
    relabeler = Relabeler(max_samples=2)
    samples = relabeler.samples(task, list(preds.values()))
    assert [s.answer for s in samples] == [preds[n].completion for n in ranked(preds)[:2]]
    assert len(relabeler.trained) == 2  # marked: for callers that train every sample they are given
    assert names(relabeler.select(list(preds.values())), preds) == ranked(preds)[2:4]


def test_training_sample_shows_the_programs_own_outputs(task, preds):
    sample = training_sample(task, preds["fliplr"])
    assert sample.answer == preds["fliplr"].completion
    shown = f"Input:\n{render_grid(task.train[0].input)}\n\nOutput:\n{render_grid(np.fliplr(task.train[0].input))}"
    assert shown in sample.messages[1]["content"]


def test_a_sample_the_real_backend_skips_as_too_long_stays_available(task, preds, hf_backend):
    relabeler = Relabeler(max_samples=2)
    everything = [preds["identity"], preds["corner"]]
    chosen = relabeler.select(everything)
    samples = [training_sample(task, p) for p in chosen]
    lengths = [len(hf_backend.loras.encode(s)[0]) for s in samples]
    long_one = int(np.argmax(lengths))
    assert lengths[long_one] > lengths[1 - long_one]  # the 1x1 outputs make a shorter prompt
    hf_backend.create_adapter("relabel-skip")
    saved = hf_backend.loras.training_config.max_seq_len
    try:
        hf_backend.loras.training_config.max_seq_len = lengths[1 - long_one]  # only the short one fits
        stats = hf_backend.train("relabel-skip", samples)
    finally:
        hf_backend.loras.training_config.max_seq_len = saved
        hf_backend.drop_adapter("relabel-skip")
    assert stats.trained == [1 - long_one]
    relabeler.record_training(chosen, stats.trained)
    assert relabeler.select(everything) == [chosen[long_one]]  # skipped, so still on offer
    assert relabeler.trained == {chosen[1 - long_one].outputs_key()}


# ---------------------------------------------------------------------------------------------
# training.relabel_choice


def old_select(predictions: list[Prediction], max_samples: int, trained: set[str]) -> list[Prediction]:
    """Relabeler.select as it was before relabel_choice (commit df39b23), skips aside."""
    best: dict[str, Prediction] = {}
    for p in sorted((p for p in predictions if p.valid_outputs and p.code), key=rank_key):
        best.setdefault(p.outputs_key(), p)
    fresh = [p for key, p in best.items() if key not in trained]
    return sorted(fresh, key=rank_key)[:max_samples]


@pytest.fixture(scope="module")
def twin(task, executor) -> Prediction:
    """Another program with the identity's outputs, ranked after it (a later index)."""
    execution = execute_on_task(executor, code_of("input_grid.copy()"), task)
    return Prediction(task.task_id, 1, 99, PromptSpec(), completion("input_grid.copy()"), code_of("input_grid.copy()"),
                      execution, score_prediction(task, execution))


def test_the_default_choice_is_todays_choice(preds, twin):
    assert load_config().training.relabel_choice == RelabelChoice.DISTINCT_TOP
    everything = [*preds.values(), twin]
    for k, r in itertools.product((1, 2, 3, 5, 16), range(6)):
        subset = random.Random(r).sample(everything, random.Random(r + 100).randint(1, len(everything)))
        trained = {preds["flipud"].outputs_key()} if r % 2 else set()
        relabeler = Relabeler(k)
        relabeler.trained = set(trained)
        assert relabeler.select(subset) == old_select(subset, k, trained)


def test_best_and_worst_takes_both_ends_of_the_ranking(task, preds):
    order = ranked(preds)  # flipud, transpose (0.56 of the pixels), fliplr (0.50), identity (0.33), corner (0)
    assert order[0] in ("flipud", "transpose") and order[-1] == "corner"
    relabeler = lambda k: Relabeler(k, choice=RelabelChoice.BEST_AND_WORST)  # noqa: E731
    assert names(relabeler(2).select(list(preds.values())), preds) == [order[0], order[4]]
    assert names(relabeler(3).select(list(preds.values())), preds) == [order[0], order[1], order[4]]
    assert names(relabeler(4).select(list(preds.values())), preds) == [order[0], order[1], order[3], order[4]]
    assert names(relabeler(9).select(list(preds.values())), preds) == order


def test_drop_identity_drops_every_program_that_returns_its_inputs(task, preds, twin):
    assert is_identity(task, preds["identity"]) and is_identity(task, twin)
    assert not any(is_identity(task, preds[n]) for n in ("flipud", "fliplr", "transpose", "corner"))
    relabeler = Relabeler(16, choice=RelabelChoice.DROP_IDENTITY, task=task)
    chosen = relabeler.select([*preds.values(), twin])
    assert names(chosen, preds) == [n for n in ranked(preds) if n != "identity"]
    # otherwise the default's order: the identity's place goes to the next one
    assert names(Relabeler(3, choice=RelabelChoice.DROP_IDENTITY, task=task).select(list(preds.values())),
                 preds) == [n for n in ranked(preds) if n != "identity"][:3]
    with pytest.raises(ValueError, match="needs the task"):
        Relabeler(4, choice=RelabelChoice.DROP_IDENTITY)


def test_similarity_weighted_draws_in_proportion_to_train_grid_similarity(preds):
    everything = sorted(preds.values(), key=rank_key)
    rng = random.Random(7)
    draws = Counter(names(choose(RelabelChoice.SIMILARITY_WEIGHTED, everything, 1, rng=rng), preds)[0]
                    for _ in range(4000))
    weights = {n: max(p.pixel_similarity, 0.01) for n, p in preds.items()}
    for n, w in weights.items():  # one draw: P(n) = w / sum(w) exactly (Efraimidis-Spirakis)
        assert abs(draws[n] / 4000 - w / sum(weights.values())) < 0.03, (n, draws)
    assert 0 < draws["corner"] < draws["identity"] < draws["fliplr"]  # no right pixel: rare, still possible
    # k of them: distinct, in rank order, the same for the same seed
    chosen = Relabeler(3, choice=RelabelChoice.SIMILARITY_WEIGHTED, seed=5).select(list(preds.values()))
    assert len(set(map(id, chosen))) == 3 and chosen == sorted(chosen, key=rank_key)
    assert chosen == Relabeler(3, choice=RelabelChoice.SIMILARITY_WEIGHTED, seed=5).select(list(preds.values()))


def test_every_choice_keeps_one_per_output_set_and_skips_the_trained(task, preds, twin):
    for choice in RelabelChoice:
        relabeler = Relabeler(16, choice=choice, task=task)
        relabeler.mark_trained([preds["fliplr"]])
        chosen = relabeler.select([*preds.values(), twin])
        keys = [p.outputs_key() for p in chosen]
        assert len(keys) == len(set(keys)) and preds["fliplr"].outputs_key() not in keys, choice
        assert twin not in chosen, choice  # the identity's own program ranks first of the two


def test_the_solver_takes_the_choice_from_the_config(task):
    config = load_config(None, ["training.relabel_choice=drop_identity", "training.max_samples_per_epoch=3"])
    solver = TaskSolver(task, None, None, config, budget_s=60.0)  # construction touches no backend or executor
    assert solver.relabeler.choice == RelabelChoice.DROP_IDENTITY and solver.relabeler.max_samples == 3
    assert solver.relabeler.task is task
    with pytest.raises(ConfigError, match="expected one of distinct_top, best_and_worst"):
        load_config(None, ["training.relabel_choice=best"])
