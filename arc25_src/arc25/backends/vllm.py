"""The vLLM backend: vLLM samples, a transformers + peft copy of the model trains the LoRAs.

One engine call serves several tasks, each with its own adapter version: vLLM's `LLM`
with LoRA slots (`vllm.max_loras`, the most adapters one call may carry) and prefix
caching. Adapters are created, trained, reset, exported and imported on a transformers +
peft copy of the model in this process (`arc25.backends.peft_loras`, as the HF backend's),
so training is the project's own loop (`arc25.backends.trainer`). Before a generate call
uses an adapter whose version vLLM has not seen, that version is written in peft's format (adapter_config.json +
adapter_model.safetensors) to a folder in RAM (/dev/shm) and handed to vLLM under a
name and `lora_int_id` never used before: vLLM caches adapters (and prefix-cache blocks)
by name and id, so a reused one would serve the old weights. The previous version's
folder and slot are freed.

Generation drives the engine one step at a time: every sequence is its own vLLM request
(n = 1, its own seed), so a request whose deadline passes is aborted while the others
go on, and its sequences come back with the text they had (`finish_reason="deadline"`).
Prompts are token ids from `arc25.prompts.tokenize_prompt`, exactly as the HF backend
and training see them.

Every call into vLLM is in `vllm_compat` (the one place for version differences).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import tempfile
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

from arc25.backends.base import Completion, Completions, FinishReason, GenerationRequest, TrainSample, TrainStats
from arc25.backends.peft_loras import PeftLoras, resolve_device, resolve_dtype
from arc25.backends.vllm_compat import Engine, LoraHandle
from arc25.config import Config, LoraConfig, ModelConfig, TrainingConfig, VllmConfig, derive_seed

log = logging.getLogger(__name__)

RAM_DIR = Path("/dev/shm")
_DTYPE_NAMES = {torch.bfloat16: "bfloat16", torch.float16: "float16", torch.float32: "float32"}


def lora_root(configured: str) -> Path:
    """A fresh folder for this backend's adapter versions: in RAM where there is one."""
    parent = configured or (str(RAM_DIR) if RAM_DIR.is_dir() and os.access(RAM_DIR, os.W_OK) else None)
    return Path(tempfile.mkdtemp(prefix="arc25-lora-", dir=parent))


def peft_adapter_config(lora: LoraConfig, base_model: str) -> dict:
    """adapter_config.json for weights trained by the HF backend with `lora` (what vLLM reads)."""
    return {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_model,
            "r": lora.rank, "lora_alpha": lora.alpha, "lora_dropout": lora.dropout, "use_rslora": lora.use_rslora,
            "use_dora": False, "bias": "none", "target_modules": list(lora.target_modules),
            "modules_to_save": None, "fan_in_fan_out": False, "inference_mode": True}


def write_peft_adapter(folder: Path, tensors: dict[str, torch.Tensor], config: dict, dtype: torch.dtype) -> None:
    """An adapter folder in peft's format, complete before it has its name (vLLM may read it any time after)."""
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir()
    (tmp / "adapter_config.json").write_text(json.dumps(config, indent=1))
    save_file({k: t.to(dtype).contiguous() for k, t in tensors.items()}, str(tmp / "adapter_model.safetensors"))
    tmp.rename(folder)


@dataclass
class _Seq:
    """One sampled sequence of one prompt of one request, as it comes back step by step."""

    request: int
    prompt: int
    prompt_tokens: int
    deadline: float | None
    pieces: list[str] = field(default_factory=list)
    tokens: int = 0
    finish: FinishReason | None = None

    def completion(self) -> Completion:
        return Completion("".join(self.pieces), self.finish or "length", self.prompt_tokens, self.tokens)


@dataclass
class _Live:
    """A submitted request (streaming) and its sequences."""

    request: GenerationRequest
    seqs: dict[str, _Seq]


class VLLMBackend:
    """Backend protocol on vLLM (sampling) + PeftLoras (adapters and training), on a GPU or a CPU.

    Also a `StreamingBackend`: `submit` / `step` keep one engine running across requests, and
    training (the HF copy, in this process) may run on another thread while vLLM decodes.
    """

    trains_concurrently = True

    def __init__(self, model_config: ModelConfig, lora_config: LoraConfig, training_config: TrainingConfig,
                 vllm_config: VllmConfig, seed: int = 0, max_batch_tokens: int = 16384) -> None:
        self.lora_config, self.vllm_config = lora_config, vllm_config
        start = time.perf_counter()
        device = resolve_device(model_config.device)
        self.dtype = resolve_dtype(model_config.dtype, device)
        # The engine first: on a GPU its processes then fork before this process initialises CUDA.
        self.engine = Engine(model_config.path, dtype=_DTYPE_NAMES[self.dtype], seed=seed,
                             max_model_len=vllm_config.max_model_len, max_loras=vllm_config.max_loras,
                             lora_rank=lora_config.rank, max_num_seqs=vllm_config.max_num_seqs,
                             gpu_memory_utilization=vllm_config.gpu_memory_utilization,
                             kv_cache_gib=vllm_config.kv_cache_gib, enforce_eager=vllm_config.enforce_eager)
        engine_s = time.perf_counter() - start
        self.trainer = PeftLoras(model_config, lora_config, training_config, seed=seed)
        self.timings = self.trainer.timings  # one account: the trainer's create/train/reset and our generate
        self.timings.seconds["load"] += engine_s
        self.model_path = model_config.path
        self.max_adapters_per_call = vllm_config.max_loras
        self.stop_ids = list(self.trainer.stop_ids)
        self.lora_dir = lora_root(vllm_config.lora_dir)
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.lora_dir, True)
        self._served: dict[str, tuple[int, LoraHandle]] = {}  # adapter -> (trainer version, what vLLM has)
        self._zero_lora: LoraHandle | None = None  # the base model as an adapter, where vLLM needs one
        self._lora_ids = itertools.count(1)
        self._calls = itertools.count()
        self._live: dict[int, _Live] = {}  # submitted requests by key (streaming)
        self._owner: dict[str, int] = {}  # vLLM request id -> key

    # --- adapters: the trainer's, each version handed to vLLM when first used ------------------------

    def create_adapter(self, name: str) -> None:
        self.trainer.create_adapter(name)

    def reset_adapter(self, name: str) -> None:
        self.trainer.reset_adapter(name)

    def drop_adapter(self, name: str) -> None:
        self.trainer.drop_adapter(name)
        self._forget(name)

    def adapter_version(self, name: str) -> int:
        return self.trainer.adapter_version(name)

    def export_adapter(self, name: str) -> dict[str, torch.Tensor]:
        return self.trainer.export_adapter(name)

    def import_adapter(self, name: str, tensors: dict[str, torch.Tensor]) -> None:
        self.trainer.import_adapter(name, tensors)

    def train(self, adapter: str, samples: list[TrainSample], deadline: float | None = None) -> TrainStats:
        return self.trainer.train(adapter, samples, deadline=deadline)

    def _lora(self, name: str) -> LoraHandle:
        """vLLM's handle on the adapter's current version, written out if vLLM has not seen it."""
        version = self.trainer.adapter_version(name)  # KeyError for an unknown adapter
        served = self._served.get(name)
        if served is not None and served[0] == version:
            return served[1]
        with self.timings.measure("lora_write"):
            lora_id = next(self._lora_ids)
            folder = self.lora_dir / f"{lora_id:06d}"
            write_peft_adapter(folder, self.trainer.export_adapter(name),
                               peft_adapter_config(self.lora_config, self.model_path), self.dtype)
            self._forget(name)
            handle = LoraHandle(f"{name}@v{version}#{lora_id}", lora_id, str(folder))
            self._served[name] = (version, handle)
        log.debug("adapter %s version %d served as vLLM LoRA %d", name, version, lora_id)
        return handle

    def _base_lora(self, loras: dict[str, LoraHandle]) -> LoraHandle | None:
        """What base-model rows run under: no adapter, or (vLLM on a CPU, beside LoRA rows) an all-zero one."""
        if not loras or not self.engine.base_needs_zero_lora:
            return None
        if self._zero_lora is None:
            with self.timings.measure("lora_write"):
                self._zero_lora = self._write_zero_lora(next(iter(loras)))
        return self._zero_lora

    def _write_zero_lora(self, like: str) -> LoraHandle:
        """An adapter of zeros shaped like `like` (all adapters share their shapes): exactly the base model."""
        shapes = self.trainer.export_adapter(like)
        lora_id = next(self._lora_ids)
        folder = self.lora_dir / f"{lora_id:06d}-zero"
        write_peft_adapter(folder, {k: torch.zeros_like(t) for k, t in shapes.items()},
                           peft_adapter_config(self.lora_config, self.model_path), self.dtype)
        return LoraHandle(f"arc25-base#{lora_id}", lora_id, str(folder))

    def _forget(self, name: str) -> None:
        """Free the vLLM slot and the folder of the adapter's served version."""
        served = self._served.pop(name, None)
        if served is not None:
            self.engine.remove_lora(served[1].lora_id)
            shutil.rmtree(served[1].path, ignore_errors=True)

    # --- generation ----------------------------------------------------------------------------

    def generate(self, requests: list[GenerationRequest]) -> Completions:
        if self._live:
            raise RuntimeError("generate() while submitted requests are in flight: step() them to the end first")
        with self.timings.measure("generate"):
            adapters = {r.adapter for r in requests if r.adapter is not None}
            if len(adapters) > self.max_adapters_per_call:
                raise ValueError(f"{len(adapters)} adapters in one generate call; vllm.max_loras is "
                                 f"{self.max_adapters_per_call}")
            loras: dict[str | None, LoraHandle | None] = {name: self._lora(name) for name in sorted(adapters)}
            loras[None] = self._base_lora(loras)
            seqs: dict[str, _Seq] = {}
            try:
                self._submit(requests, loras, seqs)
                self._run(seqs)
            finally:  # also on an exception: leave no request of ours in the engine
                self.engine.abort([rid for rid, s in seqs.items() if s.finish is None])
            return self._collect(requests, seqs)

    def _submit(self, requests: list[GenerationRequest], loras: dict[str | None, LoraHandle | None],
                seqs: dict[str, _Seq]) -> None:
        """One vLLM request per sequence (its own seed) into `seqs`; requests past their deadline get none."""
        call = next(self._calls)
        now = time.time()
        for r, request in enumerate(requests):
            if request.deadline is not None and now >= request.deadline:
                continue
            params = request.params
            for p, messages in enumerate(request.prompts):
                ids = self.trainer.prompt_ids(messages)
                room = self.vllm_config.max_model_len - len(ids)
                for k in range(params.n):
                    rid = f"{call}-{r}-{p}-{k}"
                    seqs[rid] = _Seq(r, p, len(ids), request.deadline)
                    if room < 1:  # vLLM refuses prompts that fill max_model_len: an empty, cut-off answer
                        seqs[rid].finish = "length"
                        continue
                    self.engine.add(rid, ids, temperature=params.temperature, top_p=params.top_p,
                                    max_tokens=min(params.max_tokens, room), seed=derive_seed(params.seed, p, k),
                                    stop_token_ids=self.stop_ids,
                                    lora=loras[request.adapter])
        too_long = sum(s.finish == "length" for s in seqs.values())
        if too_long:
            log.warning("%d sequences not sampled: prompt longer than vllm.max_model_len=%d", too_long,
                        self.vllm_config.max_model_len)

    def _run(self, seqs: dict[str, _Seq]) -> None:
        """Step the engine until every sequence stopped, reached max_tokens or was cut at its deadline."""
        by_deadline: dict[float, list[str]] = {}
        for rid, seq in seqs.items():
            if seq.deadline is not None and seq.finish is None:
                by_deadline.setdefault(seq.deadline, []).append(rid)
        deadlines = sorted(by_deadline)  # per step, only the earliest is compared with the clock
        while self.engine.has_unfinished():
            for out in self.engine.step():
                seq = seqs.get(out.request_id)
                if seq is not None:  # else not ours
                    self._take(seq, out)
            now = time.time()
            while deadlines and now >= deadlines[0]:
                expired = [rid for rid in by_deadline[deadlines.pop(0)] if seqs[rid].finish is None]
                self.engine.abort(expired)
                for rid in expired:
                    seqs[rid].finish = "deadline"

    # --- streaming: requests join and leave the running engine --------------------------------------

    def submit(self, key: int, request: GenerationRequest) -> None:
        if key in self._live:
            raise ValueError(f"request key {key} is already in flight")
        with self.timings.measure("generate"):
            loras: dict[str | None, LoraHandle | None] = {}
            if request.adapter is not None:
                loras[request.adapter] = self._lora(request.adapter)
            # On a CPU a base row beside any LoRA row needs the zero adapter, and in a stream LoRA rows
            # may join later: every base row takes it once an adapter exists.
            loras[None] = self._base_lora({a: None for a in self.trainer.adapters})
            seqs: dict[str, _Seq] = {}
            self._submit([request], loras, seqs)
            self._live[key] = _Live(request, seqs)
            self._owner.update((rid, key) for rid in seqs)

    def step(self) -> list[tuple[int, list[list[Completion]]]]:
        with self.timings.measure("generate"):
            if self.engine.has_unfinished():
                for out in self.engine.step():
                    key = self._owner.get(out.request_id)
                    if key is not None:  # else aborted by its owner
                        self._take(self._live[key].seqs[out.request_id], out)
            now = time.time()
            ended = []
            for key, live in self._live.items():
                deadline = live.request.deadline
                if deadline is not None and now >= deadline:
                    expired = [rid for rid, seq in live.seqs.items() if seq.finish is None]
                    self.engine.abort(expired)
                    for rid in expired:
                        live.seqs[rid].finish = "deadline"
                if all(seq.finish is not None for seq in live.seqs.values()):
                    ended.append(key)
            return [(key, self._end(key)) for key in ended]

    def _end(self, key: int) -> list[list[Completion]]:
        live = self._live.pop(key)
        for rid in live.seqs:
            self._owner.pop(rid, None)
        [answer] = self._collect([live.request], live.seqs)
        return answer

    def abort(self, key: int) -> None:
        live = self._live.get(key)
        if live is not None:
            self.engine.abort([rid for rid, seq in live.seqs.items() if seq.finish is None])
            self._end(key)

    def running(self) -> int:
        return sum(seq.finish is None for live in self._live.values() for seq in live.seqs.values())

    def _take(self, seq: _Seq, out) -> None:
        """One step's output for a sequence (ignored once the sequence ended, e.g. cut at its deadline)."""
        if seq.finish is not None:
            return
        seq.pieces.append(out.text)
        seq.tokens += out.new_tokens
        if out.finish_reason is not None:
            seq.finish = self._finish_reason(out.finish_reason)

    @staticmethod
    def _finish_reason(reason: str) -> FinishReason:
        if reason in ("stop", "length"):
            return reason
        log.warning("vLLM ended a sequence with finish reason %r: counted as cut off", reason)
        return "length"

    @staticmethod
    def _collect(requests: list[GenerationRequest], seqs: dict[str, _Seq]) -> Completions:
        """Completions per request and prompt, in sample order; sequences cut before their first token are left out."""
        out: Completions = [[[] for _ in request.prompts] for request in requests]
        for seq in seqs.values():  # insertion order: request, prompt, sample
            if seq.finish == "deadline" and seq.tokens == 0:
                continue
            out[seq.request][seq.prompt].append(seq.completion())
        return out

    def close(self) -> None:
        for name in list(self._served):
            self._forget(name)
        if self.engine is not None:
            self.engine.close()
            self.engine = None
        self.trainer.close()
        self._cleanup()


def from_config(config: Config) -> VLLMBackend:
    return VLLMBackend(config.model, config.lora, config.training, config.vllm, seed=config.seed,
                       max_batch_tokens=config.model.max_batch_tokens)
