"""The unsloth backend: one copy of the 8B weights, trained through and sampled from, on a 24 GB card.

An L4 cannot hold the model twice (16 GB of bf16 weights), so this backend loads it once through
unsloth with `fast_inference=True`: vLLM owns the weights and unsloth builds the trainable
transformers + peft model on views of them. Generation is vLLM's engine with one LoRA request per
task; training is the project's own loop (`arc25.backends.trainer.LoraTrainer`: batching, warm-up,
clipping, loss on labelled positions only, the LM head in chunks) on unsloth's kernels and offloaded
gradient checkpointing.

Many tasks, one training slot. unsloth patches one peft adapter ("default"); every task's LoRA
lives outside it and is swapped in when that task trains:

- the slot's parameters are on the GPU; the task that trained last stays in the slot;
- every other task's LoRA weights and AdamW moments wait in pinned CPU memory (fp32: 12 bytes
  per LoRA parameter, ~1 GiB per task at rank 32 on all seven projections of the 8B model) and
  are copied in (~40 ms over PCIe 4) when their task trains next;
- vLLM gets each new version as bf16 tensors from memory (`LoRARequest(lora_tensors=...)`)
  under a fresh name and `lora_int_id` (the driver's: vLLM caches by both, a reused one would
  serve the old weights); at most `max_loras` different adapters share one engine call.

Generation is `arc25.backends.vllm_driver`, the loop the vLLM backend uses too; this backend only
hands each adapter version over as tensors in memory (`handover`, `lora_handle`).
Import order: unsloth patches transformers and peft when it is imported, and must come before them
(else it warns of slower training and more memory; seen on the GPU when arc25.backends.hf came
first). So this module imports neither (nor vLLM, nor unsloth) at its top: importing it has no
effect beyond itself (tests/test_unsloth_backend.py checks in a fresh interpreter), and
`load_with_unsloth` imports unsloth first, before anything of transformers or peft is needed.
CPU tests drive everything but the loader and the engine; `load` needs CUDA, unsloth and vLLM.
`UNSLOTH_VLLM_MERGED_ROLLOUT=0` is set before unsloth loads: its default folds one LoRA into the
shared base weights for generation, which would serve every task in a mixed call with one adapter.
`unsloth.weights` (auto: FP8 on L4-sized memory) picks the weights through `arc25.fp8_checkpoint.choose_weights`:
FP8 quantized at load (vLLM's online per-channel quantization; unsloth's trainer runs its FP8 linear layers
with a backward on the same tensors) on compute capability >= 9.0; on an L4 (8.9) a block-FP8 checkpoint
(`arc25 quantize-fp8`, or the copy `arc25 run` makes before its workers start) loaded as is.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import torch

if TYPE_CHECKING:
    from arc25.backends.vllm_compat import Engine, LoraHandle

from arc25.backends.adapters import AdapterTable, adapter_seed
from arc25.backends.base import (
    Completion,
    Completions,
    GenerationRequest,
    Timings,
    TrainSample,
    TrainStats,
)
from arc25.backends.trainer import HEAD_CHUNK, LoraTrainer, TrainState, encode_sample
from arc25.backends.vllm_driver import VLLMDriver
from arc25.config import Config
from arc25.errors import UserError
from arc25.fp8_checkpoint import Route, WeightsChoice, choose_weights, ensure_fp8_copy
from arc25.prompts import PromptIds, SpecialIds

log = logging.getLogger(__name__)

SLOT = "default"  # the one peft adapter unsloth trains; tasks' weights are swapped through it


# ---------------------------------------------------------------------------------------------
# Where the model comes from: unsloth on CUDA, a stand-in in CPU tests


@dataclass
class Loaded:
    model: Any  # a peft model with one LoRA adapter named SLOT (unsloth's get_peft_model output)
    tokenizer: Any
    engine: Engine  # unsloth's vLLM (`model.vllm_engine`), stepped by the driver


@dataclass
class AdapterWeights:
    """One version of one task's LoRA, as handed to the engine (bf16 CPU tensors, peft names)."""

    name: str
    version: int
    tensors: dict[str, torch.Tensor]
    config: dict[str, Any]  # peft's adapter_config.json content


def unsloth_utilization(vllm_gib: float) -> float:
    """The `gpu_memory_utilization` to give unsloth for a vLLM share of `vllm_gib`.

    unsloth (approximate_vllm_memory_usage) multiplies it by the memory *free now*, not the card's,
    and hands vLLM that over the card's total; its KV estimate from that share also caps
    max_model_len. Asking vllm_gib / total gave vLLM 16.0 of 17 GiB on an H100 whose context
    and cache held 4.6 GiB: no KV cache left, max_model_len 3328 (docs/benchmarks.md)."""
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info()
    return min(0.98, vllm_gib * 1024**3 / free)


def load_with_unsloth(config: Config, max_loras: int) -> Loaded:
    """The model through unsloth with fast_inference=True (vLLM owns the weights; training shares them)."""
    if not torch.cuda.is_available():
        raise UserError("model.backend='unsloth' needs a CUDA GPU (use 'hf' or 'vllm' on CPU)")
    os.environ.setdefault("UNSLOTH_VLLM_MERGED_ROLLOUT", "0")
    os.environ.setdefault("VLLM_USE_FLASHINFER_SAMPLER", "0")
    try:
        import unsloth  # noqa: F401  (first: it patches transformers and peft)
        from unsloth import FastLanguageModel
    except ImportError as exc:
        raise UserError(f"model.backend='unsloth': cannot import unsloth ({exc})") from None
    mc, uc, lc, tc = config.model, config.unsloth, config.lora, config.training
    cap = uc.memory_cap_gib
    total = torch.cuda.get_device_properties(0).total_memory / 1024**3
    fp8 = choose_weights(uc.weights, mc.path, torch.cuda.get_device_capability(0), cap if cap > 0 else total,
                         uc.load_in_4bit)
    if fp8.problem:
        raise UserError(fp8.problem)
    path = mc.path
    if fp8.route == Route.COPY:  # an L4: the block-FP8 copy, made once by the first worker (or bf16 if it cannot be)
        copied = ensure_fp8_copy(mc.path, uc.fp8_copy_dir)
        path = str(copied) if copied else path
        fp8 = WeightsChoice(Route.COPY, f"{fp8.reason}; {copied}") if copied else WeightsChoice(
            Route.AS_STORED, "the FP8 copy failed")
    log.info("%s", fp8.describe())
    if cap > 0:
        # An L4-sized process on a bigger card: torch's allocator stops at the cap, and vLLM's share
        # is given in GiB, not as a fraction of whatever card this is.
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total))
    model, tokenizer = FastLanguageModel.from_pretrained(
        path, max_seq_length=tc.max_seq_len, dtype=torch.bfloat16,
        load_in_4bit=uc.load_in_4bit, load_in_fp8=fp8.load_in_fp8, fast_inference=True,
        gpu_memory_utilization=unsloth_utilization(uc.vllm_gib),
        max_lora_rank=lc.rank, max_loras=max_loras, float8_kv_cache=uc.fp8_kv_cache,
        max_num_seqs=uc.max_num_seqs, max_num_batched_tokens=uc.max_num_batched_tokens,
        enable_prefix_caching=True, random_state=config.seed)
    model = FastLanguageModel.get_peft_model(
        model, r=lc.rank, lora_alpha=lc.alpha, lora_dropout=lc.dropout, bias="none", use_rslora=lc.use_rslora,
        target_modules=list(lc.target_modules), random_state=config.seed, max_seq_length=tc.max_seq_len,
        use_gradient_checkpointing="unsloth" if tc.gradient_checkpointing else False)
    from arc25.backends.vllm_compat import Engine

    return Loaded(model, tokenizer, Engine(model.vllm_engine, max_loras=max_loras))


# ---------------------------------------------------------------------------------------------
# The backend


@dataclass(kw_only=True)
class TaskAdapter(TrainState):
    """One task's LoRA: in the slot while it owns it, else in its own pinned CPU buffers.

    `params` are the slot's parameters (what the optimizer steps while the task is in the slot). The
    buffers are allocated once per task and reused by every swap (pinning 1 GiB per swap would cost
    more than the copy)."""

    seed: int
    host: list[torch.Tensor]  # the weights while the task is out of the slot
    moments: dict[tuple[int, str], torch.Tensor] = field(default_factory=dict)  # the optimizer's pinned buffers
    handed: AdapterWeights | None = None  # the engine's copy of the current version


class UnslothBackend:
    """Backend protocol on unsloth (training) + vLLM (generation) sharing one copy of the weights.

    A `StreamingBackend`: requests join vLLM's running batch (`submit` / `step`), and `train` may run
    on another thread meanwhile. Training then runs on a CUDA stream of its own, so its kernels
    interleave with vLLM's decoding: decoding is memory-bound and training compute-bound, and on an
    H100 with the 8B shape 4 tasks' learn steps (3.4 s alone) added 0.3-1.0 s beside 30 s of
    decoding (bench/gpu_overlap.py, docs/benchmarks.md). The slot lock keeps a swap (training
    thread) and an export for the engine (engine thread) from reading half-copied weights.
    """

    trains_concurrently = True

    def __init__(self, config: Config, loader: Callable[[Config, int], Loaded] = load_with_unsloth) -> None:
        self.config, self._loader = config, loader
        self.lora_config, self.training_config, self.seed = config.lora, config.training, config.seed
        self.max_tasks = max(1, config.run.tasks_per_worker)
        self.timings = Timings()
        self.adapters: AdapterTable[TaskAdapter] = AdapterTable()
        with self.timings.measure("load"):
            self._load()
        self.trainer = LoraTrainer(self.training_config, self.base, self.encode, self.ids.pad, self.device,
                                   self.timings, head_chunk=HEAD_CHUNK)

    def _load(self) -> None:
        loaded = self._loader(self.config, self.max_tasks)  # unsloth first: it patches transformers and peft
        from arc25.backends.peft_loras import peft_lora_config

        self.peft, self.tokenizer, self.engine = loaded.model, loaded.tokenizer, loaded.engine
        self.base = self.peft.get_base_model()  # the LlamaForCausalLM with LoRA layers (loss uses its decoder)
        self.max_adapters_per_call = self.engine.max_loras
        self.ids = SpecialIds.of(self.tokenizer)
        self.pad_id, self.stop_ids = self.ids.pad, list(self.ids.stop)
        self.prompt_ids = PromptIds(self.tokenizer)
        self.slot = [p for n, p in self.peft.named_parameters() if "lora_" in n and f".{SLOT}." in n]
        self.slot_names = [n.replace(f".{SLOT}", "") for n, p in self.peft.named_parameters()
                           if "lora_" in n and f".{SLOT}." in n]
        if not self.slot:
            raise RuntimeError(f"the loaded model has no LoRA adapter named {SLOT!r}")
        for p in self.slot:
            p.requires_grad_(True)
        self.device = self.slot[0].device
        self.owner: str | None = None  # the task whose weights are in the slot
        self.swaps = 0
        self._slot_lock = threading.Lock()
        self._train_stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        self.driver = VLLMDriver(self.engine, self, self.prompt_ids, self.stop_ids, self.timings)
        self._pin = self.device.type == "cuda"
        # the adapter_config.json content vLLM reads (plain JSON types, as unsloth hands it over)
        peft_config = peft_lora_config(self.lora_config).to_dict()
        peft_config["target_modules"] = sorted(peft_config["target_modules"])
        self._engine_config = json.loads(json.dumps(peft_config, default=str))

    def encode(self, sample: TrainSample) -> tuple[list[int], list[int]]:
        return encode_sample(self.prompt_ids(sample.messages), self.prompt_ids.answer(sample.answer), self.ids.eot)

    # --- adapters: weights swapped through the slot -----------------------------------------------

    def create_adapter(self, name: str) -> None:
        self.adapters.check_new(name)
        with self.timings.measure("create"):
            host = [torch.empty(p.shape, dtype=p.dtype, pin_memory=self._pin) for p in self.slot]
            task = TaskAdapter(params=self.slot, seed=adapter_seed(self.seed, name), host=host)
            self._initial_weights(task)
            self.adapters.add(name, task)

    def _initial_weights(self, task: TaskAdapter) -> None:
        """peft's LoRA init (A: kaiming-uniform, B: zeros) from the task's own seed, into its CPU buffers."""
        gen = torch.Generator().manual_seed(task.seed)
        for name, t in zip(self.slot_names, task.host):
            if ".lora_A." in name:
                bound = 1 / math.sqrt(t.shape[1])  # kaiming_uniform_(a=sqrt(5)): 1/sqrt(fan_in)
                t.uniform_(-bound, bound, generator=gen)
            else:
                t.zero_()

    def _evict(self, name: str) -> None:
        """The slot no longer holds `name`'s weights (they are about to be replaced in its buffers)."""
        if self.owner == name:
            self.owner = None

    def _state(self, name: str) -> TaskAdapter:
        return self.adapters[name]

    def adapter_version(self, name: str) -> int:
        return self.adapters[name].version

    def reset_adapter(self, name: str) -> None:
        with self.timings.measure("reset"):
            task = self.adapters[name]
            self._evict(name)
            self._initial_weights(task)
            task.handed = None
            self.adapters.forget_training(task)

    def export_adapter(self, name: str) -> dict[str, torch.Tensor]:
        task = self.adapters[name]
        with self._slot_lock:
            values = self.slot if self.owner == name else task.host
            return {key: v.detach().to("cpu", copy=True).contiguous() for key, v in zip(self.slot_names, values)}

    def import_adapter(self, name: str, tensors: dict[str, torch.Tensor]) -> None:
        task = self.adapters[name]
        missing = [k for k in self.slot_names if k not in tensors]
        if missing:
            raise ValueError(f"adapter {name!r}: imported weights lack {len(missing)} tensors, e.g. {missing[0]}")
        self._evict(name)
        for key, buffer in zip(self.slot_names, task.host):
            buffer.copy_(tensors[key].detach())
        task.handed = None
        self.adapters.forget_training(task)

    def drop_adapter(self, name: str) -> None:
        if self.adapters.pop(name) is not None:
            self._evict(name)

    def _activate(self, name: str) -> None:
        """Put `name`'s weights and moments in the slot (the previous owner's go to its pinned buffers)."""
        task = self.adapters[name]
        if self.owner == name:
            return
        with self._slot_lock, self.timings.measure("swap"), torch.no_grad():
            if self.owner is not None:
                old = self.adapters[self.owner]
                for buffer, p in zip(old.host, self.slot):
                    buffer.copy_(p, non_blocking=self._pin)
                self._moments_out(old)
            for p, buffer in zip(self.slot, task.host):
                p.copy_(buffer, non_blocking=self._pin)
                p.grad = None
            self._moments_in(task)
            if self._pin:
                torch.cuda.synchronize(self.device)  # host buffers are read (export) or rewritten next
            self.owner = name
            self.swaps += 1

    def _moments_out(self, task: TaskAdapter) -> None:
        if task.optimizer is None:
            return
        for i, p in enumerate(self.slot):
            state = task.optimizer.state.get(p, {})
            for key, value in state.items():
                if torch.is_tensor(value) and value.device != torch.device("cpu"):
                    buffer = task.moments.get((i, key))
                    if buffer is None or buffer.shape != value.shape:
                        buffer = task.moments[(i, key)] = torch.empty(value.shape, dtype=value.dtype,
                                                                       pin_memory=self._pin)
                    buffer.copy_(value, non_blocking=self._pin)
                    state[key] = buffer

    def _moments_in(self, task: TaskAdapter) -> None:
        if task.optimizer is None or self.device.type == "cpu":
            return
        for p in self.slot:
            state = task.optimizer.state.get(p, {})
            for key, value in state.items():
                if torch.is_tensor(value) and value.device.type == "cpu" and not (key == "step" and value.dim() == 0
                                                                                   and not task.optimizer.defaults.get("fused")):
                    state[key] = value.to(self.device, non_blocking=self._pin)

    def train(self, adapter: str, samples: list[TrainSample], deadline: float | None = None) -> TrainStats:
        with self.adapters.training(self.adapters[adapter]) as task:
            if self._train_stream is None:
                stats = self._train(adapter, task, samples, deadline)
            else:
                with torch.cuda.stream(self._train_stream):
                    stats = self._train(adapter, task, samples, deadline)
                self._train_stream.synchronize()  # the new version is complete before the engine may read it
            if stats.steps:
                task.handed = None  # a new version: hand it over at its next generation
            return stats

    def _train(self, adapter: str, task: TaskAdapter, samples: list[TrainSample], deadline: float | None) -> TrainStats:
        return self.trainer.train(adapter, task, samples, deadline, self.peft, lambda: self._activate(adapter))

    # --- generation: vLLM with one LoRA request per task ------------------------------------------

    def handover(self, name: str) -> AdapterWeights:
        """The adapter's current version as the engine takes it (made once per version)."""
        task = self._state(name)
        if task.handed is None or task.handed.version != task.version:
            with self.timings.measure("handover"):
                tensors = {k: v.to(torch.bfloat16) for k, v in self.export_adapter(name).items()}
                task.handed = AdapterWeights(name, task.version, tensors, self._engine_config)
        return task.handed

    def adapter_names(self) -> list[str]:
        return list(self.adapters)

    def lora_handle(self, adapter: str, label: str, lora_id: int, zero: bool = False) -> LoraHandle:
        """The driver's `Handover`: the version's tensors, in memory (`LoRARequest(lora_tensors=...)`)."""
        from arc25.backends.vllm_compat import LoraHandle

        weights = self.handover(adapter)
        tensors = {k: torch.zeros_like(t) for k, t in weights.tensors.items()} if zero else weights.tensors
        return LoraHandle(label, lora_id, tensors=tensors, config=weights.config)

    def release_handle(self, handle: LoraHandle) -> None:
        pass  # the tensors go with the handle

    # --- generation: the driver's stepped interface -------------------------------------------------

    @property
    def max_model_len(self) -> int:
        return self.engine.max_model_len

    def generate(self, requests: list[GenerationRequest]) -> Completions:
        return self.driver.generate(requests)

    def submit(self, key: int, request: GenerationRequest) -> None:
        self.driver.submit(key, request)

    def step(self) -> list[tuple[int, list[list[Completion]]]]:
        return self.driver.step()

    def abort(self, key: int) -> None:
        self.driver.abort(key)

    def running(self) -> int:
        return self.driver.running()

    def close(self) -> None:
        if self.engine is not None:
            self.driver.close()  # unsloth's engine itself goes with the process
        self.engine = None
        self.adapters.clear()
        self.peft = self.base = self.trainer = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()




def from_config(config: Config) -> UnslothBackend:
    return UnslothBackend(config)
