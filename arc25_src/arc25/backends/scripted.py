"""A backend that plays back known completions instead of sampling a model.

Test double for the model, not for anything else: it drives the real loop
(execution, relabeling, training-sample selection, attempts, workers) with
programs whose behaviour is known, in milliseconds. It records every call so tests
can check what the loop asked of the model.
`model.path` may point to a JSON file `{"completions": [...]}` to use it from the CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

from arc25.backends.base import SamplingParams, Timings, TrainSample, TrainStats
from arc25.errors import UserError
from arc25.prompts import Messages


class ScriptedBackend:
    def __init__(self, completions: list[str]) -> None:
        if not completions:
            raise ValueError("a scripted backend needs at least one completion")
        self.completions = list(completions)
        self.timings = Timings()
        self.adapters: dict[str, int] = {}  # name -> train calls since the last reset
        self.generate_calls: list[tuple[int, int, str | None]] = []  # (prompts, n, adapter)
        self.train_calls: list[tuple[str, list[TrainSample]]] = []
        self.resets: list[str] = []
        self._next = 0

    @classmethod
    def from_file(cls, path: str | Path) -> ScriptedBackend:
        try:
            data = json.loads(Path(path).read_text())
            return cls([str(c) for c in data["completions"]])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{path}: not a scripted-completions file ({exc})") from None

    def generate(self, prompts: list[Messages], params: SamplingParams, adapter: str | None = None) -> list[list[str]]:
        if adapter is not None and adapter not in self.adapters:
            raise KeyError(f"no adapter {adapter!r}")
        self.generate_calls.append((len(prompts), params.n, adapter))
        out = []
        for _ in prompts:
            out.append([self.completions[(self._next + k) % len(self.completions)] for k in range(params.n)])
            self._next += params.n
        return out

    def create_adapter(self, name: str) -> None:
        self.adapters[name] = 0

    def reset_adapter(self, name: str) -> None:
        if name not in self.adapters:
            raise KeyError(f"no adapter {name!r}")
        self.adapters[name] = 0
        self.resets.append(name)

    def drop_adapter(self, name: str) -> None:
        self.adapters.pop(name, None)

    def train(self, adapter: str, samples: list[TrainSample]) -> TrainStats:
        if adapter not in self.adapters:
            raise KeyError(f"no adapter {adapter!r}")
        self.adapters[adapter] += 1
        self.train_calls.append((adapter, list(samples)))
        return TrainStats(steps=len(samples), tokens=0, mean_loss=0.0, seconds=0.0)

    def close(self) -> None:
        pass
