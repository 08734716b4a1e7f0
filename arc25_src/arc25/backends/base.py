"""The model backend interface (v2): one engine call serves several tasks, each with its own LoRA.

A backend loads the model once, then serves many tasks. Each task owns a named LoRA
adapter that can be created, trained, reset to its initial weights, exported,
imported and dropped; every change gives the adapter a new `version` (engines that
cache adapters by id, like vLLM, must never serve an old version under a new one).

Generation takes a batch of `GenerationRequest`s: each carries its own prompts,
sampling parameters (n, seed) and adapter (None: the base model), and a deadline
(absolute `time.time()`). A backend honours each request's deadline: sequences still
running at it are cut and come back with `finish_reason="deadline"` (their text so
far), and prompts not started come back with no completions. So a caller always gets
what was generated before its deadline, never an exception or a wait past it.

Every backend steps (`StreamingBackend`: submit, step, abort, running) and its blocking `generate`
is `generate_by_steps`, one generation path per backend; what one step runs is the backend's own
batching rule (HF: every request submitted so far as one batch; vLLM: one engine step).

Prompts are chat messages; the backend renders them with its tokenizer's template
(see `arc25.prompts.tokenize_prompt`) so training and inference tokenize alike.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, Literal, Protocol

from arc25.prompts import Messages

if TYPE_CHECKING:
    import torch

FinishReason = Literal["stop", "length", "deadline"]


@dataclass(frozen=True)
class SamplingParams:
    n: int = 8
    temperature: float = 1.0  # <= 0: greedy
    top_p: float = 0.95
    max_tokens: int = 1024
    seed: int = 0


@dataclass(frozen=True)
class GenerationRequest:
    """`params.n` completions for each prompt, under `adapter` (None: the base model)."""

    prompts: list[Messages]
    params: SamplingParams
    adapter: str | None = None
    deadline: float | None = None  # absolute time.time(); None: no deadline


@dataclass(frozen=True)
class Completion:
    """One sampled answer: its text (without the stop token) and why it ended."""

    text: str
    finish_reason: FinishReason  # stop: <|eot_id|>; length: max_tokens; deadline: cut by the deadline
    prompt_tokens: int
    completion_tokens: int

    @property
    def truncated(self) -> bool:
        """Cut off before the model finished: a missing program, not a wrong one."""
        return self.finish_reason != "stop"


# completions[request][prompt] -> up to params.n completions (fewer only when a deadline cut generation)
Completions = list[list[list[Completion]]]


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
    # indices (into the samples passed to train) that took part in at least one optimizer step;
    # the others were skipped (too long, or the deadline came first) and stay available
    trained: list[int] = field(default_factory=list)


def admits(adapters: set[str], adapter: str | None, limit: int) -> bool:
    """The one admission rule for adapters: may a request under `adapter` join an engine call (or a running
    batch) that already carries `adapters`, when the engine serves at most `limit` distinct adapters at once
    (vLLM's `max_loras`)? The base model (None) takes no adapter slot."""
    return adapter is None or adapter in adapters or len(adapters) < limit


def check_admitted(requests: list[GenerationRequest], limit: int) -> None:
    """The engine side of `admits`: a call that carries more distinct adapters than the engine serves is the
    caller's bug, refused before anything starts."""
    adapters: set[str] = set()
    for request in requests:
        if not admits(adapters, request.adapter, limit):
            raise ValueError(f"more than {limit} adapters in one engine call (the engine serves {limit})")
        if request.adapter is not None:
            adapters.add(request.adapter)


class PromptTooLong(ValueError):
    """A request with a prompt that leaves no room in the engine's context (`max_model_len`): refused as a whole
    before any of it starts, with this one-line error; the engine and the other requests go on."""

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
    # how many adapters may take part in one generate call (vLLM's max_loras); the scheduler
    # never puts more distinct adapters than this into one call
    max_adapters_per_call: int

    def generate(self, requests: list[GenerationRequest]) -> Completions:
        """Completions for every request, in order (see the module docstring for deadlines)."""
        ...

    def create_adapter(self, name: str) -> None:
        """A fresh LoRA adapter for one task (same initial weights for the same seed and name)."""
        ...

    def reset_adapter(self, name: str) -> None:
        """Back to the adapter's initial weights and a fresh optimizer, without reloading the model."""
        ...

    def drop_adapter(self, name: str) -> None: ...

    def adapter_names(self) -> list[str]:
        """The adapters that exist now (created and not dropped)."""
        ...

    def adapter_version(self, name: str) -> int:
        """Changes (increases) every time the adapter is trained, reset or imported."""
        ...

    def export_adapter(self, name: str) -> dict[str, torch.Tensor]:
        """The adapter's LoRA weights as CPU tensors, keyed by peft's state-dict names
        (`base_model.model.<module>.lora_A.weight`, without the adapter name)."""
        ...

    def import_adapter(self, name: str, tensors: dict[str, torch.Tensor]) -> None:
        """Load weights exported by `export_adapter` (the adapter must exist; a new version)."""
        ...

    def train(self, adapter: str, samples: list[TrainSample], deadline: float | None = None) -> TrainStats:
        """One pass of optimizer steps over `samples` (loss on answer tokens + final <|eot_id|> only);
        no new step starts after `deadline` (absolute time.time())."""
        ...

    def close(self) -> None: ...


class StreamingBackend(Backend, Protocol):
    """A backend whose engine keeps running across requests (vLLM's continuous batching).

    Requests join the running batch when they are submitted and leave it when their last
    sequence ends, so tasks in different phases (one learning, one searching) share one full
    engine instead of meeting at one call per round (`arc25.scheduler`). Every backend is one: the
    scheduler drives them all this way.
    `generate` still works for callers that want one blocking call, but not while submitted
    requests are in flight.
    """

    # `train` may run on another thread while `step` runs on this one (training on its own CUDA
    # stream beside the engine's decoding); False: the scheduler trains between steps
    trains_concurrently: bool

    def submit(self, key: int, request: GenerationRequest) -> None:
        """Start `request` (its adapter's current version); its answer comes back from `step` under `key`."""
        ...

    def step(self) -> list[tuple[int, list[list[Completion]]]]:
        """Run the engine one step; every request that ended in it, as (key, completions per prompt).
        A request whose deadline passed ends with what it had, as in `generate`."""
        ...

    def abort(self, key: int) -> None:
        """Drop a submitted request (its task is gone); its answer never comes back."""
        ...

    def running(self) -> int:
        """Sequences submitted and not yet ended."""
        ...


class PendingRequests:
    """Requests submitted and not yet answered, for backends whose `step` answers every one of them at once
    (HF batches them; scripted plays them back): the queue half of the stepped interface, in one place."""

    def __init__(self) -> None:
        self._requests: dict[int, GenerationRequest] = {}

    def add(self, key: int, request: GenerationRequest) -> None:
        if key in self._requests:
            raise ValueError(f"request key {key} is already in flight")
        self._requests[key] = request

    def abort(self, key: int) -> None:
        self._requests.pop(key, None)

    def running(self) -> int:
        """Sequences submitted and not yet answered."""
        return sum(len(r.prompts) * r.params.n for r in self._requests.values())

    def take(self) -> dict[int, GenerationRequest]:
        """Every pending request (key -> request, in submission order); the queue is empty after."""
        taken, self._requests = self._requests, {}
        return taken

    def clear(self) -> None:
        self._requests.clear()


def generate_by_steps(backend: StreamingBackend, requests: list[GenerationRequest]) -> Completions:
    """`generate` for a stepped backend: submit every request, step until each has its answer.

    The one blocking generation path: a backend's own batching rule decides what a step runs.
    Not while other submitted requests are in flight (their answers would come back here)."""
    if backend.running():
        raise RuntimeError("generate() while submitted requests are in flight: step() them to the end first")
    check_admitted(requests, backend.max_adapters_per_call)
    answers: dict[int, list[list[Completion]]] = {}
    try:
        for key, request in enumerate(requests):
            backend.submit(key, request)
        while len(answers) < len(requests):
            ended = backend.step()
            answers.update(ended)
            if not ended and not backend.running():
                raise RuntimeError("the backend ended no request and runs none: its answers are lost")
    finally:  # also on an exception: leave no request of this call in the backend
        for key in range(len(requests)):
            if key not in answers:
                backend.abort(key)
    return [answers[key] for key in range(len(requests))]


def time_left(deadline: float | None) -> float:
    """Seconds until `deadline` (inf without one)."""
    return float("inf") if deadline is None else deadline - time.time()


def generate_texts(backend: Backend, prompts: list[Messages], params: SamplingParams,
                   adapter: str | None = None, deadline: float | None = None) -> list[list[str]]:
    """One request's completion texts per prompt: the simple call for scripts and tests."""
    [answer] = backend.generate([GenerationRequest(prompts, params, adapter, deadline)])
    return [[c.text for c in cs] for cs in answer]
