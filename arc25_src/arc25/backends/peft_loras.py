"""One transformers model in memory with many named peft LoRA adapters: what `hf` and `vllm` share.

The `hf` backend samples from this model; the `vllm` backend trains here and hands each adapter
version to vLLM. Every per-epoch cost is kept small: the model is loaded and wrapped with peft
once; adapters are added and dropped by name, and `reset_adapter` copies a snapshot of the
initial weights back in place (no reload, no new PeftModel) and forgets the optimizer state.
Training is `arc25.backends.trainer.LoraTrainer`.

Prompts are tokenized with `arc25.prompts.tokenize_prompt` (template text, then no added special
tokens: exactly one BOS) in both generation and training.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from arc25.backends.adapters import AdapterTable, adapter_seed
from arc25.backends.base import Timings, TrainSample, TrainStats
from arc25.backends.trainer import LoraTrainer, TrainBatch, TrainState, encode_sample
from arc25.config import LoraConfig, ModelConfig, TrainingConfig
from arc25.errors import UserError
from arc25.prompts import PromptIds, SpecialIds

log = logging.getLogger(__name__)


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


def peft_lora_config(lc: LoraConfig) -> PeftLoraConfig:
    return PeftLoraConfig(r=lc.rank, lora_alpha=lc.alpha, lora_dropout=lc.dropout, use_rslora=lc.use_rslora,
                          use_dora=False, target_modules=list(lc.target_modules), bias="none", task_type="CAUSAL_LM")


@dataclass(kw_only=True)
class AdapterState(TrainState):
    initial: list[torch.Tensor]  # the weights' values at creation, for reset


class PeftLoras:
    """The model, its tokenizer and its named LoRA adapters (create/reset/export/import/drop/train)."""

    def __init__(self, model_config: ModelConfig, lora_config: LoraConfig, training_config: TrainingConfig,
                 seed: int = 0, timings: Timings | None = None, prompt_cache_size: int = 512) -> None:
        self.model_config, self.lora_config, self.training_config = model_config, lora_config, training_config
        self.seed = seed
        self.timings = timings or Timings()
        self.adapters: AdapterTable[AdapterState] = AdapterTable()
        self.peft: PeftModel | None = None  # wrapped at the first create_adapter, then kept
        with self.timings.measure("load"):
            self._load(prompt_cache_size)
        self.trainer = LoraTrainer(training_config, self.base, self.encode, self.ids.pad, self.device, self.timings)

    def _load(self, prompt_cache_size: int) -> None:
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
        self.ids = SpecialIds.of(tok)
        self.prompt_ids = PromptIds(tok, prompt_cache_size)
        # The release's generation_config carries sampling defaults (temperature 0.6, top_p 0.9) that
        # would silently fill any setting we leave out; keep only the token ids.
        model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=list(self.ids.stop),
                                                   pad_token_id=tok.pad_token_id)
        if self.training_config.gradient_checkpointing:
            _enable_checkpointing(model)
        self.base = model  # peft injects LoRA layers into this very object
        log.info("loaded %s on %s (%s)", path, self.device, self.dtype)

    @property
    def stop_ids(self) -> list[int]:
        return list(self.ids.stop)

    def encode(self, sample: TrainSample) -> tuple[list[int], list[int]]:
        return encode_sample(self.prompt_ids(sample.messages), self.prompt_ids.answer(sample.answer), self.ids.eot)

    # --- adapters ------------------------------------------------------------------------------

    def create_adapter(self, name: str) -> None:
        self.adapters.check_new(name)
        with self.timings.measure("create"):
            cuda = [self.device] if self.device.type == "cuda" else []
            # Seed the LoRA init without disturbing anyone else's random stream.
            with torch.random.fork_rng(devices=cuda):
                torch.manual_seed(adapter_seed(self.seed, name))
                if self.peft is None:
                    self.peft = get_peft_model(self.base, peft_lora_config(self.lora_config), adapter_name=name)
                else:
                    self.peft.add_adapter(name, peft_lora_config(self.lora_config))
            self.peft.eval()  # a new PeftModel is in training mode; peft then refuses mixed-adapter batches
            params = [p for n, p in self.peft.named_parameters() if "lora_" in n and f".{name}." in n]
            for p in params:
                if p.dtype != torch.float32:  # fp32 adapter weights under a bf16 model: AdamW needs the precision
                    p.data = p.data.float()
            self.adapters.add(name, AdapterState(params=params, initial=[p.detach().clone() for p in params]))
            log.debug("adapter %s created (%d tensors)", name, len(params))

    def reset_adapter(self, name: str) -> None:
        with self.timings.measure("reset"):
            state = self.adapters[name]
            with torch.no_grad():
                for p, init in zip(state.params, state.initial):
                    p.copy_(init)
                    p.grad = None
            self.adapters.forget_training(state)

    def adapter_version(self, name: str) -> int:
        return self.adapters[name].version

    def export_adapter(self, name: str) -> dict[str, torch.Tensor]:
        self.adapters[name]
        tensors = get_peft_model_state_dict(self.peft, adapter_name=name)
        return {key: t.detach().to("cpu", copy=True).contiguous() for key, t in tensors.items()}

    def import_adapter(self, name: str, tensors: dict[str, torch.Tensor]) -> None:
        state = self.adapters[name]
        result = set_peft_model_state_dict(self.peft, tensors, adapter_name=name)
        missing = [k for k in getattr(result, "missing_keys", []) if "lora_" in k and f".{name}." in k]
        if missing:
            raise ValueError(f"adapter {name!r}: imported weights lack {len(missing)} tensors, e.g. {missing[0]}")
        self.adapters.forget_training(state)

    def drop_adapter(self, name: str) -> None:
        if self.adapters.pop(name) is not None:
            with warnings.catch_warnings():
                # "Adapter X was active which is now deleted": expected, we select adapters per call.
                warnings.filterwarnings("ignore", message=".*was active which is now deleted", category=UserWarning)
                self.peft.delete_adapter(name)

    def activate(self, name: str) -> None:
        self.adapters[name]
        if self.peft.active_adapter != name:
            self.peft.set_adapter(name)

    @contextmanager
    def using(self, adapter: str | None) -> Iterator[torch.nn.Module]:
        """The model to call with `adapter` active, or with adapters off for None."""
        if adapter is not None:
            self.activate(adapter)
            yield self.peft
        elif self.peft is not None and self.adapters:
            with self.peft.disable_adapter():
                yield self.peft
        else:  # no adapter exists: LoRA layers (if any) have nothing active
            yield self.base

    # --- training ------------------------------------------------------------------------------

    def train(self, adapter: str, samples: list[TrainSample], deadline: float | None = None) -> TrainStats:
        with self.adapters.training(self.adapters[adapter]) as state:
            return self.trainer.train(adapter, state, samples, deadline, self.peft, lambda: self.activate(adapter))

    def loss(self, batch: TrainBatch) -> torch.Tensor:
        return self.trainer.loss(batch)

    def close(self) -> None:
        self.adapters.clear()
        self.peft = None
        self.base = None
        self.trainer = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

