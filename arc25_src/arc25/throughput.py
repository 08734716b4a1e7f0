"""What a card would decode, predicted: a memory-bandwidth roofline, and its check against a measured run.

Decoding is memory-bound. Each decoding step reads every weight once and, for every sequence running,
the KV cache of its context, and makes one token per running sequence:

    step_s   = max((weight bytes + sequences x context tokens x KV bytes per token) / bandwidth,
                   sequences x FLOPs per token / peak FLOP/s)              (compute cap)
    tokens/s = sequences / step_s

Each sequence reads its own context, also where 8 completions share a prompt's cached blocks: vLLM's
paged attention reads a shared block once per sequence (its cascade attention applies only to a prefix
common to the whole batch, never to several tasks' prompts), and a 4k-token prompt's KV (256 MiB at
fp8) is far over an L4's 48 MB L2. How many sequences run is set by the KV cache: a prompt is cached
once (prefix caching) and each of its n completions adds its answer, on average half of it at a time.

Predictions per task add each prompt's prefill at the compute peak (a prompt per n completions) and
leave out the learn steps (they run on a thread beside decoding; on an H200 they cost nothing
measurable, docs/benchmarks.md; on an L4, 8x less compute, they are printed apart).

The roofline is an upper bound: it counts no per-step overhead (vLLM's scheduler and sampler, kernel
launches), which a fast card's short steps feel most. `check` measures that overhead on a run: predicted
tokens/s at the card's own bandwidth against the measured figure, and the step time the roofline misses.
"""

from __future__ import annotations

from dataclasses import dataclass

from arc25.memory_plan import ModelShape

GB = 1e9


@dataclass(frozen=True)
class Card:
    name: str
    bandwidth_gb_s: float  # memory bandwidth, GB/s
    bf16_tflops: float  # dense bf16 tensor-core peak
    fp8_tflops: float  # dense FP8 peak (Ada and Hopper: twice bf16)


# Datasheet figures (dense, no sparsity)
L4 = Card("NVIDIA L4", 300.0, 121.0, 242.0)
H100 = Card("NVIDIA H100 SXM", 3350.0, 989.0, 1979.0)
H200 = Card("NVIDIA H200", 4800.0, 989.0, 1979.0)
CARDS = {"l4": L4, "h100": H100, "h200": H200}


def card_for(name: str) -> Card | None:
    """The datasheet figures for a GPU named like torch or nvidia-smi names it (None: unknown card)."""
    lowered = name.lower()
    return next((card for key, card in CARDS.items() if key in lowered.split() or card.name.lower() in lowered),
                None)


@dataclass(frozen=True)
class DecodeLoad:
    """What one decoding step of a worker's engine reads and computes."""

    weight_bytes: float
    sequences: float  # running at once
    context_tokens: float  # per running sequence: its prompt + the part of its answer written so far
    kv_bytes_per_token: float
    flops_per_token: float
    fp8_weights: bool = False  # FP8 matrix units: twice the compute peak


def step_seconds(card: Card, load: DecodeLoad) -> float:
    """One decoding step on `card`: the bytes it reads over the bandwidth, capped below by its compute."""
    memory = (load.weight_bytes + load.sequences * load.context_tokens * load.kv_bytes_per_token) / (
        card.bandwidth_gb_s * GB)
    peak = (card.fp8_tflops if load.fp8_weights else card.bf16_tflops) * 1e12
    return max(memory, load.sequences * load.flops_per_token / peak)


def decode_tokens_per_s(card: Card, load: DecodeLoad) -> float:
    """Tokens per second: one per running sequence per step."""
    return load.sequences / step_seconds(card, load)


def flops_per_token(shape: ModelShape, context_tokens: float) -> float:
    """Matmuls (2 per parameter) and attention over the context (QK and PV: 4 x layers x heads x head_dim)."""
    return 2 * shape.params + 4 * shape.layers * shape.heads * shape.head_dim * context_tokens


def sequences_running(kv_tokens: int, prompt_tokens: float, answer_tokens: float, n_per_prompt: int,
                      max_sequences: int) -> float:
    """Sequences the KV cache holds at once: prompts cached once, each completion half its answer on average."""
    group = prompt_tokens + n_per_prompt * answer_tokens / 2
    return float(min(max_sequences, n_per_prompt * kv_tokens / group))


@dataclass(frozen=True)
class Budget:
    """The run to predict for: the Kaggle defaults are 240 tasks in 12 h on 4 cards."""

    tasks: int = 240
    hours: float = 12.0
    cards: int = 4
    overhead_s: float = 20 * 60.0  # run.reserve_s: the merge and the notebook's start, not spent decoding


def predictions_per_task(card: Card, load: DecodeLoad, shape: ModelShape, prompt_tokens: float,
                         answer_tokens: float, n_per_prompt: int, budget: Budget = Budget()) -> float:
    """Completions of `answer_tokens` each task gets: decoding at the roofline rate, plus each prompt's
    prefill (once per n completions) at the compute peak; learn steps left out (see the module doc)."""
    peak = (card.fp8_tflops if load.fp8_weights else card.bf16_tflops) * 1e12
    prefill_s = prompt_tokens * flops_per_token(shape, prompt_tokens / 2) / peak / n_per_prompt
    per_prediction_s = answer_tokens / decode_tokens_per_s(card, load) + prefill_s
    seconds_per_task = (budget.hours * 3600 - budget.overhead_s) * budget.cards / budget.tasks
    return seconds_per_task / per_prediction_s


def learn_step_seconds(card: Card, shape: ModelShape, tokens: int, fp8_weights: bool = False) -> float:
    """One learn step at the compute peak: forward + backward ~6 FLOPs per parameter per token, plus the
    recomputed forward of gradient checkpointing (8 in all). The LoRA's own FLOPs are negligible."""
    peak = (card.fp8_tflops if fp8_weights else card.bf16_tflops) * 1e12
    return 8 * shape.params * tokens / peak


@dataclass(frozen=True)
class Measured:
    """A measured run's decoding (a worker's engine summary: arc25.scheduler.EngineLog.summary)."""

    tokens_per_s: float
    sequences: float  # mean running per step
    prompt_tokens: float  # mean per completion
    completion_tokens: float  # mean per completion


@dataclass(frozen=True)
class Check:
    card: Card
    predicted_tokens_per_s: float
    measured_tokens_per_s: float
    roofline_step_s: float
    measured_step_s: float

    @property
    def ratio(self) -> float:
        """measured / predicted: the share of the roofline the run reached."""
        return self.measured_tokens_per_s / self.predicted_tokens_per_s

    @property
    def overhead_s(self) -> float:
        """Step time the roofline does not count (scheduler, sampler, launches, bandwidth not reached)."""
        return self.measured_step_s - self.roofline_step_s


def measured_load(measured: Measured, shape: ModelShape, weights: float, kv_bytes_per_token: float,
                  fp8_weights: bool) -> DecodeLoad:
    """The decoding load of a measured run: its sequences, each with its prompt and half its answer."""
    context = measured.prompt_tokens + measured.completion_tokens / 2
    return DecodeLoad(weights, measured.sequences, context, kv_bytes_per_token, flops_per_token(shape, context),
                      fp8_weights)


def check(card: Card, measured: Measured, load: DecodeLoad) -> Check:
    """The roofline at `card`'s own figures against what the run on that card measured."""
    steps_per_s = measured.tokens_per_s / max(1e-9, load.sequences)
    return Check(card, decode_tokens_per_s(card, load), measured.tokens_per_s, step_seconds(card, load),
                 1 / max(1e-9, steps_per_s))


FORMULA = ("prediction (memory-bandwidth roofline): step_s = max((weight bytes + sequences x context x KV bytes "
           "per token) / bandwidth, sequences x FLOPs per token / peak); tokens/s = sequences / step_s")
