"""Stand-ins for the two things of the unsloth backend that need CUDA: unsloth's loader and the vLLM engine
inside it. Everything between them is the real code: the backend, `arc25.backends.vllm_driver` and
`arc25.backends.vllm_compat.Engine` (which tests/test_vllm_backend.py runs on vLLM's real CPU engine).

- `tiny_loader` returns what `FastLanguageModel.get_peft_model` returns, a peft model with one LoRA
  adapter named "default", built by plain transformers + peft on the tiny model;
- `StandInLLMEngine` answers the calls `vllm_compat.Engine` makes of vLLM's `LLMEngine` (add_request,
  step, abort_request, has_unfinished_requests, remove_lora, model_config.max_model_len) from its own
  copy of the tiny model: one token per running request per step, each request with its own KV cache
  (so deadlines and aborts cut mid-answer), greedy or sampled from the request's own seed, under the
  LoRA tensors the request hands over, cached by `lora_int_id` as vLLM caches them (a reused id would
  serve the old weights here too);
- `TensorLoRARequest` is unsloth_zoo's `LoRARequest`, which accepts `lora_tensors` and replaces
  vLLM's class when unsloth loads: `tensor_lora_requests` puts it in place for one test.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from peft import LoraConfig as PeftLoraConfig
from peft import get_peft_model, set_peft_model_state_dict
from transformers import AutoModelForCausalLM, AutoTokenizer

from arc25.backends.unsloth import SLOT, Loaded, UnslothBackend
from arc25.backends.vllm_compat import Engine
from arc25.config import Config


def peft_config(config: Config) -> PeftLoraConfig:
    lc = config.lora
    return PeftLoraConfig(r=lc.rank, lora_alpha=lc.alpha, use_rslora=lc.use_rslora,
                          target_modules=list(lc.target_modules), lora_dropout=0.0, bias="none", task_type="CAUSAL_LM")


class TensorLoRARequest:
    """unsloth_zoo's LoRARequest: the adapter's weights in memory instead of a folder."""

    def __init__(self, lora_name: str, lora_int_id: int, lora_path: str = "", *, lora_tensors=None,
                 lora_config=None) -> None:
        self.lora_name, self.lora_int_id, self.lora_path = lora_name, lora_int_id, lora_path
        self.lora_tensors, self.lora_config = lora_tensors, lora_config


@pytest.fixture
def tensor_lora_requests(monkeypatch):
    import vllm.lora.request

    monkeypatch.setattr(vllm.lora.request, "LoRARequest", TensorLoRARequest)


class _Running:
    def __init__(self, prompt: list[int], params, lora) -> None:
        self.prompt, self.params, self.lora = prompt, params, lora
        self.tokens: list[int] = []
        self.text = ""
        self.generator = torch.Generator().manual_seed(params.seed)
        self.cache = None  # HF's KV cache of this request (under its own adapter)


class StandInLLMEngine:
    """vLLM's LLMEngine as `vllm_compat.Engine` drives it, decoding with HF (see the module docstring)."""

    def __init__(self, path, config: Config, max_model_len: int) -> None:
        base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        self.model = get_peft_model(base, peft_config(config), adapter_name="unused").eval()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model_config = SimpleNamespace(max_model_len=max_model_len)
        self.running: dict[str, _Running] = {}
        self.loaded: set[int] = set()  # lora_int_ids whose weights are loaded (never reloaded: vLLM's cache)
        self.served: list[tuple[str | None, int]] = []  # (lora_name, lora_int_id) of every request added

    def add_request(self, request_id, prompt, params, lora_request=None) -> None:
        assert params.n == 1 and request_id not in self.running
        ids = list(prompt["prompt_token_ids"])
        if len(ids) > self.model_config.max_model_len:
            raise ValueError("prompt longer than max_model_len")  # what vLLM's processor does
        if lora_request is not None:
            self._load(lora_request)
        self.served.append((None, 0) if lora_request is None else (lora_request.lora_name, lora_request.lora_int_id))
        self.running[request_id] = _Running(ids, params, lora_request)

    def _load(self, lora: TensorLoRARequest) -> None:
        name = f"l{lora.lora_int_id}"
        if lora.lora_int_id in self.loaded:
            return
        self.model.add_adapter(name, peft_config_from(lora.lora_config))
        result = set_peft_model_state_dict(self.model, {k: v.float() for k, v in lora.lora_tensors.items()},
                                           adapter_name=name)
        assert not [k for k in result.missing_keys if f".{name}." in k]
        self.loaded.add(lora.lora_int_id)

    def remove_lora(self, lora_id: int) -> bool:
        if lora_id in self.loaded:
            self.model.set_adapter("unused")  # not the one deleted (peft warns)
            self.model.delete_adapter(f"l{lora_id}")
            self.loaded.discard(lora_id)
        return True

    def has_unfinished_requests(self) -> bool:
        return bool(self.running)

    def abort_request(self, request_ids) -> None:
        for rid in request_ids:
            self.running.pop(rid, None)

    def step(self) -> list[SimpleNamespace]:
        outs = []
        for rid, r in list(self.running.items()):
            token = self._next_token(r)
            r.tokens.append(token)
            stop = token in r.params.stop_token_ids
            text = self.tokenizer.decode([t for t in r.tokens if t not in r.params.stop_token_ids],
                                         skip_special_tokens=True)
            delta, r.text = text[len(r.text):], text
            full = len(r.tokens) >= r.params.max_tokens or len(r.prompt) + len(r.tokens) >= self.model_config.max_model_len
            reason = "stop" if stop else "length" if full else None
            outs.append(SimpleNamespace(request_id=rid, finished=reason is not None, outputs=[
                SimpleNamespace(text=delta, token_ids=[token], finish_reason=reason)]))
            if reason is not None:
                del self.running[rid]
        return outs

    @torch.no_grad()
    def _next_token(self, r: _Running) -> int:
        ids = torch.tensor([r.tokens[-1:] if r.cache is not None else r.prompt])  # the request's own KV cache
        if r.lora is None:
            with self.model.disable_adapter():
                out = self.model(input_ids=ids, past_key_values=r.cache, use_cache=True)
        else:
            self.model.set_adapter(f"l{r.lora.lora_int_id}")
            out = self.model(input_ids=ids, past_key_values=r.cache, use_cache=True)
        r.cache, logits = out.past_key_values, out.logits[0, -1]
        if r.params.temperature <= 0:
            return int(logits.argmax())
        probs = torch.softmax(logits / r.params.temperature, dim=-1)
        ordered, index = probs.sort(descending=True)
        keep = ordered.cumsum(0) - ordered < r.params.top_p  # the smallest head of mass >= top_p
        ordered = ordered * keep
        return int(index[torch.multinomial(ordered / ordered.sum(), 1, generator=r.generator)])


def peft_config_from(config: dict) -> PeftLoraConfig:
    """peft's config from adapter_config.json's content, as the backend hands it over."""
    keys = ("r", "lora_alpha", "use_rslora", "target_modules", "bias")
    return PeftLoraConfig(**{k: config[k] for k in keys}, lora_dropout=0.0, task_type="CAUSAL_LM")


def tiny_loader(path, max_model_len: int = 4096):
    """`load_with_unsloth`'s stand-in: the slot model and unsloth's engine (as on a GPU: no zero-adapter slot)."""

    def load(config: Config, max_loras: int) -> Loaded:
        tokenizer = AutoTokenizer.from_pretrained(path)
        base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            model = get_peft_model(base, peft_config(config), adapter_name=SLOT)
        llm = SimpleNamespace(llm_engine=StandInLLMEngine(path, config, max_model_len))
        return Loaded(model, tokenizer, Engine(llm, max_loras=max_loras, base_needs_zero_lora=False))

    return load


def standin_backend(path, tasks: int = 3, **training) -> UnslothBackend:
    """The unsloth backend on the tiny model through the stand-ins; `tasks` adapters per engine call."""
    config = Config()
    config.model.path, config.model.backend = str(path), "unsloth"
    config.training.learning_rate, config.training.warmup_steps = 3e-3, 0
    for key, value in training.items():
        setattr(config.training, key, value)
    config.run.tasks_per_worker = tasks
    return UnslothBackend(config, loader=tiny_loader(path))
