"""Hindsight relabeling: a program that ran becomes the solution of its own task.

Every program with valid outputs on all inputs defines a new task with the same
inputs and the program's outputs as targets. Its prompt, rendered under the
augmentation the program was sampled under, paired with the program's completion,
is a correct training sample: the model learns what its own programs do.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Iterable, Sequence

from arc25.backends.base import TrainSample
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

    def __init__(self, max_samples: int, max_skips: int = 2) -> None:
        self.max_samples, self.max_skips = max_samples, max_skips
        self.trained: set[str] = set()  # outputs keys
        self.skips: Counter[str] = Counter()

    def select(self, predictions: list[Prediction]) -> list[Prediction]:
        """The best `max_samples` predictions not yet trained, one per distinct output set. Marks nothing."""
        best: dict[str, Prediction] = {}
        for p in sorted((p for p in predictions if p.valid_outputs and p.code), key=rank_key):
            best.setdefault(p.outputs_key(), p)
        fresh = [p for key, p in best.items() if key not in self.trained and self.skips[key] < self.max_skips]
        return sorted(fresh, key=rank_key)[: self.max_samples]

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
