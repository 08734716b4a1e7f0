"""The transformers + peft backend: one model in memory, many named LoRA adapters.

Built for a loop that alternates sampling and short fine-tunes of a per-task LoRA,
so every per-epoch cost is kept small:

- the model is loaded and wrapped with peft once; adapters are added and dropped by
  name, and `reset_adapter` copies a snapshot of the initial weights back in place
  (no reload, no new PeftModel) and forgets the optimizer state;
- training is a plain loop (no HF Trainer start-up): samples are tokenized once per
  call (prompt ids cached across calls), and logits are computed only at the
  positions whose next token is labelled, never over the whole 128k vocabulary for
  every prompt token.

Prompts are tokenized with `arc25.prompts.tokenize_prompt` (template text, then no
added special tokens: exactly one BOS) in both generation and training.
"""

from __future__ import annotations

import itertools
import logging
import time
import warnings
import zlib
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, StoppingCriteria

from arc25.backends.base import (Completion, Completions, GenerationRequest, SamplingParams, Timings,
                                 TrainSample, TrainStats)
from arc25.config import Config, LoraConfig, ModelConfig, TrainingConfig
from arc25.errors import UserError
from arc25.prompts import Messages, tokenize_prompt

log = logging.getLogger(__name__)

IGNORE = -100  # label of positions without loss (cross_entropy's ignore_index)
PAD_TOKEN = "<|finetune_right_pad_id|>"  # training pad: never <|eot_id|>, which must stay labelled
EOT_TOKEN = "<|eot_id|>"
STOP_TOKENS = ("<|eot_id|>", "<|end_of_text|>", "<|eom_id|>")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16,
                "float32": torch.float32, "fp32": torch.float32}[name]
    except KeyError:
        raise UserError(f"model.dtype={name!r}: expected auto, bfloat16, float16 or float32") from None


def _enable_checkpointing(model: torch.nn.Module) -> None:
    """Activation checkpointing of every decoder layer (active in train mode only).

    Non-reentrant, so no input-embedding grads are needed (peft still hooks them on; harmless).
    transformers 5 renamed gradient_checkpointing_enable (now a deprecated alias).
    """
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def adapter_seed(seed: int, name: str) -> int:
    """A stable per-adapter seed (Python's hash() is salted per process)."""
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % (2**63)


# ---------------------------------------------------------------------------------------------
# Training batches


@dataclass
class TrainBatch:
    input_ids: torch.Tensor  # [B, T], right-padded with <|finetune_right_pad_id|>
    attention_mask: torch.Tensor  # [B, T]
    labels: torch.Tensor  # [B, T], IGNORE on prompt and padding
    target_mask: torch.Tensor  # [B, T-1], True where position t predicts a labelled token t+1
    targets: torch.Tensor  # [N] the labelled next tokens, in target_mask order
    samples: list[int] = field(default_factory=list)  # indices of the samples in this batch

    @property
    def n_tokens(self) -> int:
        return int(self.attention_mask.sum())


def encode_sample(prompt_ids: list[int], answer_ids: list[int], eot_id: int) -> tuple[list[int], list[int]]:
    """Input ids and labels: prompt masked, answer tokens and the final <|eot_id|> labelled."""
    answer = [*answer_ids, eot_id]
    return [*prompt_ids, *answer], [IGNORE] * len(prompt_ids) + answer


def collate(encoded: list[tuple[list[int], list[int]]], pad_id: int, device: torch.device) -> TrainBatch:
    """Right-pad a batch of (ids, labels); padding carries no label."""
    width = max(len(ids) for ids, _ in encoded)
    input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    labels = torch.full((len(encoded), width), IGNORE, dtype=torch.long)
    attention_mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, (ids, labs) in enumerate(encoded):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(labs)] = torch.tensor(labs)
        attention_mask[row, : len(ids)] = 1
    next_labels = labels[:, 1:]
    target_mask = next_labels != IGNORE
    return TrainBatch(input_ids.to(device), attention_mask.to(device), labels.to(device), target_mask.to(device),
                      next_labels[target_mask].to(device))


# ---------------------------------------------------------------------------------------------
# Generation rows

BASE_ROW = "__base__"  # peft's adapter name for rows that use the base model in a mixed batch


@dataclass
class _Row:
    request: int
    prompt: int
    ids: list[int]
    adapter: str | None
    deadline: float | None


def _chunk_seed(seeds: list[int]) -> int:
    if len(seeds) == 1:
        return seeds[0]
    return zlib.crc32(",".join(map(str, seeds)).encode())


class _DeadlineStop(StoppingCriteria):
    """Ends each row at its own deadline and remembers how many tokens it had by then."""

    def __init__(self, deadlines: list[float | None], prompt_width: int) -> None:
        self.deadlines = deadlines
        self.prompt_width = prompt_width
        self.cut_at: list[int | None] = [None] * len(deadlines)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        now = time.time()
        generated = input_ids.shape[1] - self.prompt_width
        done = []
        for i, deadline in enumerate(self.deadlines):
            if self.cut_at[i] is None and deadline is not None and now >= deadline:
                self.cut_at[i] = generated
            done.append(self.cut_at[i] is not None)
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


# ---------------------------------------------------------------------------------------------
# The backend


@dataclass
class AdapterState:
    params: list[torch.nn.Parameter]  # this adapter's LoRA weights, in a fixed order
    initial: list[torch.Tensor]  # their values at creation, for reset
    optimizer: torch.optim.Optimizer | None = None  # created at the first train call after create/reset
    steps: int = 0  # optimizer steps since create/reset (drives warmup)
    version: int = 0  # a new number at every create, train, reset and import (unique across adapters)


class HFBackend:
    """Backend protocol on transformers + peft, CPU or CUDA.

    `max_batch_tokens` bounds generation memory: prompts are generated in chunks of at
    most this many (prompt + new) tokens, i.e. KV-cache entries.
    """

    def __init__(self, model_config: ModelConfig, lora_config: LoraConfig, training_config: TrainingConfig,
                 seed: int = 0, max_batch_tokens: int = 65536, prompt_cache_size: int = 512) -> None:
        self.model_config, self.lora_config, self.training_config = model_config, lora_config, training_config
        self.seed = seed
        self.max_batch_tokens = max_batch_tokens
        self.timings = Timings()
        self.adapters: dict[str, AdapterState] = {}
        self.peft: PeftModel | None = None  # wrapped at the first create_adapter, then kept
        self._prompt_cache: OrderedDict[tuple, list[int]] = OrderedDict()
        self._prompt_cache_size = prompt_cache_size
        self._versions = itertools.count(1)
        # peft mixes adapters within one generate call through `adapter_names` (a row's LoRA is
        # applied to that row only), so any number of adapters can share a call
        self.max_adapters_per_call = 1 << 30
        with self.timings.measure("load"):
            self._load()

    def _load(self) -> None:
        path = Path(self.model_config.path)
        if not (path / "config.json").is_file():
            raise UserError(f"model.path={str(path)!r}: not a model folder (no config.json)")
        self.device = resolve_device(self.model_config.device)
        self.dtype = resolve_dtype(self.model_config.dtype, self.device)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=self.dtype,
                                                     attn_implementation=self.model_config.attn_implementation)
        model.to(self.device).eval().requires_grad_(False)
        tok = self.tokenizer
        self.pad_id = tok.convert_tokens_to_ids(PAD_TOKEN)
        self.eot_id = tok.convert_tokens_to_ids(EOT_TOKEN)
        self.stop_ids = [tok.convert_tokens_to_ids(t) for t in STOP_TOKENS]
        # The release's generation_config carries sampling defaults (temperature 0.6, top_p 0.9) that
        # would silently fill any setting we leave out; keep only the token ids.
        model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=self.stop_ids,
                                                   pad_token_id=tok.pad_token_id)
        if self.training_config.gradient_checkpointing:
            _enable_checkpointing(model)
        self.base = model  # peft injects LoRA layers into this very object
        log.info("loaded %s on %s (%s)", path, self.device, self.dtype)

    # --- adapters ------------------------------------------------------------------------------

    def _peft_config(self) -> PeftLoraConfig:
        lc = self.lora_config
        return PeftLoraConfig(r=lc.rank, lora_alpha=lc.alpha, lora_dropout=lc.dropout, use_rslora=lc.use_rslora,
                              use_dora=False, target_modules=list(lc.target_modules), bias="none",
                              task_type="CAUSAL_LM")

    def create_adapter(self, name: str) -> None:
        if name in self.adapters:
            raise ValueError(f"adapter {name!r} already exists")
        if not name or "." in name or name in "lora_":
            # a torch module key, and peft mistakes names inside its "lora_" prefix when loading
            raise ValueError(f"adapter name {name!r}: must be non-empty, without dots, not part of 'lora_'")
        with self.timings.measure("create"):
            cuda = [self.device] if self.device.type == "cuda" else []
            # Seed the LoRA init without disturbing anyone else's random stream.
            with torch.random.fork_rng(devices=cuda):
                torch.manual_seed(adapter_seed(self.seed, name))
                if self.peft is None:
                    self.peft = get_peft_model(self.base, self._peft_config(), adapter_name=name)
                else:
                    self.peft.add_adapter(name, self._peft_config())
            self.peft.eval()  # a new PeftModel is in training mode; peft then refuses mixed-adapter batches
            params = [p for n, p in self.peft.named_parameters() if "lora_" in n and f".{name}." in n]
            for p in params:
                if p.dtype != torch.float32:  # fp32 adapter weights under a bf16 model: AdamW needs the precision
                    p.data = p.data.float()
            self.adapters[name] = AdapterState(params, [p.detach().clone() for p in params],
                                               version=next(self._versions))
            log.debug("adapter %s created (%d tensors)", name, len(params))

    def reset_adapter(self, name: str) -> None:
        with self.timings.measure("reset"):
            state = self._state(name)
            with torch.no_grad():
                for p, init in zip(state.params, state.initial):
                    p.copy_(init)
                    p.grad = None
            state.optimizer, state.steps = None, 0
            state.version = next(self._versions)

    def adapter_version(self, name: str) -> int:
        return self._state(name).version

    def export_adapter(self, name: str) -> dict[str, torch.Tensor]:
        self._state(name)
        tensors = get_peft_model_state_dict(self.peft, adapter_name=name)
        return {key: t.detach().to("cpu", copy=True).contiguous() for key, t in tensors.items()}

    def import_adapter(self, name: str, tensors: dict[str, torch.Tensor]) -> None:
        state = self._state(name)
        result = set_peft_model_state_dict(self.peft, tensors, adapter_name=name)
        missing = [k for k in getattr(result, "missing_keys", []) if "lora_" in k and f".{name}." in k]
        if missing:
            raise ValueError(f"adapter {name!r}: imported weights lack {len(missing)} tensors, e.g. {missing[0]}")
        state.optimizer, state.steps = None, 0  # moments of other weights would mislead the next steps
        state.version = next(self._versions)

    def drop_adapter(self, name: str) -> None:
        if self.adapters.pop(name, None) is not None:
            with warnings.catch_warnings():
                # "Adapter X was active which is now deleted": expected, we select adapters per call.
                warnings.filterwarnings("ignore", message=".*was active which is now deleted", category=UserWarning)
                self.peft.delete_adapter(name)

    def _state(self, name: str) -> AdapterState:
        try:
            return self.adapters[name]
        except KeyError:
            raise KeyError(f"no adapter {name!r}") from None

    def _activate(self, name: str) -> None:
        self._state(name)
        if self.peft.active_adapter != name:
            self.peft.set_adapter(name)

    @contextmanager
    def using(self, adapter: str | None) -> Iterator[torch.nn.Module]:
        """The model to call with `adapter` active, or with adapters off for None."""
        if adapter is not None:
            self._activate(adapter)
            yield self.peft
        elif self.peft is not None and self.adapters:
            with self.peft.disable_adapter():
                yield self.peft
        else:  # no adapter exists: LoRA layers (if any) have nothing active
            yield self.base

    # --- tokenization --------------------------------------------------------------------------

    def prompt_ids(self, messages: Messages) -> list[int]:
        """Chat-template ids (one BOS), cached: a task's prompts recur across epochs."""
        key = tuple((m["role"], m["content"]) for m in messages)
        ids = self._prompt_cache.get(key)
        if ids is None:
            ids = tokenize_prompt(self.tokenizer, messages)
            self._prompt_cache[key] = ids
            if len(self._prompt_cache) > self._prompt_cache_size:
                self._prompt_cache.popitem(last=False)
        else:
            self._prompt_cache.move_to_end(key)
        return ids

    def encode(self, sample: TrainSample) -> tuple[list[int], list[int]]:
        answer_ids = self.tokenizer(sample.answer, add_special_tokens=False)["input_ids"]
        return encode_sample(self.prompt_ids(sample.messages), answer_ids, self.eot_id)

    # --- generation ----------------------------------------------------------------------------

    def generate(self, requests: list[GenerationRequest]) -> Completions:
        """All requests' rows, batched across requests (and adapters) by sampling settings.

        Rows of different adapters share a forward pass through peft's `adapter_names`.
        HF has one random stream per call, so a chunk is seeded from the seeds of the
        requests in it: a request alone reproduces exactly, a mix reproduces for the same mix.
        """
        with self.timings.measure("generate"):
            out: Completions = [[[] for _ in r.prompts] for r in requests]
            groups: dict[tuple, list[_Row]] = {}
            for i, request in enumerate(requests):
                p = request.params
                key = (p.temperature, p.top_p, p.max_tokens)
                for j, messages in enumerate(request.prompts):
                    ids = self.prompt_ids(messages)
                    groups.setdefault(key, []).extend(
                        _Row(i, j, ids, request.adapter, request.deadline) for _ in range(p.n))
            for rows in groups.values():
                params = requests[rows[0].request].params
                config = self._generation_config(params)
                seed = _chunk_seed([requests[i].params.seed for i in sorted({r.request for r in rows})])
                cuda = [self.device] if self.device.type == "cuda" else []
                with torch.inference_mode(), torch.random.fork_rng(devices=cuda):
                    torch.manual_seed(seed)
                    for chunk in self._chunks(rows, params.max_tokens):
                        live = [r for r in chunk if r.deadline is None or time.time() < r.deadline]
                        if live:
                            for row, completion in zip(live, self._generate_chunk(live, config)):
                                out[row.request][row.prompt].append(completion)
            return out

    def _generation_config(self, params: SamplingParams) -> GenerationConfig:
        common = dict(max_new_tokens=params.max_tokens, eos_token_id=self.stop_ids,
                      pad_token_id=self.tokenizer.pad_token_id, bos_token_id=self.tokenizer.bos_token_id)
        if params.temperature <= 0:
            return GenerationConfig(do_sample=False, **common)
        # top_k=0: transformers otherwise applies its default top_k=50, which vLLM does not.
        return GenerationConfig(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=0,
                                **common)

    def _chunks(self, rows: list[_Row], max_new: int) -> Iterator[list[_Row]]:
        """Consecutive rows whose padded (prompt + new tokens) size fits max_batch_tokens."""
        chunk: list[_Row] = []
        width = 0
        for row in rows:
            new_width = max(width, len(row.ids))
            if chunk and (len(chunk) + 1) * (new_width + max_new) > self.max_batch_tokens:
                yield chunk
                chunk, new_width = [], len(row.ids)
            chunk.append(row)
            width = new_width
        if chunk:
            yield chunk

    @contextmanager
    def _model_for(self, adapters: list[str | None]) -> Iterator[tuple[torch.nn.Module, dict]]:
        """The model and generate() kwargs for rows with these adapters (one each)."""
        distinct = set(adapters)
        if len(distinct) == 1:
            with self.using(adapters[0]) as model:
                yield model, {}
            return
        for name in distinct - {None}:
            self._state(name)
        # peft reads the active adapter's config even for a mixed batch: it must be a live one
        self._activate(next(a for a in adapters if a is not None))
        names = [BASE_ROW if a is None else a for a in adapters]
        yield self.peft, {"adapter_names": names}

    def _generate_chunk(self, rows: list[_Row], config: GenerationConfig) -> list[Completion]:
        width = max(len(r.ids) for r in rows)
        input_ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):  # left padding: every row's answer starts at column `width`
            input_ids[i, width - len(row.ids) :] = torch.tensor(row.ids)
            attention_mask[i, width - len(row.ids) :] = 1
        deadlines = _DeadlineStop([r.deadline for r in rows], width)
        with self._model_for([r.adapter for r in rows]) as (model, extra):
            out = model.generate(input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device),
                                 generation_config=config, stopping_criteria=[deadlines], **extra)
        new = out[:, width:].tolist()
        return [self._completion(row, tokens, deadlines.cut_at[i], config.max_new_tokens)
                for i, (row, tokens) in enumerate(zip(rows, new))]

    def _completion(self, row: _Row, tokens: list[int], cut_at: int | None, max_new: int) -> Completion:
        """Text and finish reason of one generated row (finished rows are padded after their stop token)."""
        stops = [k for k, t in enumerate(tokens) if t in self.stop_ids]
        if stops and (cut_at is None or stops[0] < cut_at):
            n, reason = stops[0] + 1, "stop"
        elif cut_at is not None and cut_at < max_new:
            n, reason = cut_at, "deadline"
        else:
            n, reason = len(tokens), "length"
        text = self.tokenizer.decode(tokens[:n], skip_special_tokens=True)
        return Completion(text, reason, prompt_tokens=len(row.ids), completion_tokens=n)

    # --- training ------------------------------------------------------------------------------

    def train(self, adapter: str, samples: list[TrainSample], deadline: float | None = None) -> TrainStats:
        start = time.perf_counter()
        with self.timings.measure("train"):
            state = self._state(adapter)
            with self.timings.measure("train_prep"):
                batches = self._prepare_batches(samples)
            with self.timings.measure("train_setup"):
                self._activate(adapter)
                if state.optimizer is None:
                    state.optimizer = self._new_optimizer(state.params)
                self.peft.train()
            losses, trained, tokens = [], set(), 0
            try:
                for batch in batches:
                    if deadline is not None and time.time() >= deadline:
                        log.info("adapter %s: deadline reached after %d of %d steps", adapter, len(losses),
                                 len(batches))
                        break
                    losses.append(self._train_step(state, batch))
                    trained.update(batch.samples)
                    tokens += batch.n_tokens
            finally:
                self.peft.eval()
                if losses:
                    state.version = next(self._versions)
            mean_loss = float(torch.stack(losses).mean()) if losses else float("nan")
        return TrainStats(steps=len(losses), tokens=tokens, mean_loss=mean_loss, seconds=time.perf_counter() - start,
                          trained=sorted(trained))

    def _prepare_batches(self, samples: list[TrainSample]) -> list[TrainBatch]:
        """Tokenize once; skip (and log) samples longer than max_seq_len.

        Skipped rather than truncated: cutting the prompt's left end would remove BOS,
        system message and the first examples, a prompt the model never sees at inference.
        """
        limit = self.training_config.max_seq_len
        encoded = [(i, *self.encode(sample)) for i, sample in enumerate(samples)]
        too_long = [len(ids) for _, ids, _ in encoded if len(ids) > limit]
        if too_long:
            log.warning("%d of %d training samples skipped: %s tokens > training.max_seq_len=%d", len(too_long),
                        len(encoded), ", ".join(map(str, too_long)), limit)
            encoded = [row for row in encoded if len(row[1]) <= limit]
        size = max(1, self.training_config.batch_size)
        batches = []
        for k in range(0, len(encoded), size):
            part = encoded[k : k + size]
            batch = collate([(ids, labels) for _, ids, labels in part], self.pad_id, self.device)
            batch.samples = [i for i, _, _ in part]
            batches.append(batch)
        return batches * max(1, self.training_config.passes_per_epoch)

    def _new_optimizer(self, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        tc = self.training_config
        fused = self.device.type == "cuda"  # one kernel for all LoRA tensors
        return torch.optim.AdamW(params, lr=tc.learning_rate, weight_decay=tc.weight_decay, fused=fused)

    def _learning_rate(self, step: int) -> float:
        """Linear warmup over warmup_steps, then constant."""
        tc = self.training_config
        if step < tc.warmup_steps:
            return tc.learning_rate * (step + 1) / (tc.warmup_steps + 1)
        return tc.learning_rate

    def _train_step(self, state: AdapterState, batch: TrainBatch) -> torch.Tensor:
        for group in state.optimizer.param_groups:
            group["lr"] = self._learning_rate(state.steps)
        loss = self.loss(batch)
        loss.backward()
        if self.training_config.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(state.params, self.training_config.max_grad_norm)
        state.optimizer.step()
        state.optimizer.zero_grad(set_to_none=True)
        state.steps += 1
        return loss.detach()

    def loss(self, batch: TrainBatch) -> torch.Tensor:
        """Mean next-token loss over labelled positions, with the LM head applied to those only.

        Full logits would be T x 128256 floats per sequence (4 GiB in fp32 at 8k tokens);
        the decoder body runs on all tokens, the head only where there is a label.
        """
        decoder = self.base.get_decoder()  # LlamaModel inside peft's wrappers, LoRA layers active
        hidden = decoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                         use_cache=False).last_hidden_state
        selected = hidden[:, :-1][batch.target_mask]  # positions whose next token is labelled
        logits = self.base.get_output_embeddings()(selected).float()
        return F.cross_entropy(logits, batch.targets)

    def close(self) -> None:
        self.adapters.clear()
        self.peft = None
        self.base = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def from_config(config: Config) -> HFBackend:
    return HFBackend(config.model, config.lora, config.training, seed=config.seed,
                     max_batch_tokens=config.model.max_batch_tokens)
