"""GPU memory per worker, estimated before the first out-of-memory: what `arc25 doctor` prints.

One worker owns one GPU. What it holds there depends on the backend:

- unsloth: ONE copy of the weights, owned by vLLM and shared by training. vLLM takes
  `unsloth.vllm_gib` at start (weights, its LoRA slots, its activations, the KV cache: the KV
  cache is what is left of that share); the training side (one LoRA slot with its gradients
  and AdamW moments, the activations of the longest sample) and CUDA's own use come on top;
- vllm: two copies (vLLM's and the training copy's), vLLM's share set by gpu_memory_utilization;
- hf: one copy, every task's adapter and moments on the GPU, a KV cache of model.max_batch_tokens.

The numbers are formulas over the model's shape, calibrated by the measurements in
docs/benchmarks.md (8B shape on an H100 capped at 22 GiB; torch reserved ~0.25 GiB over its peak
allocation there). They are estimates: the verdict keeps `HEADROOM_GIB` free for fragmentation.
The longest training sample is the longest prompt plus a `sampling.max_tokens` answer: the worst case.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from arc25.config import Config
from arc25.fp8_checkpoint import WeightsChoice, choose_weights

GIB = 1024**3
L4_USABLE_GIB = 22.3  # an L4's 24 GB (22.5 GiB) less what the driver keeps
HEADROOM_GIB = 0.5
# Calibration (docs/benchmarks.md, 8B shape, H100 capped at 22 GiB, 2026-11-26):
CUDA_CONTEXT_GIB = 0.9  # device used - torch reserved: context, cuBLAS/NCCL workspaces (measured 1.04)
VLLM_GRAPHS_GIB = 0.35  # vLLM's CUDA graphs, captured after its share was sized: on top of it (measured)
VLLM_NON_TORCH_GIB = 0.07  # measured
VLLM_SLOT_FACTOR = 1.15  # a vLLM LoRA slot over its bf16 weights (measured 0.18 GiB per rank-32 slot)
VLLM_ACT_FACTOR = 1.45  # prefill peak over max_num_batched_tokens x (2 I + 4 H) x 2 bytes (0.51 GiB at 4096)
TRAIN_ACT_FACTOR = 2.95  # training step peak over tokens x (3 I + 8 H) bytes, offloaded checkpoints: 2.47 GiB
#                          over the resting state at 9612 tokens with a 1024-token answer through the chunked
#                          head, less the LoRA grads (0.31 GiB) and the head (0.15 GiB); session 2 run


@dataclass(frozen=True)
class ModelShape:
    """The decoder's shape (Llama-3.1-8B unless the model folder's config.json says otherwise)."""

    layers: int = 32
    hidden: int = 4096
    heads: int = 32
    kv_heads: int = 8
    intermediate: int = 14336
    vocab: int = 128256
    source: str = "Llama-3.1-8B (default)"

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def params(self) -> int:
        attn = self.hidden * self.head_dim * (2 * self.heads + 2 * self.kv_heads)
        mlp = 3 * self.hidden * self.intermediate
        return self.layers * (attn + mlp + 2 * self.hidden) + 2 * self.vocab * self.hidden + self.hidden

    def module_dims(self, name: str) -> tuple[int, int]:
        """(in, out) features of a LoRA target module."""
        kv = self.kv_heads * self.head_dim
        return {"q_proj": (self.hidden, self.hidden), "k_proj": (self.hidden, kv), "v_proj": (self.hidden, kv),
                "o_proj": (self.hidden, self.hidden), "gate_proj": (self.hidden, self.intermediate),
                "up_proj": (self.hidden, self.intermediate),
                "down_proj": (self.intermediate, self.hidden)}[name]

    def lora_params(self, rank: int, targets: list[str]) -> int:
        return self.layers * rank * sum(sum(self.module_dims(t)) for t in targets)

    def kv_bytes_per_token(self, fp8: bool = False) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * (1 if fp8 else 2)

    @classmethod
    def from_model_dir(cls, path: str | Path) -> ModelShape:
        """The shape in `path`/config.json, or the 8B default when there is no such file."""
        config_path = Path(path) / "config.json"
        if not config_path.is_file():
            return cls()
        c = json.loads(config_path.read_text())
        return cls(layers=c["num_hidden_layers"], hidden=c["hidden_size"], heads=c["num_attention_heads"],
                   kv_heads=c.get("num_key_value_heads", c["num_attention_heads"]),
                   intermediate=c["intermediate_size"], vocab=c["vocab_size"], source=str(config_path))


def weight_bytes(shape: ModelShape, fp8: bool = False, four_bit: bool = False) -> float:
    """The weights vLLM holds: bf16; FP8 (unsloth's load_in_fp8: one byte per parameter of the decoder's
    linear layers, per-channel scales negligible, the embeddings and LM head bf16: 8.46 GiB for the 8B, which
    with 4 rank-32 LoRA slots is the 9.18-9.22 GiB vLLM reported on an H200, issue 21); or 4-bit
    (bitsandbytes NF4, 0.5625 bytes per parameter with its scales)."""
    embed = 2 * shape.vocab * shape.hidden
    if fp8:
        return (shape.params - embed) * 1 + embed * 2
    if four_bit:
        return (shape.params - embed) * 0.5625 + embed * 2
    return shape.params * 2.0


L4_CAPABILITY = (8, 9)


def weights_choice(config: Config, capability: tuple[int, int] = L4_CAPABILITY,
                   memory_gib: float = L4_USABLE_GIB) -> WeightsChoice | None:
    """unsloth.weights as `arc25 run` resolves it on such a card (arc25.fp8_checkpoint.choose_weights); None
    for the engines without FP8 weights."""
    if config.model.backend != "unsloth":
        return None
    uc = config.unsloth
    memory = uc.memory_cap_gib if 0 < uc.memory_cap_gib < memory_gib else memory_gib
    return choose_weights(uc.weights, config.model.path, capability, memory, uc.load_in_4bit)


def fp8_weights(config: Config, capability: tuple[int, int] = L4_CAPABILITY, memory_gib: float = L4_USABLE_GIB) -> bool:
    """Whether the engine holds FP8 weights on such a card: unsloth with unsloth.weights resolved to FP8."""
    choice = weights_choice(config, capability, memory_gib)
    return choice is not None and choice.fp8


@dataclass
class Item:
    name: str
    gib: float
    where: str  # "GPU" (counted against the card) | "vLLM" (inside vLLM's share) | "CPU"
    note: str = ""


@dataclass
class MemoryPlan:
    backend: str
    card: str
    usable_gib: float
    items: list[Item]
    kv_tokens: int  # KV cache entries vLLM (or the HF chunking) has
    kv_needed_tokens: int  # for every task in flight's epoch batch at once
    min_kv_tokens: int  # one longest prompt + one answer: less and the engine cannot start
    advice: list[str] = field(default_factory=list)
    weights: WeightsChoice | None = None  # unsloth: the weights `arc25 run` would load on this card

    @property
    def gpu_gib(self) -> float:
        return sum(i.gib for i in self.items if i.where == "GPU")

    @property
    def fits(self) -> bool:
        return (self.gpu_gib + HEADROOM_GIB <= self.usable_gib and self.kv_tokens >= self.min_kv_tokens
                and not (self.weights and self.weights.problem))


def training_activation_gib(shape: ModelShape, tokens: int, answer_tokens: int, checkpointing: bool,
                            offloaded: bool, head_chunk: int | None = None) -> float:
    """Peak activation memory of one training step on a `tokens`-long sample.

    With checkpointing, one layer is recomputed at a time: its MLP (gate, up, act: 3 x intermediate)
    and attention/norm tensors (~8 x hidden) per token (calibrated: TRAIN_ACT_FACTOR bytes per
    element); the layers' inputs are kept (hidden per token per layer, bf16) unless unsloth offloads
    them to the CPU. Without checkpointing every layer's activations stay. The LM head runs on
    labelled positions only: bf16 logits, fp32 logits and their fp32 grad (10 bytes per vocab entry),
    for all of them at once, or `head_chunk` at a time.
    """
    per_layer = tokens * (3 * shape.intermediate + 8 * shape.hidden) * TRAIN_ACT_FACTOR
    kept = 0 if offloaded else shape.layers * tokens * shape.hidden * 2
    if not checkpointing:
        per_layer, kept = per_layer * shape.layers / 2, 0
    head = min(answer_tokens, head_chunk or answer_tokens) * shape.vocab * 10
    return (per_layer + kept + head) / GIB


def unsloth_weights_gib(shape: ModelShape, load_in_4bit: bool, load_in_fp8: bool) -> tuple[float, str]:
    """The shared weights in vLLM (`weight_bytes`) and what they are."""
    note = "4-bit" if load_in_4bit else "fp8 (embeddings and head bf16)" if load_in_fp8 else "bf16"
    return weight_bytes(shape, fp8=load_in_fp8, four_bit=load_in_4bit) / GIB, note


def plan(config: Config, shape: ModelShape, usable_gib: float, card: str, longest_prompt: int,
         capability: tuple[int, int] = L4_CAPABILITY) -> MemoryPlan:
    """The per-worker plan for `config` on a card with `usable_gib` and `capability`, given the longest prompt's
    tokens."""
    backend = config.model.backend
    tasks = max(1, config.run.tasks_per_worker)
    lc, tc, sc = config.lora, config.training, config.sampling
    lora = shape.lora_params(lc.rank, list(lc.target_modules))
    train_tokens = min(longest_prompt + sc.max_tokens + 1, tc.max_seq_len)
    answer_tokens = max(1, train_tokens - longest_prompt)
    weights = weight_bytes(shape) / GIB
    kv_token = shape.kv_bytes_per_token(config.unsloth.fp8_kv_cache if backend == "unsloth" else False)
    # every task in flight samples its epoch at once: the prompt once (prefix caching), each answer apart
    prompts_per_epoch = max(1, config.search.predictions_per_epoch // max(1, sc.n_per_prompt))
    needed = tasks * (prompts_per_epoch * longest_prompt + config.search.predictions_per_epoch * sc.max_tokens)
    minimum = longest_prompt + sc.max_tokens
    if backend == "unsloth":  # vLLM refuses to start with less KV cache than its max_model_len
        minimum = max(minimum, tc.max_seq_len)
    acts = training_activation_gib(shape, train_tokens, answer_tokens, tc.gradient_checkpointing,
                                   offloaded=backend == "unsloth")
    items: list[Item] = []
    chosen = weights_choice(config, capability, usable_gib)  # None but for unsloth
    if backend == "unsloth":
        from arc25.backends.trainer import HEAD_CHUNK  # the trainer's head chunk (imports torch: only here)

        uc = config.unsloth
        acts = training_activation_gib(shape, train_tokens, answer_tokens, tc.gradient_checkpointing,
                                       offloaded=True, head_chunk=HEAD_CHUNK)
        weights, weights_note = unsloth_weights_gib(shape, uc.load_in_4bit, chosen is not None and chosen.fp8)
        slots = tasks * lora * 2 * VLLM_SLOT_FACTOR / GIB
        vllm_acts = (uc.max_num_batched_tokens * (2 * shape.intermediate + 4 * shape.hidden) * 2 * VLLM_ACT_FACTOR / GIB
                     + VLLM_NON_TORCH_GIB)
        kv = uc.vllm_gib - weights - slots - vllm_acts
        items += [Item("vLLM share (unsloth.vllm_gib)", uc.vllm_gib, "GPU", "taken at start: the 4 lines below"),
                  Item("  weights (shared with training)", weights, "vLLM", weights_note),
                  Item(f"  LoRA slots ({tasks} = run.tasks_per_worker)", slots, "vLLM", f"rank {lc.rank}"),
                  Item("  vLLM activations", vllm_acts, "vLLM", f"max_num_batched_tokens={uc.max_num_batched_tokens}"),
                  Item("  KV cache", max(0.0, kv), "vLLM", "the rest of the share"
                       + (", fp8" if uc.fp8_kv_cache else ", bf16")),
                  Item("vLLM CUDA graphs", VLLM_GRAPHS_GIB, "GPU", "captured after the share was sized"),
                  Item("training slot: LoRA + grads + AdamW", lora * 16 / GIB, "GPU",
                       f"{lora / 1e6:.0f}M fp32 params, the task that trains"),
                  Item("training activations", acts, "GPU", f"{train_tokens} tokens, checkpoints "
                       + ("offloaded" if tc.gradient_checkpointing else "off")),
                  Item("CUDA context, workspaces", CUDA_CONTEXT_GIB, "GPU", "outside torch's allocator"),
                  Item(f"waiting tasks' LoRA + AdamW ({tasks - 1})", (tasks - 1) * lora * 12 / GIB, "CPU", "pinned"),
                  Item("offloaded checkpoints", shape.layers * train_tokens * shape.hidden * 2 / GIB, "CPU",
                       "unsloth's gradient checkpointing")]
        kv_tokens = int(max(0.0, kv) * GIB / kv_token)
    else:
        copies = 2 if backend == "vllm" else 1
        adapters = (1 if backend == "vllm" else tasks) * lora * 16 / GIB
        if backend == "vllm":
            kv = max(0.0, config.vllm.kv_cache_gib) if hasattr(config, "vllm") else 0.0
            kv = kv or max(0.0, getattr(getattr(config, "vllm", None), "gpu_memory_utilization", 0.5) * usable_gib
                           - weights - VLLM_GRAPHS_GIB)
        else:
            kv = config.model.max_batch_tokens * kv_token / GIB
        items += [Item(f"weights x {copies}", copies * weights, "GPU", "bf16"),
                  Item("LoRA + grads + AdamW", adapters, "GPU", f"{lora / 1e6:.0f}M fp32 params each"),
                  Item("KV cache", kv, "GPU", ""),
                  Item("training activations", acts, "GPU", f"{train_tokens} tokens"),
                  Item("CUDA context, workspaces", CUDA_CONTEXT_GIB, "GPU", "")]
        kv_tokens = int(kv * GIB / kv_token)
    result = MemoryPlan(backend, card, usable_gib, items, kv_tokens, needed, minimum,
                        weights=chosen)
    result.advice = advise(config, result, train_tokens, longest_prompt)
    return result


def advise(config: Config, p: MemoryPlan, train_tokens: int, longest_prompt: int) -> list[str]:
    """Which settings to change, most effective first."""
    out = []
    over = p.gpu_gib + HEADROOM_GIB - p.usable_gib
    if p.backend == "unsloth":
        uc = config.unsloth
        kv_item = next(i for i in p.items if i.name == "  KV cache")
        per_token = kv_item.gib / max(1, p.kv_tokens)
        spare_kv = (p.kv_tokens - p.min_kv_tokens) * per_token
        if over > 0 and spare_kv > over:
            out.append(f"lower unsloth.vllm_gib to {math.floor((uc.vllm_gib - over) * 10) / 10} "
                       f"(the KV cache gives up {over:.1f} GiB)")
        elif over > 0:
            if not config.training.gradient_checkpointing:
                out.append("set training.gradient_checkpointing=true")
            if not uc.fp8_kv_cache:
                out.append("set unsloth.fp8_kv_cache=true (half the KV cache per token)")
            out.append(f"lower training.max_seq_len below {train_tokens} (longer samples are skipped)")
            if not uc.load_in_4bit and not (p.weights and p.weights.fp8):
                out.append("set unsloth.weights=fp8 (~8.5 GiB instead of 15; on an L4 the workers make the FP8 "
                           "copy themselves)")
                out.append("set unsloth.load_in_4bit=true (weights ~5.5 GiB instead of 15)")
        if p.kv_tokens < p.min_kv_tokens:
            out.append(f"raise unsloth.vllm_gib: the KV cache holds {p.kv_tokens} tokens, the longest prompt and "
                       f"answer need {p.min_kv_tokens}" + ("" if uc.fp8_kv_cache else "; or unsloth.fp8_kv_cache=true"))
        if p.weights and p.weights.problem:
            out.append(p.weights.problem)
        if config.run.tasks_per_worker > 1 and p.kv_tokens < p.kv_needed_tokens // 2:
            out.append(f"the KV cache holds {p.kv_tokens} of the {p.kv_needed_tokens} tokens that "
                       f"{config.run.tasks_per_worker} tasks' epochs would use at once: vLLM queues the rest "
                       "(no OOM, less throughput); fewer run.tasks_per_worker frees LoRA slots")
    elif over > 0:
        if p.backend == "vllm":
            out.append("model.backend='unsloth' shares one copy of the weights (two copies do not fit this card)")
        out.append("fewer run.tasks_per_worker (each adapter with its moments lives on the GPU)")
        out.append("a smaller model.max_batch_tokens (KV cache) or training.max_seq_len")
    return out


def format_plan(p: MemoryPlan) -> str:
    lines = [f"memory plan per worker: backend={p.backend}, card={p.card} ({p.usable_gib:.1f} GiB usable)"
             + (f"; {p.weights.describe()}" if p.weights else ""),
             f"  {'component':44s} {'GiB':>6s}  where  note"]
    for i in p.items:
        lines.append(f"  {i.name:44s} {i.gib:6.2f}  {i.where:5s}  {i.note}")
    lines.append(f"  {'total on the GPU':44s} {p.gpu_gib:6.2f}  (+{HEADROOM_GIB} headroom, of {p.usable_gib:.1f})")
    lines.append(f"  KV cache: {p.kv_tokens} tokens; one longest prompt + answer needs {p.min_kv_tokens}; "
                 f"every task in flight's epoch at once: {p.kv_needed_tokens}")
    lines.append("verdict: fits" if p.fits else "verdict: DOES NOT FIT")
    lines += [f"  change: {a}" for a in p.advice]
    return "\n".join(lines)
