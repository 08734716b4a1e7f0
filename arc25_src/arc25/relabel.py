"""Hindsight relabeling: a program that ran becomes the solution of its own task.

Every program with valid outputs on all inputs defines a new task with the same
inputs and the program's outputs as targets. Its prompt, rendered under the
augmentation the program was sampled under, paired with the program's completion,
is a correct training sample: the model learns what its own programs do.
"""

from __future__ import annotations

from arc25.backends.base import TrainSample
from arc25.prediction import Prediction
from arc25.prompts import build_messages
from arc25.tasks import Example, Task


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
    """Chooses each epoch's training samples; never the same output set twice."""

    def __init__(self, max_samples: int) -> None:
        self.max_samples = max_samples
        self.trained: set[str] = set()

    def select(self, predictions: list[Prediction]) -> list[Prediction]:
        """The best `max_samples` new predictions, one per distinct output set."""
        best: dict[str, Prediction] = {}
        for p in sorted((p for p in predictions if p.valid_outputs and p.code), key=rank_key):
            best.setdefault(p.outputs_key(), p)
        fresh = [p for key, p in best.items() if key not in self.trained]
        chosen = sorted(fresh, key=rank_key)[: self.max_samples]
        self.trained.update(p.outputs_key() for p in chosen)
        return chosen

    def samples(self, task: Task, predictions: list[Prediction]) -> list[TrainSample]:
        return [training_sample(task, p) for p in self.select(predictions)]

