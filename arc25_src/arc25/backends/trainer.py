"""The LoRA training loop every backend that trains uses (`hf`, `vllm` through its peft copy, `unsloth`).

One pass of optimizer steps over a task's samples, kept cheap because a task trains many short
epochs: samples are tokenized once per call (prompt ids cached by `arc25.prompts.PromptIds`),
no HF Trainer start-up, AdamW per adapter (created at the first step after create/reset/import),
linear warm-up then a constant learning rate, gradient clipping, and no new step after the
deadline. The loss is on answer tokens and the final <|eot_id|> only, and the LM head runs only at
positions whose next token is labelled: full logits would be T x 128256 floats per sequence
(4 GiB in fp32 at 8k tokens). With `head_chunk` (the unsloth backend) the head runs HEAD_CHUNK
positions at a time, each chunk recomputed in the backward: a 1024-token answer's fp32 logits and
their grad are 1 GiB at once, the difference between fitting an L4 and not.

The backend says where the adapter's weights are (`TrainState.params`), makes them the active
adapter (`activate`) and gives the module to put in train mode; this object does the rest.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from arc25.backends.base import Timings, TrainSample, TrainStats
from arc25.config import TrainingConfig

log = logging.getLogger(__name__)

IGNORE = -100  # label of positions without loss (cross_entropy's ignore_index)
HEAD_CHUNK = 128  # labelled positions per LM-head chunk where the head is chunked (arc25.memory_plan plans it)


@dataclass(kw_only=True)
class TrainState:
    """One adapter's training state; backends extend it with where the adapter's weights wait."""

    params: list[torch.nn.Parameter]  # the weights the optimizer steps (the adapter's, or the slot's)
    optimizer: torch.optim.Optimizer | None = None  # created at the first train call after create/reset/import
    steps: int = 0  # optimizer steps since create/reset/import (drives warm-up)
    version: int = 0  # set by AdapterTable: a new number at every change


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


def _chunk_loss_sum(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(F.linear(hidden, weight).float(), targets, reduction="sum")


def chunked_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                          chunk: int = HEAD_CHUNK) -> torch.Tensor:
    """Mean cross-entropy of `hidden @ weight.T` against `targets`, `chunk` rows at a time (checkpointed)."""
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, hidden.shape[0], chunk):
        part = slice(start, start + chunk)
        total = total + checkpoint(_chunk_loss_sum, hidden[part], weight, targets[part], use_reentrant=False)
    return total / max(1, hidden.shape[0])


Encoder = Callable[[TrainSample], tuple[list[int], list[int]]]


class LoraTrainer:
    """The training loop on one causal LM (`lm`: its decoder and LM head, with LoRA layers inside)."""

    def __init__(self, config: TrainingConfig, lm: torch.nn.Module, encode: Encoder, pad_id: int,
                 device: torch.device, timings: Timings, head_chunk: int | None = None) -> None:
        self.config, self.lm, self.encode, self.pad_id = config, lm, encode, pad_id
        self.device, self.timings, self.head_chunk = device, timings, head_chunk

    def train(self, name: str, state: TrainState, samples: list[TrainSample], deadline: float | None,
              model: torch.nn.Module, activate: Callable[[], None]) -> TrainStats:
        """One pass over `samples` (see the module docstring); `activate` makes `state.params` the adapter
        the model runs, `model` is put in train mode for the steps and back in eval mode after."""
        start = time.perf_counter()
        with self.timings.measure("train"):
            with self.timings.measure("train_prep"):
                batches = self.prepare_batches(samples)
            with self.timings.measure("train_setup"):
                activate()
                if state.optimizer is None:
                    state.optimizer = self.new_optimizer(state.params)
                model.train()
            losses, trained, tokens = [], set(), 0
            try:
                for batch in batches:
                    if deadline is not None and time.time() >= deadline:
                        log.info("adapter %s: deadline reached after %d of %d steps", name, len(losses), len(batches))
                        break
                    losses.append(self.step(state, batch))
                    trained.update(batch.samples)
                    tokens += batch.n_tokens
            finally:
                model.eval()
            mean_loss = float(torch.stack(losses).mean()) if losses else float("nan")
        return TrainStats(steps=len(losses), tokens=tokens, mean_loss=mean_loss, seconds=time.perf_counter() - start,
                          trained=sorted(trained))

    def prepare_batches(self, samples: list[TrainSample]) -> list[TrainBatch]:
        """Tokenize once; skip (and log) samples longer than max_seq_len.

        Skipped rather than truncated: cutting the prompt's left end would remove BOS,
        system message and the first examples, a prompt the model never sees at inference.
        """
        limit = self.config.max_seq_len
        encoded = [(i, *self.encode(sample)) for i, sample in enumerate(samples)]
        too_long = [len(ids) for _, ids, _ in encoded if len(ids) > limit]
        if too_long:
            log.warning("%d of %d training samples skipped: %s tokens > training.max_seq_len=%d", len(too_long),
                        len(encoded), ", ".join(map(str, too_long)), limit)
            encoded = [row for row in encoded if len(row[1]) <= limit]
        size = max(1, self.config.batch_size)
        batches = []
        for k in range(0, len(encoded), size):
            part = encoded[k : k + size]
            batch = collate([(ids, labels) for _, ids, labels in part], self.pad_id, self.device)
            batch.samples = [i for i, _, _ in part]
            batches.append(batch)
        return batches * max(1, self.config.passes_per_epoch)

    def new_optimizer(self, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        tc = self.config
        fused = self.device.type == "cuda"  # one kernel for all LoRA tensors
        return torch.optim.AdamW(params, lr=tc.learning_rate, weight_decay=tc.weight_decay, fused=fused)

    def learning_rate(self, step: int) -> float:
        """Linear warm-up over warmup_steps, then constant."""
        tc = self.config
        if step < tc.warmup_steps:
            return tc.learning_rate * (step + 1) / (tc.warmup_steps + 1)
        return tc.learning_rate

    def step(self, state: TrainState, batch: TrainBatch) -> torch.Tensor:
        for group in state.optimizer.param_groups:
            group["lr"] = self.learning_rate(state.steps)
        loss = self.loss(batch)
        loss.backward()
        if self.config.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(state.params, self.config.max_grad_norm)
        state.optimizer.step()
        state.optimizer.zero_grad(set_to_none=True)
        state.steps += 1
        return loss.detach()

    def loss(self, batch: TrainBatch) -> torch.Tensor:
        """Mean next-token loss over labelled positions, the LM head applied to those only (in chunks
        of `head_chunk` where set); the decoder body runs on all tokens with the active LoRA."""
        decoder = self.lm.get_decoder()  # LlamaModel inside peft's wrappers, LoRA layers active
        hidden = decoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                         use_cache=False).last_hidden_state
        selected = hidden[:, :-1][batch.target_mask]  # positions whose next token is labelled
        head = self.lm.get_output_embeddings()
        if self.head_chunk:
            return chunked_cross_entropy(selected, head.weight, batch.targets, self.head_chunk)
        return F.cross_entropy(head(selected).float(), batch.targets)
