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
  under a fresh `lora_int_id` (the adapter's version: vLLM caches by id, a reused id would serve
  the old weights); at most `max_loras` different adapters share one engine call.

Import order: unsloth patches transformers and peft when it is imported, and must come before them
(else it warns of slower training and more memory; seen on the GPU when arc25.backends.hf came
first). So this module imports neither (nor vLLM, nor unsloth) at its top: importing it has no
effect beyond itself (tests/test_unsloth_backend.py checks in a fresh interpreter), and
`load_with_unsloth` imports unsloth first, before anything of transformers or peft is needed.
CPU tests drive everything but the loader and the engine; `load` needs CUDA, unsloth and vLLM.
`UNSLOTH_VLLM_MERGED_ROLLOUT=0` is set before unsloth loads: its default folds one LoRA into the
shared base weights for generation, which would serve every task in a mixed call with one adapter.
`unsloth.load_in_fp8` loads the weights as FP8 (vLLM's online per-channel quantization; unsloth's
trainer runs its FP8 linear layers with a backward on the same tensors): `fp8_problem` names the
GPUs where unsloth refuses it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import torch

from arc25.backends.adapters import AdapterTable, adapter_seed
from arc25.backends.base import (
    Completion,
    Completions,
    GenerationRequest,
    SamplingParams,
    Timings,
    TrainSample,
    TrainStats,
)
from arc25.backends.trainer import HEAD_CHUNK, LoraTrainer, TrainState, encode_sample
from arc25.config import Config
from arc25.errors import UserError
from arc25.prompts import STOP_TOKENS, PromptIds, SpecialIds

log = logging.getLogger(__name__)

SLOT = "default"  # the one peft adapter unsloth trains; tasks' weights are swapped through it


# ---------------------------------------------------------------------------------------------
# Where the model comes from: unsloth on CUDA, a stand-in in CPU tests


@dataclass
class Loaded:
    model: Any  # a peft model with one LoRA adapter named SLOT (unsloth's get_peft_model output)
    tokenizer: Any
    engine: Engine


class Engine(Protocol):
    """What the backend needs from an inference engine serving LoRAs by request: rows join and leave
    a running batch (vLLM's continuous batching)."""

    max_loras: int

    def add(self, row: EngineRow) -> str:
        """Start a row; its outputs come back from `step` under the returned id."""
        ...

    def step(self) -> list[tuple[str, list[EngineOutput]]]:
        """One engine step; the rows that ended in it (cut or missing only where the row's deadline passed)."""
        ...

    def abort(self, row_ids: list[str]) -> None: ...

    def unfinished(self) -> int:
        """Rows added and not yet returned by `step`."""
        ...


def run_rows(engine: Engine, rows: list[EngineRow]) -> list[list[EngineOutput]]:
    """All rows to the end, as one blocking call: for each row, its completions."""
    ids = [engine.add(row) for row in rows]
    done: dict[str, list[EngineOutput]] = {}
    while len(done) < len(ids):
        done.update(engine.step())
    return [done[rid] for rid in ids]


@dataclass
class EngineRow:
    prompt_ids: list[int]
    params: SamplingParams
    lora: AdapterWeights | None  # None: the base model
    deadline: float | None = None


@dataclass
class EngineOutput:
    token_ids: list[int]
    text: str
    finish_reason: str  # stop | length | deadline


@dataclass
class AdapterWeights:
    """One version of one task's LoRA, as handed to the engine (bf16 CPU tensors, peft names)."""

    name: str
    version: int
    tensors: dict[str, torch.Tensor]
    config: dict[str, Any]  # peft's adapter_config.json content


def _vllm_lora_request(weights: AdapterWeights) -> Any:
    # unsloth_zoo patches vllm.lora.request.LoRARequest to accept tensors; take the patched class
    import vllm.lora.request

    return vllm.lora.request.LoRARequest(f"{weights.name}-v{weights.version}", weights.version,
                                         lora_tensors=weights.tensors, lora_config=weights.config)


@dataclass
class _Row:
    """A row in vLLM: its latest output per completion index, and how it ended."""

    row: EngineRow
    latest: dict[int, Any] = field(default_factory=dict)
    finished: bool = False
    cut: bool = False


class VLLMEngine:
    """unsloth's in-process vLLM engine, stepped by hand: rows join and leave the running batch, and a
    deadline cuts its rows."""

    def __init__(self, llm: Any, max_loras: int, stop_ids: list[int]) -> None:
        self.llm, self.max_loras, self.stop_ids = llm, max_loras, stop_ids
        self._ids = iter(range(1 << 62))
        self._rows: dict[str, _Row] = {}

    def _params(self, p: SamplingParams) -> Any:
        from vllm import SamplingParams as VParams

        greedy = p.temperature <= 0
        return VParams(n=p.n, temperature=0.0 if greedy else p.temperature, top_p=1.0 if greedy else p.top_p,
                       max_tokens=p.max_tokens, seed=p.seed, stop_token_ids=list(self.stop_ids),
                       skip_special_tokens=True)

    def add(self, row: EngineRow) -> str:
        rid = f"arc25-{next(self._ids)}"
        lora = _vllm_lora_request(row.lora) if row.lora is not None else None
        self.llm.llm_engine.add_request(rid, {"prompt_token_ids": row.prompt_ids}, self._params(row.params),
                                        lora_request=lora)
        self._rows[rid] = _Row(row)
        return rid

    def unfinished(self) -> int:
        return len(self._rows)

    def abort(self, row_ids: list[str]) -> None:
        live = [rid for rid in row_ids if rid in self._rows]
        if live:
            self.llm.llm_engine.abort_request(live)
        for rid in live:
            del self._rows[rid]

    def step(self) -> list[tuple[str, list[EngineOutput]]]:
        engine = self.llm.llm_engine
        now = time.time()
        late = [rid for rid, r in self._rows.items()
                if r.row.deadline is not None and now >= r.row.deadline and not r.finished]
        if late:
            engine.abort_request(late)
            for rid in late:
                self._rows[rid].cut = True
        if engine.has_unfinished_requests() and not all(r.finished or r.cut for r in self._rows.values()):
            for out in engine.step():
                r = self._rows.get(out.request_id)
                if r is None:
                    continue  # aborted by its owner
                for c in out.outputs:  # n > 1: children may come one by one or together
                    r.latest[c.index] = c
                if out.finished:
                    r.finished = True
        ended = [rid for rid, r in self._rows.items() if r.finished or r.cut]
        return [(rid, self._outputs(self._rows.pop(rid))) for rid in ended]

    @staticmethod
    def _outputs(r: _Row) -> list[EngineOutput]:
        outs = []
        for index in range(r.row.params.n):
            c = r.latest.get(index)
            if c is None:
                continue  # not started before the deadline
            done = r.finished and c.finish_reason in ("stop", "length")
            outs.append(EngineOutput(list(c.token_ids), c.text, c.finish_reason if done else "deadline"))
        return outs

    def run(self, rows: list[EngineRow]) -> list[list[EngineOutput]]:
        return run_rows(self, rows)


def unsloth_utilization(vllm_gib: float) -> float:
    """The `gpu_memory_utilization` to give unsloth for a vLLM share of `vllm_gib`.

    unsloth (approximate_vllm_memory_usage) multiplies it by the memory *free now*, not the card's,
    and hands vLLM that over the card's total; its KV estimate from that share also caps
    max_model_len. Asking vllm_gib / total gave vLLM 16.0 of 17 GiB on an H100 whose context
    and cache held 4.6 GiB: no KV cache left, max_model_len 3328 (docs/benchmarks.md)."""
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info()
    return min(0.98, vllm_gib * 1024**3 / free)


FP8_MIN_CAPABILITY = (9, 0)  # unsloth's _get_fp8_mode_and_check_settings: "requires H100 GPUs or after"


def fp8_problem(load_in_fp8: bool, load_in_4bit: bool, capability: tuple[int, int]) -> str | None:
    """Why unsloth.load_in_fp8 cannot load on this GPU (one line), or None.

    unsloth 2026.10.9 quantizes a bf16 checkpoint to FP8 at load only on compute capability >= 9.0
    (`_get_fp8_mode_and_check_settings`, called by the fast_inference loader), although an L4 (8.9)
    has FP8 matrix units; and FP8 excludes the 4-bit base."""
    if not load_in_fp8:
        return None
    if load_in_4bit:
        return "unsloth.load_in_fp8 and unsloth.load_in_4bit exclude each other: set one of them to false"
    if tuple(capability) < FP8_MIN_CAPABILITY:
        major, minor = capability
        return (f"unsloth.load_in_fp8: unsloth quantizes to FP8 at load only on compute capability >= 9.0 (H100); "
                f"this GPU is {major}.{minor} (an L4 is 8.9): set unsloth.load_in_fp8=false")
    return None


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
    problem = fp8_problem(uc.load_in_fp8, uc.load_in_4bit, torch.cuda.get_device_capability(0))
    if problem:
        raise UserError(problem)
    cap = uc.memory_cap_gib
    total = torch.cuda.get_device_properties(0).total_memory / 1024**3
    if cap > 0:
        # An L4-sized process on a bigger card: torch's allocator stops at the cap, and vLLM's share
        # is given in GiB, not as a fraction of whatever card this is.
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total))
    model, tokenizer = FastLanguageModel.from_pretrained(
        mc.path, max_seq_length=tc.max_seq_len, dtype=torch.bfloat16,
        load_in_4bit=uc.load_in_4bit, load_in_fp8=uc.load_in_fp8, fast_inference=True,
        gpu_memory_utilization=unsloth_utilization(uc.vllm_gib),
        max_lora_rank=lc.rank, max_loras=max_loras, float8_kv_cache=uc.fp8_kv_cache,
        max_num_seqs=uc.max_num_seqs, max_num_batched_tokens=uc.max_num_batched_tokens,
        enable_prefix_caching=True, random_state=config.seed)
    model = FastLanguageModel.get_peft_model(
        model, r=lc.rank, lora_alpha=lc.alpha, lora_dropout=lc.dropout, bias="none", use_rslora=lc.use_rslora,
        target_modules=list(lc.target_modules), random_state=config.seed, max_seq_length=tc.max_seq_len,
        use_gradient_checkpointing="unsloth" if tc.gradient_checkpointing else False)
    stop_ids = [tokenizer.convert_tokens_to_ids(t) for t in STOP_TOKENS]
    return Loaded(model, tokenizer, VLLMEngine(model.vllm_engine, max_loras, stop_ids))


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
        self._live: dict[int, tuple[GenerationRequest, list[str], list[EngineRow]]] = {}  # key -> request, rows
        self._done_rows: dict[str, list[EngineOutput]] = {}
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

    def generate(self, requests: list[GenerationRequest]) -> Completions:
        if self._live:
            raise RuntimeError("generate() while submitted requests are in flight: step() them to the end first")
        with self.timings.measure("generate"):
            names = {r.adapter for r in requests if r.adapter is not None}
            if len(names) > self.max_adapters_per_call:
                raise ValueError(f"{len(names)} adapters in one call; the engine serves {self.max_adapters_per_call}")
            loras = {name: self.handover(name) for name in names}
            rows, where = [], []
            for i, request in enumerate(requests):
                for j, messages in enumerate(request.prompts):
                    lora = loras[request.adapter] if request.adapter is not None else None
                    rows.append(EngineRow(self.prompt_ids(messages), request.params, lora, request.deadline))
                    where.append((i, j))
            outputs = run_rows(self.engine, rows) if rows else []
            result: Completions = [[[] for _ in r.prompts] for r in requests]
            for (i, j), row, outs in zip(where, rows, outputs):
                result[i][j] = _completions(row, outs)
            return result

    # --- streaming: requests join and leave vLLM's running batch ----------------------------------

    def submit(self, key: int, request: GenerationRequest) -> None:
        if key in self._live:
            raise ValueError(f"request key {key} is already in flight")
        with self.timings.measure("generate"):
            lora = self.handover(request.adapter) if request.adapter is not None else None
            rows = [EngineRow(self.prompt_ids(m), request.params, lora, request.deadline) for m in request.prompts]
            self._live[key] = (request, [self.engine.add(row) for row in rows], rows)

    def step(self) -> list[tuple[int, list[list[Completion]]]]:
        with self.timings.measure("generate"):
            self._done_rows.update(self.engine.step())
            ended = [key for key, (_, ids, _) in self._live.items() if all(i in self._done_rows for i in ids)]
            answers = []
            for key in ended:
                _, ids, rows = self._live.pop(key)
                answers.append((key, [_completions(row, self._done_rows.pop(i)) for i, row in zip(ids, rows)]))
            return answers

    def abort(self, key: int) -> None:
        live = self._live.pop(key, None)
        if live is not None:
            self.engine.abort(live[1])
            for i in live[1]:
                self._done_rows.pop(i, None)

    def running(self) -> int:
        return sum(row.params.n for _, ids, rows in self._live.values()
                   for i, row in zip(ids, rows) if i not in self._done_rows)

    def close(self) -> None:
        self.engine = None
        self.adapters.clear()
        self.peft = self.base = self.trainer = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _completions(row: EngineRow, outs: list[EngineOutput]) -> list[Completion]:
    return [Completion(o.text, o.finish_reason, prompt_tokens=len(row.prompt_ids), completion_tokens=len(o.token_ids))
            for o in outs]


def from_config(config: Config) -> UnslothBackend:
    return UnslothBackend(config)
