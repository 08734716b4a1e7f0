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

Generation is `arc25.backends.vllm_driver` (the loop, its deadlines, seeds, finish reasons,
context guard and admission rule, shared with the unsloth backend); this module only hands
adapter versions over as folders. Prompts are token ids from `arc25.prompts.tokenize_prompt`,
exactly as the HF backend and training see them. Every call into vLLM is in `vllm_compat`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import weakref
from pathlib import Path

import torch
from safetensors.torch import save_file

from arc25.backends.base import Completion, Completions, GenerationRequest, TrainSample, TrainStats
from arc25.backends.peft_loras import PeftLoras, resolve_device, resolve_dtype
from arc25.backends.vllm_compat import LoraHandle, start_engine
from arc25.backends.vllm_driver import VLLMDriver
from arc25.config import Config, LoraConfig, ModelConfig, TrainingConfig, VllmConfig

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
        self.engine = start_engine(model_config.path, dtype=_DTYPE_NAMES[self.dtype], seed=seed,
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
        self.driver = VLLMDriver(self.engine, self, self.trainer.prompt_ids, self.stop_ids, self.timings)

    # --- adapters: the trainer's, each version handed to vLLM when first used ------------------------

    def create_adapter(self, name: str) -> None:
        self.trainer.create_adapter(name)

    def reset_adapter(self, name: str) -> None:
        self.trainer.reset_adapter(name)

    def drop_adapter(self, name: str) -> None:
        self.trainer.drop_adapter(name)
        self.driver.forget(name)

    def adapter_version(self, name: str) -> int:
        return self.trainer.adapter_version(name)

    def export_adapter(self, name: str) -> dict[str, torch.Tensor]:
        return self.trainer.export_adapter(name)

    def import_adapter(self, name: str, tensors: dict[str, torch.Tensor]) -> None:
        self.trainer.import_adapter(name, tensors)

    def train(self, adapter: str, samples: list[TrainSample], deadline: float | None = None) -> TrainStats:
        return self.trainer.train(adapter, samples, deadline=deadline)

    # --- handing versions to vLLM (the driver's `Handover`): a peft folder per version --------------

    def adapter_names(self) -> list[str]:
        return list(self.trainer.adapters)

    def lora_handle(self, adapter: str, label: str, lora_id: int, zero: bool = False) -> LoraHandle:
        with self.timings.measure("lora_write"):
            tensors = self.trainer.export_adapter(adapter)
            if zero:
                tensors = {k: torch.zeros_like(t) for k, t in tensors.items()}
            folder = self.lora_dir / f"{lora_id:06d}{'-zero' if zero else ''}"
            write_peft_adapter(folder, tensors, peft_adapter_config(self.lora_config, self.model_path), self.dtype)
        return LoraHandle(label, lora_id, str(folder))

    def release_handle(self, handle: LoraHandle) -> None:
        shutil.rmtree(handle.path, ignore_errors=True)

    # --- generation: the driver's stepped interface ------------------------------------------------

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
            self.driver.close()
            self.engine.close()
            self.engine = None
        self.trainer.close()
        self._cleanup()


def from_config(config: Config) -> VLLMBackend:
    return VLLMBackend(config.model, config.lora, config.training, config.vllm, seed=config.seed,
                       max_batch_tokens=config.model.max_batch_tokens)
