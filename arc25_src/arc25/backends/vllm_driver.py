"""The one stepped vLLM driver: both vLLM-based backends (`vllm`, `unsloth`) serve requests through it.

It owns the loop and its rules, and `vllm_compat` owns every call into vLLM:

- one vLLM request per sequence (n = 1) with its own seed, `derive_seed(params.seed, prompt, sample)`:
  vLLM's greedy sampling refuses n > 1, and per-sequence seeds sample alike on a CPU and a GPU;
- requests join and leave the running engine (`submit` / `step` / `abort` / `running`), and the
  blocking `generate` is a loop over them, so a backend has one code path;
- a request whose deadline passes is aborted in the engine at the next step; its sequences come back
  with the text they had (`finish_reason="deadline"`), those cut before their first token not at all;
- vLLM's finish reasons map to the declared set (`FinishReason`) in one table, `VLLM_FINISH`;
- a prompt that leaves no room in the engine's `max_model_len` is refused as a whole (`PromptTooLong`,
  nothing of the request started), and the answer's `max_tokens` is capped at the room there is;
- adapters: `base.admits` / `check_admitted`, the one admission rule (at most `max_loras` distinct
  adapters in flight); each adapter version is handed to vLLM under a name and `lora_int_id` never used
  before (vLLM caches adapters and prefix-cache blocks by both), and the previous version is freed.

What the two backends do differently is only how a version reaches vLLM (`Handover`): the vLLM backend
writes a peft folder that vLLM's loader reads; the unsloth backend hands tensors in memory.
This module imports no vLLM itself: the unsloth backend imports it on a machine without vLLM.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Collection, Protocol

from arc25.backends.base import (Completion, Completions, FinishReason, GenerationRequest, PromptTooLong, Timings,
                                 admits, generate_by_steps)
from arc25.config import derive_seed
from arc25.prompts import Messages

if TYPE_CHECKING:
    from arc25.backends.vllm_compat import Engine, LoraHandle, StepOutput

log = logging.getLogger(__name__)

# vLLM's finish reasons -> ours; any other (vLLM's "abort" or "error": the engine ended the sequence, not
# the model, max_tokens or our deadline) counts as cut off at its length, with a warning
VLLM_FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length"}
UNKNOWN_FINISH: FinishReason = "length"


def finish_reason(vllm_reason: str) -> FinishReason:
    reason = VLLM_FINISH.get(vllm_reason)
    if reason is None:
        log.warning("vLLM ended a sequence with finish reason %r: counted as %r", vllm_reason, UNKNOWN_FINISH)
        return UNKNOWN_FINISH
    return reason


class Handover(Protocol):
    """How a backend gives vLLM its adapters' versions (the backend's adapters, trained elsewhere)."""

    def adapter_version(self, name: str) -> int:
        """The adapter's current version (KeyError: no such adapter)."""
        ...

    def adapter_names(self) -> Collection[str]: ...

    def lora_handle(self, adapter: str, label: str, lora_id: int, zero: bool = False) -> LoraHandle:
        """The adapter's current weights as vLLM takes them, under `label` and `lora_id`; `zero`: an all-zero
        adapter of the same shapes instead (exactly the base model)."""
        ...

    def release_handle(self, handle: LoraHandle) -> None:
        """vLLM no longer serves `handle`: free what it held (a folder)."""
        ...


@dataclass
class _Seq:
    """One sampled sequence of one prompt of a request, as it comes back step by step."""

    prompt: int
    prompt_tokens: int
    pieces: list[str] = field(default_factory=list)
    tokens: int = 0
    finish: FinishReason | None = None

    def completion(self) -> Completion:
        return Completion("".join(self.pieces), self.finish or UNKNOWN_FINISH, self.prompt_tokens, self.tokens)


@dataclass
class _Live:
    """A submitted request and its sequences (by vLLM request id)."""

    request: GenerationRequest
    seqs: dict[str, _Seq]
    open: int = 0  # sequences not yet ended


class VLLMDriver:
    """Requests in and answers out of one vLLM `Engine`, one step at a time (see the module docstring)."""

    def __init__(self, engine: Engine, handover: Handover, prompt_ids: Callable[[Messages], list[int]],
                 stop_ids: list[int], timings: Timings) -> None:
        self.engine, self.handover, self.prompt_ids = engine, handover, prompt_ids
        self.stop_ids, self.timings = list(stop_ids), timings
        self.max_adapters = engine.max_loras
        self._served: dict[str, tuple[int, LoraHandle]] = {}  # adapter -> (version, what vLLM has)
        self._zero: LoraHandle | None = None  # the base model as an adapter, where vLLM needs one
        self._lora_ids = itertools.count(1)
        self._requests = itertools.count()  # prefixes of vLLM request ids
        self._live: dict[int, _Live] = {}  # submitted requests by key
        self._owner: dict[str, int] = {}  # vLLM request id -> key

    # --- adapters: each version handed over once, under a name and id of its own ---------------------

    def lora(self, name: str) -> LoraHandle:
        """vLLM's handle on the adapter's current version, handed over if vLLM has not seen it."""
        version = self.handover.adapter_version(name)  # KeyError for an unknown adapter
        served = self._served.get(name)
        if served is not None and served[0] == version:
            return served[1]
        lora_id = next(self._lora_ids)
        handle = self.handover.lora_handle(name, f"{name}@v{version}#{lora_id}", lora_id)
        self.forget(name)
        self._served[name] = (version, handle)
        log.debug("adapter %s version %d served as vLLM LoRA %d", name, version, lora_id)
        return handle

    def _base_lora(self) -> LoraHandle | None:
        """What base-model rows run under: no adapter, or (vLLM on a CPU, once any adapter exists, so LoRA rows
        may share its batch) an all-zero one."""
        if not self.engine.base_needs_zero_lora:
            return None
        if self._zero is None:
            names = self.handover.adapter_names()
            if not names:
                return None
            lora_id = next(self._lora_ids)
            self._zero = self.handover.lora_handle(next(iter(names)), f"arc25-base#{lora_id}", lora_id, zero=True)
        return self._zero

    def forget(self, name: str) -> None:
        """Free the vLLM slot and the copy of the adapter's served version."""
        served = self._served.pop(name, None)
        if served is not None:
            self.engine.remove_lora(served[1].lora_id)
            self.handover.release_handle(served[1])

    # --- the stepped interface ----------------------------------------------------------------------

    def submit(self, key: int, request: GenerationRequest) -> None:
        """Start `request` under `key` (see `base.StreamingBackend.submit`); nothing of it starts if it is refused."""
        if key in self._live:
            raise ValueError(f"request key {key} is already in flight")
        if not admits(self._adapters_in_flight(), request.adapter, self.max_adapters):
            raise ValueError(f"adapter {request.adapter!r} would be one more than the {self.max_adapters} adapters "
                             f"the engine serves at once")
        with self.timings.measure("generate"):
            prompts = [self.prompt_ids(m) for m in request.prompts]
            room = self._room(prompts)
            lora = self.lora(request.adapter) if request.adapter is not None else self._base_lora()
            live = _Live(request, {})
            self._live[key] = live
            if request.deadline is not None and time.time() >= request.deadline:
                return  # past its deadline: no sequence starts, the answer is empty
            prefix, params = next(self._requests), request.params
            try:
                for p, ids in enumerate(prompts):
                    for k in range(params.n):
                        rid = f"{prefix}-{p}-{k}"
                        self.engine.add(rid, ids, temperature=params.temperature, top_p=params.top_p,
                                        max_tokens=min(params.max_tokens, room[p]),
                                        seed=derive_seed(params.seed, p, k), stop_token_ids=self.stop_ids, lora=lora)
                        live.seqs[rid] = _Seq(p, len(ids))
                        live.open += 1
                        self._owner[rid] = key
            except BaseException:
                self.abort(key)
                raise

    def _room(self, prompts: list[list[int]]) -> list[int]:
        """Tokens left for each prompt's answer in the engine's context; PromptTooLong if one has none."""
        limit = self.engine.max_model_len
        room = [limit - len(ids) for ids in prompts]
        for p, left in enumerate(room):
            if left < 1:
                raise PromptTooLong(f"prompt {p} of the request has {len(prompts[p])} tokens: no room for an answer "
                                    f"in the engine's max_model_len of {limit} (vllm.max_model_len)")
        return room

    def _adapters_in_flight(self) -> set[str]:
        return {live.request.adapter for live in self._live.values() if live.request.adapter is not None}

    def step(self) -> list[tuple[int, list[list[Completion]]]]:
        """One engine step; every request that ended in it (see `base.StreamingBackend.step`)."""
        with self.timings.measure("generate"):
            if self.engine.has_unfinished():
                for out in self.engine.step():
                    key = self._owner.get(out.request_id)
                    if key is not None:  # else aborted by its owner
                        self._take(self._live[key], out)
            now = time.time()
            for live in self._live.values():
                if live.open and live.request.deadline is not None and now >= live.request.deadline:
                    self._cut(live)
            if self.running() and not self.engine.has_unfinished():
                self._lost()
            ended = [key for key, live in self._live.items() if not live.open]
            return [(key, self._end(key)) for key in ended]

    def _take(self, live: _Live, out: StepOutput) -> None:
        """One step's output for a sequence (ignored once the sequence ended, e.g. cut at its deadline)."""
        seq = live.seqs[out.request_id]
        if seq.finish is not None:
            return
        seq.pieces.append(out.text)
        seq.tokens += out.new_tokens
        if out.finish_reason is not None:
            seq.finish = finish_reason(out.finish_reason)
            live.open -= 1

    def _lost(self) -> None:
        """vLLM has no request left, yet sequences of ours never had their last output: ended as cut off."""
        log.warning("vLLM ended %d sequences without a final output: counted as %r", self.running(), UNKNOWN_FINISH)
        for live in self._live.values():
            for seq in live.seqs.values():
                seq.finish = seq.finish or UNKNOWN_FINISH
            live.open = 0

    def _cut(self, live: _Live) -> None:
        """The request's deadline passed: its running sequences end with what they have."""
        running = [rid for rid, seq in live.seqs.items() if seq.finish is None]
        self.engine.abort(running)
        for rid in running:
            live.seqs[rid].finish = "deadline"
        live.open = 0

    def _end(self, key: int) -> list[list[Completion]]:
        """The request's completions per prompt, in sample order; sequences cut before their first token left out."""
        live = self._live.pop(key)
        out: list[list[Completion]] = [[] for _ in live.request.prompts]
        for rid, seq in live.seqs.items():  # insertion order: prompt, sample
            self._owner.pop(rid, None)
            if seq.finish == "deadline" and seq.tokens == 0:
                continue
            out[seq.prompt].append(seq.completion())
        return out

    def abort(self, key: int) -> None:
        live = self._live.get(key)
        if live is not None:
            self.engine.abort([rid for rid, seq in live.seqs.items() if seq.finish is None])
            self._end(key)

    def running(self) -> int:
        return sum(live.open for live in self._live.values())

    @property
    def max_adapters_per_call(self) -> int:
        return self.max_adapters

    def generate(self, requests: list[GenerationRequest]) -> Completions:
        """All requests to their end, as one blocking call: the interface's one loop over `submit` and `step`."""
        return generate_by_steps(self, requests)

    def close(self) -> None:
        """Abort what runs and free every adapter version handed over (the engine itself is the backend's)."""
        for key in list(self._live):
            self.abort(key)
        for name in list(self._served):
            self.forget(name)
        if self._zero is not None:
            self.handover.release_handle(self._zero)
            self._zero = None
