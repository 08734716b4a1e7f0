"""The model backend interface: small enough to implement for HF, vLLM and unsloth.

A backend loads the model once, then serves many tasks. Each task owns a named LoRA
adapter that can be created, trained, reset to its initial weights and dropped;
generation runs under an adapter or, with `adapter=None`, the base model.
Prompts are chat messages; the backend renders them with its tokenizer's template
(see `arc25.prompts.tokenize_prompt`) so training and inference tokenize alike.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Protocol

from arc25.prompts import Messages


@dataclass(frozen=True)
class SamplingParams:
    n: int = 8
    temperature: float = 1.0
    top_p: float = 0.95
    max_tokens: int = 1024
    seed: int = 0


@dataclass(frozen=True)
class TrainSample:
    """A prompt and the answer text to learn (the backend appends <|eot_id|>)."""

    messages: Messages
    answer: str


@dataclass
class TrainStats:
    steps: int
    tokens: int
    mean_loss: float
    seconds: float


class Timings:
    """Seconds spent per named phase, accumulated over calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def measure(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def as_dict(self) -> dict[str, float]:
        return dict(self.seconds)


class Backend(Protocol):
    timings: Timings

    def generate(self, prompts: list[Messages], params: SamplingParams, adapter: str | None = None) -> list[list[str]]:
        """`params.n` completions per prompt (answer text only, without the stop token)."""
        ...

    def create_adapter(self, name: str) -> None:
        """A fresh LoRA adapter for one task (same initial weights for the same seed)."""
        ...

    def reset_adapter(self, name: str) -> None:
        """Back to the adapter's initial weights and a fresh optimizer, without reloading the model."""
        ...

    def drop_adapter(self, name: str) -> None: ...

    def train(self, adapter: str, samples: list[TrainSample]) -> TrainStats:
        """One pass of optimizer steps over `samples` (loss on answer tokens + final <|eot_id|> only)."""
        ...

    def close(self) -> None: ...
