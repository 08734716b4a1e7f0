"""The transformers + peft backend: one model in memory, many named LoRA adapters, HF's `generate`.

The model, its adapters and their training are `arc25.backends.peft_loras.PeftLoras` (shared with
the vLLM backend); this module samples from it. Requests are submitted and a `step` generates every
request submitted so far as one batch: rows of different adapters share a forward pass through
peft's `adapter_names`, rows are grouped by sampling settings and cut into chunks of at most
`max_batch_tokens` (prompt + new) tokens. `generate` is `generate_by_steps`: submit all, one step.

That is also how the scheduler batches HF (issue 20: one mode, no more one `generate` per round with a
`gather_s` wait): a step runs what is pending; a request submitted during it waits for the next step.
No wait-for-more rule: on the CPU (bench/bench_epochs.py, tiny model, 4 tasks x 16 predictions, K = 2)
k = 1 / 2 epochs took 28.4 / 33.8 s against 37.5 / 34.4 s with the 3 s gather.
"""

from __future__ import annotations

import logging
import time
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
from transformers import GenerationConfig, StoppingCriteria

from arc25.backends.base import (Completion, Completions, GenerationRequest, SamplingParams, TrainSample, TrainStats,
                                 PendingRequests, PromptTooLong, generate_by_steps)
from arc25.backends.peft_loras import PeftLoras
from arc25.config import Config, LoraConfig, ModelConfig, TrainingConfig

log = logging.getLogger(__name__)


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


class HFBackend:
    """Backend protocol on transformers + peft, CPU or CUDA, stepped (see the module docstring).

    `max_batch_tokens` bounds generation memory: a step's rows are generated in chunks of at
    most this many (prompt + new) tokens, i.e. KV-cache entries.
    """

    trains_concurrently = False

    def __init__(self, model_config: ModelConfig, lora_config: LoraConfig, training_config: TrainingConfig,
                 seed: int = 0, max_batch_tokens: int = 65536, prompt_cache_size: int = 512) -> None:
        self.loras = PeftLoras(model_config, lora_config, training_config, seed=seed,
                               prompt_cache_size=prompt_cache_size)
        self.timings = self.loras.timings
        self.max_batch_tokens = max_batch_tokens
        # peft mixes adapters within one generate call through `adapter_names` (a row's LoRA is
        # applied to that row only), so any number of adapters can share a call
        self.max_adapters_per_call = 1 << 30
        self._pending = PendingRequests()  # submitted, generated at the next step

    # --- adapters and training: the model's --------------------------------------------------------

    def create_adapter(self, name: str) -> None:
        self.loras.create_adapter(name)

    def reset_adapter(self, name: str) -> None:
        self.loras.reset_adapter(name)

    def drop_adapter(self, name: str) -> None:
        self.loras.drop_adapter(name)

    def adapter_version(self, name: str) -> int:
        return self.loras.adapter_version(name)

    def adapter_names(self) -> list[str]:
        return list(self.loras.adapters)

    def export_adapter(self, name: str) -> dict[str, torch.Tensor]:
        return self.loras.export_adapter(name)

    def import_adapter(self, name: str, tensors: dict[str, torch.Tensor]) -> None:
        self.loras.import_adapter(name, tensors)

    def train(self, adapter: str, samples: list[TrainSample], deadline: float | None = None) -> TrainStats:
        return self.loras.train(adapter, samples, deadline)

    # --- generation: requests submitted, a step generates them all ------------------------------

    def generate(self, requests: list[GenerationRequest]) -> Completions:
        return generate_by_steps(self, requests)

    def submit(self, key: int, request: GenerationRequest) -> None:
        if request.adapter is not None:
            self.loras.adapters[request.adapter]  # KeyError now for an unknown adapter
        self._check_room(request)
        self._pending.add(key, request)

    @property
    def max_model_len(self) -> int:
        """The model's context (prompt + answer): its `max_position_embeddings`."""
        return int(self.loras.base.config.max_position_embeddings)

    def _check_room(self, request: GenerationRequest) -> None:
        """PromptTooLong for a request with a prompt that leaves no room for an answer in the model's context
        (the vLLM driver's rule; HF would otherwise sample past the positions the model knows, without a word)."""
        limit = self.max_model_len
        for p, messages in enumerate(request.prompts):
            n = len(self.loras.prompt_ids(messages))
            if n >= limit:
                raise PromptTooLong(f"prompt {p} of the request has {n} tokens: no room for an answer "
                                    f"in the model's max_model_len of {limit} (max_position_embeddings)")

    def abort(self, key: int) -> None:
        self._pending.abort(key)

    def running(self) -> int:
        return self._pending.running()

    def step(self) -> list[tuple[int, list[list[Completion]]]]:
        """Every submitted request's rows, batched across requests (and adapters) by sampling settings.

        HF has one random stream per batch, so a group is seeded from the seeds of the requests in
        it: a request alone reproduces exactly, a mix reproduces for the same mix.
        """
        pending = self._pending.take()
        if not pending:
            return []
        keys, requests = list(pending), list(pending.values())
        with self.timings.measure("generate"):
            out: Completions = [[[] for _ in r.prompts] for r in requests]
            groups: dict[tuple, list[_Row]] = {}
            for i, request in enumerate(requests):
                p = request.params
                key = (p.temperature, p.top_p, p.max_tokens)
                for j, messages in enumerate(request.prompts):
                    ids = self.loras.prompt_ids(messages)
                    groups.setdefault(key, []).extend(
                        _Row(i, j, ids, request.adapter, request.deadline) for _ in range(p.n))
            device = self.loras.device
            for rows in groups.values():
                params = requests[rows[0].request].params
                config = self._generation_config(params)
                seed = _chunk_seed([requests[i].params.seed for i in sorted({r.request for r in rows})])
                cuda = [device] if device.type == "cuda" else []
                with torch.inference_mode(), torch.random.fork_rng(devices=cuda):
                    torch.manual_seed(seed)
                    for chunk in self._chunks(rows, params.max_tokens):
                        live = [r for r in chunk if r.deadline is None or time.time() < r.deadline]
                        if live:
                            for row, completion in zip(live, self._generate_chunk(live, config)):
                                out[row.request][row.prompt].append(completion)
            return list(zip(keys, out))

    def _generation_config(self, params: SamplingParams) -> GenerationConfig:
        tok = self.loras.tokenizer
        common = dict(max_new_tokens=params.max_tokens, eos_token_id=self.loras.stop_ids,
                      pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id)
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
            with self.loras.using(adapters[0]) as model:
                yield model, {}
            return
        for name in distinct - {None}:
            self.loras.adapters[name]
        # peft reads the active adapter's config even for a mixed batch: it must be a live one
        self.loras.activate(next(a for a in adapters if a is not None))
        names = [BASE_ROW if a is None else a for a in adapters]
        yield self.loras.peft, {"adapter_names": names}

    def _generate_chunk(self, rows: list[_Row], config: GenerationConfig) -> list[Completion]:
        pad, device = self.loras.tokenizer.pad_token_id, self.loras.device
        width = max(len(r.ids) for r in rows)
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):  # left padding: every row's answer starts at column `width`
            input_ids[i, width - len(row.ids) :] = torch.tensor(row.ids)
            attention_mask[i, width - len(row.ids) :] = 1
        deadlines = _DeadlineStop([r.deadline for r in rows], width)
        with self._model_for([r.adapter for r in rows]) as (model, extra):
            out = model.generate(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                                 generation_config=config, stopping_criteria=[deadlines], **extra)
        new = out[:, width:].tolist()
        return [self._completion(row, tokens, deadlines.cut_at[i], config.max_new_tokens)
                for i, (row, tokens) in enumerate(zip(rows, new))]

    def _completion(self, row: _Row, tokens: list[int], cut_at: int | None, max_new: int) -> Completion:
        """Text and finish reason of one generated row (finished rows are padded after their stop token)."""
        stops = [k for k, t in enumerate(tokens) if t in self.loras.ids.stop]
        if stops and (cut_at is None or stops[0] < cut_at):
            n, reason = stops[0] + 1, "stop"
        elif cut_at is not None and cut_at < max_new:
            n, reason = cut_at, "deadline"
        else:
            n, reason = len(tokens), "length"
        text = self.loras.tokenizer.decode(tokens[:n], skip_special_tokens=True)
        return Completion(text, reason, prompt_tokens=len(row.ids), completion_tokens=n)

    def close(self) -> None:
        self._pending.clear()
        self.loras.close()


def from_config(config: Config) -> HFBackend:
    return HFBackend(config.model, config.lora, config.training, seed=config.seed,
                     max_batch_tokens=config.model.max_batch_tokens)
