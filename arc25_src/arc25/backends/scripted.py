"""A backend that plays back known completions instead of sampling a model.

Test double for the model, not for anything else: it drives the real loop
(execution, relabeling, training-sample selection, attempts, workers) with
programs whose behaviour is known, in milliseconds. It records every call so tests
can check what the loop asked of the model.
`model.path` may point to a JSON file `{"completions": [...]}` to use it from the CLI.

Stepped like every backend: `submit` queues a request, `step` answers every queued one (one
"engine call", recorded in `engine_calls`), and `generate` is `generate_by_steps` over them.

A hung engine, for the watchdog tests: with `"hang_marker": PATH` in that file, the first
step (in any process of the run) that creates PATH blocks for ever, inside the call, as a
stuck driver or a deadlocked engine would; every other step answers.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from arc25.backends.base import (Completion, Completions, GenerationRequest, Timings, TrainSample, TrainStats,
                                 PendingRequests, generate_by_steps, time_left)
from arc25.errors import UserError


class ScriptedBackend:
    max_adapters_per_call = 1 << 30
    trains_concurrently = False

    def __init__(self, completions: list[str], tokens_per_s: float | None = None,
                 hang_marker: str | None = None) -> None:
        """`tokens_per_s`: pretend to decode at this speed (one token per character), so deadlines
        and budgets can be tested without a model; None: answer at once. `hang_marker`: see the module
        docstring."""
        self.hang_marker = hang_marker
        if not completions:
            raise ValueError("a scripted backend needs at least one completion")
        self.completions = list(completions)
        self.tokens_per_s = tokens_per_s
        self.timings = Timings()
        self.adapters: dict[str, int] = {}  # name -> train calls since the last reset
        self.versions: dict[str, int] = {}
        self.weights: dict[str, dict] = {}  # what import_adapter received, for export_adapter
        self.generate_calls: list[tuple[int, int, str | None]] = []  # (prompts, n, adapter) per request
        self.engine_calls: list[list[GenerationRequest]] = []
        self.train_calls: list[tuple[str, list[TrainSample]]] = []
        self.resets: list[str] = []
        self._pending = PendingRequests()  # submitted, answered at the next step
        self._next = 0
        self._version = 0

    @classmethod
    def from_file(cls, path: str | Path) -> ScriptedBackend:
        try:
            data = json.loads(Path(path).read_text())
            return cls([str(c) for c in data["completions"]], data.get("tokens_per_s"), data.get("hang_marker"))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{path}: not a scripted-completions file ({exc})") from None

    def generate(self, requests: list[GenerationRequest]) -> Completions:
        return generate_by_steps(self, requests)

    def submit(self, key: int, request: GenerationRequest) -> None:
        if request.adapter is not None:
            self._check(request.adapter)
        self._pending.add(key, request)

    def abort(self, key: int) -> None:
        self._pending.abort(key)

    def running(self) -> int:
        return self._pending.running()

    def step(self) -> list[tuple[int, list[list[Completion]]]]:
        """Every submitted request, answered in submission order (paced by `tokens_per_s`)."""
        pending = self._pending.take()
        if not pending:
            return []
        self.engine_calls.append(list(pending.values()))
        self._hang_once()
        with self.timings.measure("generate"):
            return [(key, self._answer(request)) for key, request in pending.items()]

    def _hang_once(self) -> None:
        if self.hang_marker is None:
            return
        try:
            os.close(os.open(self.hang_marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return  # another call hung already
        threading.Event().wait()  # blocked in a lock for ever: only a signal ends this process

    def _answer(self, request: GenerationRequest) -> list[list[Completion]]:
        if request.adapter is not None:
            self._check(request.adapter)  # dropped after its submit
        self.generate_calls.append((len(request.prompts), request.params.n, request.adapter))
        out = []
        for _ in request.prompts:
            texts = [self.completions[(self._next + k) % len(self.completions)] for k in range(request.params.n)]
            self._next += request.params.n
            out.append([c for c in (self._play(t, request) for t in texts) if c is not None])
        return out

    def _play(self, text: str, request: GenerationRequest) -> Completion | None:
        """One completion, cut at max_tokens (characters) and at the request's deadline."""
        reason = "stop"
        if len(text) > request.params.max_tokens:
            text, reason = text[: request.params.max_tokens], "length"
        if self.tokens_per_s is not None:
            left = time_left(request.deadline)
            if left <= 0:
                return None
            needed = len(text) / self.tokens_per_s
            if needed > left:
                time.sleep(left)
                text, reason = text[: int(left * self.tokens_per_s)], "deadline"
            else:
                time.sleep(needed)
        return Completion(text, reason, prompt_tokens=0, completion_tokens=len(text))

    def _bump(self, name: str) -> None:
        self._version += 1
        self.versions[name] = self._version

    def adapter_names(self) -> list[str]:
        return list(self.adapters)

    def create_adapter(self, name: str) -> None:
        self.adapters[name] = 0
        self._bump(name)

    def reset_adapter(self, name: str) -> None:
        self._check(name)
        self.adapters[name] = 0
        self.resets.append(name)
        self._bump(name)

    def drop_adapter(self, name: str) -> None:
        self.adapters.pop(name, None)

    def adapter_version(self, name: str) -> int:
        self._check(name)
        return self.versions[name]

    def export_adapter(self, name: str) -> dict:
        self._check(name)
        return dict(self.weights.get(name, {}))

    def import_adapter(self, name: str, tensors: dict) -> None:
        self._check(name)
        self.weights[name] = dict(tensors)
        self._bump(name)

    def train(self, adapter: str, samples: list[TrainSample], deadline: float | None = None) -> TrainStats:
        self._check(adapter)
        with self.timings.measure("train"):
            self.adapters[adapter] += 1
            self.train_calls.append((adapter, list(samples)))
            self._bump(adapter)
        return TrainStats(steps=len(samples), tokens=0, mean_loss=0.0, seconds=0.0, trained=list(range(len(samples))))

    def _check(self, name: str) -> None:
        if name not in self.adapters:
            raise KeyError(f"no adapter {name!r}")

    def close(self) -> None:
        pass
