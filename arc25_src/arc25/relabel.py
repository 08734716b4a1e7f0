"""Hindsight relabeling: a program that ran becomes the solution of its own task.

Every program with valid outputs on all inputs defines a new task with the same
inputs and the program's outputs as targets. Its prompt, rendered under the
augmentation the program was sampled under, paired with the program's completion,
is a correct training sample: the model learns what its own programs do.

Which of an epoch's relabeled programs a learn step trains on is `training.relabel_choice`
(`arc25.config.RelabelChoice`); every choice keeps one program per distinct output set,
never one already trained, at most `training.max_samples_per_epoch`:

- distinct_top (the default): the best by train accuracy (most correct train grids, then
  the closest pixels, then the earliest).
- best_and_worst: half of them the best, the rest the worst by the same order, as SOAR
  trains on both ends of its own programs.
- drop_identity: distinct_top, less the programs whose outputs equal their inputs on every
  train and test input (the identity teaches nothing about the task's relation).
- similarity_weighted: drawn without replacement with probability proportional to the
  train-grid pixel similarity (Efraimidis-Spirakis keys; a floor of SIMILARITY_FLOOR keeps
  a program whose shapes are wrong possible), from a seeded generator.

Issue 19 measures them against each other (`bench/bench_learning.py`, docs/learning.md).
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from typing import Iterable, Sequence

import numpy as np

from arc25.backends.base import TrainSample
from arc25.config import RelabelChoice, TrainingConfig, derive_seed
from arc25.prediction import Prediction
from arc25.prompts import build_messages
from arc25.tasks import Example, Task

log = logging.getLogger(__name__)


def relabeled_task(task: Task, prediction: Prediction) -> Task:
    """`task` with the program's outputs as the targets of every train and test input."""
    train = [Example(ex.input, out) for ex, out in zip(task.train, prediction.train_outputs)]
    return Task(task.task_id, train, task.test_inputs, list(prediction.test_outputs))


def training_sample(task: Task, prediction: Prediction) -> TrainSample:
    relabeled = relabeled_task(task, prediction)
    return TrainSample(build_messages(relabeled, prediction.prompt), prediction.completion)


def rank_key(prediction: Prediction) -> tuple[float, float, int]:
    # best first: most correct train grids, then closest pixels, then earliest
    return (-prediction.correct_grids, -prediction.pixel_similarity, prediction.index)


SIMILARITY_FLOOR = 0.01  # similarity_weighted: the weight of a program with no right pixel


def is_identity(task: Task, prediction: Prediction) -> bool:
    """The program returned every train and test input unchanged."""
    inputs = [ex.input for ex in task.train] + list(task.test_inputs)
    outputs = list(prediction.train_outputs) + list(prediction.test_outputs)
    return len(inputs) == len(outputs) and all(
        o is not None and o.shape == i.shape and bool(np.array_equal(o, i)) for i, o in zip(inputs, outputs))


def choose(choice: RelabelChoice, ranked: list[Prediction], k: int, task: Task | None = None,
           rng: random.Random | None = None) -> list[Prediction]:
    """`k` of `ranked` (one per output set, best first by `rank_key`) under `choice`, in rank order."""
    if choice == RelabelChoice.DISTINCT_TOP:
        return ranked[:k]
    if choice == RelabelChoice.BEST_AND_WORST:
        if len(ranked) <= k:
            return ranked
        best = (k + 1) // 2
        return ranked[:best] + ranked[len(ranked) - (k - best):]
    if choice == RelabelChoice.DROP_IDENTITY:
        if task is None:
            raise ValueError("drop_identity needs the task's inputs")
        return [p for p in ranked if not is_identity(task, p)][:k]
    if choice == RelabelChoice.SIMILARITY_WEIGHTED:
        rng = rng or random.Random(0)
        keys = {id(p): rng.random() ** (1.0 / max(p.pixel_similarity, SIMILARITY_FLOOR)) for p in ranked}
        drawn = {id(p) for p in sorted(ranked, key=lambda p: keys[id(p)], reverse=True)[:k]}
        return [p for p in ranked if id(p) in drawn]
    raise ValueError(f"unknown relabel choice {choice!r}")


class Relabeler:
    """Chooses each epoch's training samples, one per distinct output set, never one already trained.

    Selecting does not mark: a sample counts as trained only once the backend says
    it took part in an optimizer step (`TrainStats.trained`). One the backend
    skipped (too long, or the deadline came first) stays available, up to
    `max_skips` times: a sample too long for training is skipped every time, and
    must not hold one of the epoch's `max_samples` places forever. The solver's
    learn phase:

        chosen = relabeler.select(predictions)
        samples = [training_sample(task, p) for p in chosen]
        stats = backend.train(adapter, samples, deadline)
        relabeler.record_training(chosen, stats.trained)
    """

    def __init__(self, max_samples: int, max_skips: int = 2, choice: RelabelChoice = RelabelChoice.DISTINCT_TOP,
                 task: Task | None = None, seed: int = 0) -> None:
        self.max_samples, self.max_skips = max_samples, max_skips
        self.choice, self.task = RelabelChoice(choice), task
        if self.choice == RelabelChoice.DROP_IDENTITY and task is None:
            raise ValueError("relabel choice drop_identity needs the task (its inputs)")
        self.rng = random.Random(seed)  # similarity_weighted's draws, one per select
        self.trained: set[str] = set()  # outputs keys
        self.skips: Counter[str] = Counter()

    @classmethod
    def for_task(cls, task: Task, training: TrainingConfig, seed: int) -> Relabeler:
        """The solver's relabeler: `training.max_samples_per_epoch` and `training.relabel_choice`, its
        draws seeded from the run seed and the task id."""
        return cls(training.max_samples_per_epoch, choice=training.relabel_choice, task=task,
                   seed=derive_seed(seed, task.task_id, "relabel"))

    def select(self, predictions: list[Prediction]) -> list[Prediction]:
        """`max_samples` predictions not yet trained, one per distinct output set, by `choice`. Marks nothing."""
        best: dict[str, Prediction] = {}
        for p in sorted((p for p in predictions if p.valid_outputs and p.code), key=rank_key):
            best.setdefault(p.outputs_key(), p)
        fresh = [p for key, p in best.items() if key not in self.trained and self.skips[key] < self.max_skips]
        return choose(self.choice, sorted(fresh, key=rank_key), self.max_samples, self.task, self.rng)

    def samples(self, task: Task, predictions: list[Prediction]) -> list[TrainSample]:
        """`training_sample` of each of `select(predictions)`, all marked trained.

        The old contract, for a caller that trains every sample it is given; with
        `TrainStats.trained` use `select` and `record_training` instead.
        """
        chosen = self.select(predictions)
        self.mark_trained(chosen)
        return [training_sample(task, p) for p in chosen]

    def mark_trained(self, predictions: Iterable[Prediction]) -> None:
        """These predictions' samples were trained on: never select their output sets again."""
        self.trained.update(p.outputs_key() for p in predictions)

    def record_training(self, chosen: Sequence[Prediction], trained: Iterable[int]) -> None:
        """After training on the samples of `chosen`: `trained` (`TrainStats.trained`) are indices into it.

        Those count as trained; each other one counts a skip and stays available
        while it has been skipped fewer than `max_skips` times.
        """
        done = set(trained)
        self.mark_trained(p for i, p in enumerate(chosen) if i in done)
        for i, p in enumerate(chosen):
            if i not in done:
                self.skips[p.outputs_key()] += 1
                if self.skips[p.outputs_key()] >= self.max_skips:
                    log.info("%s: relabeled sample %d skipped %d times; not offered again", p.task_id, p.index,
                             self.max_skips)
