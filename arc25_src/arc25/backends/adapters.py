"""Named LoRA adapters and their versions: the bookkeeping every backend that trains shares.

A backend keeps one record per task's adapter (where its weights live differs: peft adapters in
the model for `hf` and `vllm`, pinned CPU buffers swapped through one slot for `unsloth`). The
table owns the rules that do not differ: which names are allowed, that a name exists once, the
error for an unknown one, and the version counter (one number per change, unique across adapters,
so an engine that caches adapters by id never serves an old version under a new one).
"""

from __future__ import annotations

import itertools
import zlib
from contextlib import contextmanager
from typing import Generic, Iterator, TypeVar

from arc25.backends.trainer import TrainState

S = TypeVar("S", bound=TrainState)


def adapter_seed(seed: int, name: str) -> int:
    """A stable per-adapter seed (Python's hash() is salted per process)."""
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % (2**63)


def check_name(name: str) -> None:
    if not name or "." in name or name in "lora_":
        # a torch module key, and peft mistakes names inside its "lora_" prefix when loading
        raise ValueError(f"adapter name {name!r}: must be non-empty, without dots, not part of 'lora_'")


class AdapterTable(Generic[S]):
    """Adapter records by name; `table[name]` raises KeyError("no adapter ...") for an unknown one."""

    def __init__(self) -> None:
        self._states: dict[str, S] = {}
        self._versions = itertools.count(1)

    def check_new(self, name: str) -> None:
        """Refuse a name that exists or that peft cannot hold (before anything is built for it)."""
        if name in self._states:
            raise ValueError(f"adapter {name!r} already exists")
        check_name(name)

    def add(self, name: str, state: S) -> S:
        self.check_new(name)
        self.changed(state)
        self._states[name] = state
        return state

    def changed(self, state: S) -> None:
        """A new version: the adapter's weights changed (created, trained, reset or imported)."""
        state.version = next(self._versions)

    def forget_training(self, state: S) -> None:
        """Weights replaced (reset, import): the optimizer's moments would mislead the next steps."""
        state.optimizer, state.steps = None, 0
        self.changed(state)

    @contextmanager
    def training(self, state: S) -> Iterator[S]:
        """Around a train call: a new version if any optimizer step ran (also when the call fails)."""
        before = state.steps
        try:
            yield state
        finally:
            if state.steps != before:
                self.changed(state)

    def pop(self, name: str) -> S | None:
        return self._states.pop(name, None)

    def clear(self) -> None:
        self._states.clear()

    def __getitem__(self, name: str) -> S:
        try:
            return self._states[name]
        except KeyError:
            raise KeyError(f"no adapter {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._states

    def __iter__(self) -> Iterator[str]:
        return iter(self._states)

    def __len__(self) -> int:
        return len(self._states)
