"""The unsloth backend's CPU-testable parts, on the tiny model with the real transformers + peft classes.

unsloth and its vLLM engine need CUDA, so two stand-ins replace them here (and only them):
- `tiny_loader` returns what `FastLanguageModel.get_peft_model` returns, a peft model with one LoRA
  adapter named "default", built by plain transformers + peft on the tiny model;
- `HFEngine` serves the tensors the backend hands over (as vLLM does with `LoRARequest(lora_tensors=...)`)
  from its own copy of the model, greedy decoding through HF.
Everything else is the real backend: swapping tasks through the one training slot, the project's
training loop, versions, reset, export/import, hand-over and the request/row bookkeeping.
The GPU path (unsloth + vLLM sharing the 8B weights) runs in bench/gpu_unsloth_vllm.py on a GPU.
"""

from __future__ import annotations

import time

import pytest

torch = pytest.importorskip("torch")

from peft import LoraConfig as PeftLoraConfig  # noqa: E402
from peft import get_peft_model, set_peft_model_state_dict  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from arc25.backends import load_backend  # noqa: E402
from arc25.backends.base import GenerationRequest, SamplingParams, TrainSample  # noqa: E402
from arc25.backends.unsloth import (  # noqa: E402
    SLOT,
    EngineOutput,
    EngineRow,
    Loaded,
    UnslothBackend,
    fp8_problem,
    load_with_unsloth,
    unsloth_utilization,
)
from arc25.config import Config  # noqa: E402
from arc25.errors import UserError  # noqa: E402

SYSTEM = "You are a world-class puzzle solver."
CODE = "from common import *\n\ndef transform(input_grid):\n    return np.flipud(input_grid)"


def messages(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]


def peft_config(config: Config, **extra) -> PeftLoraConfig:
    lc = config.lora
    return PeftLoraConfig(r=lc.rank, lora_alpha=lc.alpha, use_rslora=lc.use_rslora, target_modules=list(lc.target_modules),
                          lora_dropout=0.0, bias="none", task_type="CAUSAL_LM", **extra)


class HFEngine:
    """Stand-in for vLLM: its own copy of the weights, serving handed-over LoRA tensors by request."""

    def __init__(self, path, config: Config, max_loras: int, stop_ids: list[int]) -> None:
        base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        self.model = get_peft_model(base, peft_config(config), adapter_name="serve").eval()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.max_loras, self.stop_ids = max_loras, stop_ids
        self.served: list[tuple[str, int]] = []  # (adapter, version) per row, as the engine saw them
        self.queued: dict[str, EngineRow] = {}
        self.ids = iter(range(1 << 30))

    # vLLM's rows join a running batch; here a step runs every queued row to its end
    def add(self, row: EngineRow) -> str:
        rid = f"row{next(self.ids)}"
        self.queued[rid] = row
        return rid

    def step(self) -> list[tuple[str, list[EngineOutput]]]:
        rows, self.queued = self.queued, {}
        return list(zip(rows, self.run(list(rows.values()))))

    def abort(self, row_ids: list[str]) -> None:
        for rid in row_ids:
            self.queued.pop(rid, None)

    def unfinished(self) -> int:
        return len(self.queued)

    def run(self, rows: list[EngineRow]) -> list[list[EngineOutput]]:
        out = []
        for row in rows:
            if row.deadline is not None and time.time() >= row.deadline:
                out.append([])  # not started before its deadline
                continue
            ids = torch.tensor([row.prompt_ids])
            with torch.no_grad():
                if row.lora is None:
                    self.served.append((None, 0))
                    with self.model.disable_adapter():
                        gen = self.model.generate(input_ids=ids, max_new_tokens=row.params.max_tokens, do_sample=False,
                                                  eos_token_id=self.stop_ids, pad_token_id=self.stop_ids[0])
                else:
                    self.served.append((row.lora.name, row.lora.version))
                    tensors = {k: v.float() for k, v in row.lora.tensors.items()}
                    result = set_peft_model_state_dict(self.model, tensors, adapter_name="serve")
                    assert not [k for k in result.missing_keys if ".serve." in k]
                    gen = self.model.generate(input_ids=ids, max_new_tokens=row.params.max_tokens, do_sample=False,
                                              eos_token_id=self.stop_ids, pad_token_id=self.stop_ids[0])
            new = gen[0, len(row.prompt_ids):].tolist()
            stopped = bool(new) and new[-1] in self.stop_ids
            tokens = new[:-1] if stopped else new
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            out.append([EngineOutput(tokens, text, "stop" if stopped else "length")] * row.params.n)
        return out


def tiny_loader(path):
    def load(config: Config, max_loras: int) -> Loaded:
        tokenizer = AutoTokenizer.from_pretrained(path)
        base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            model = get_peft_model(base, peft_config(config), adapter_name=SLOT)
        stop_ids = [tokenizer.convert_tokens_to_ids(t) for t in ("<|eot_id|>", "<|end_of_text|>", "<|eom_id|>")]
        return Loaded(model, tokenizer, HFEngine(path, config, max_loras, stop_ids))

    return load


@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    config = Config()
    config.model.path, config.model.backend = str(tiny_model_dir), "unsloth"
    config.training.learning_rate, config.training.warmup_steps = 3e-3, 0
    config.run.tasks_per_worker = 3
    b = UnslothBackend(config, loader=tiny_loader(tiny_model_dir))
    yield b
    b.close()


def sample(text: str = "Flip it.") -> TrainSample:
    return TrainSample(messages(text), f"```python\n{CODE}\n```")


def weights(b: UnslothBackend, name: str) -> dict[str, torch.Tensor]:
    return b.export_adapter(name)


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_one_slot_peft_names_and_init(backend):
    backend.create_adapter("init_a")
    backend.create_adapter("init_b")
    try:
        a = weights(backend, "init_a")
        keys = list(a)
        assert keys and all(k.startswith("base_model.model.") and (".lora_A.weight" in k or ".lora_B.weight" in k)
                            for k in keys)
        assert all(".default." not in k for k in keys)
        assert all(torch.count_nonzero(v) == 0 for k, v in a.items() if ".lora_B." in k)
        assert not same(a, weights(backend, "init_b"))  # each task its own A
        backend.drop_adapter("init_a")
        backend.create_adapter("init_a")
        assert same(a, weights(backend, "init_a"))  # same seed and name: same initial weights
    finally:
        backend.drop_adapter("init_a")
        backend.drop_adapter("init_b")


def test_swapping_tasks_through_the_slot_keeps_each_tasks_weights_and_moments(backend):
    """Task a trained twice with task b trained in between ends where a trained twice alone does."""
    for name in ("alone", "mixed", "other"):
        backend.create_adapter(name)
    try:
        backend.import_adapter("mixed", weights(backend, "alone"))  # the same start
        backend.train("alone", [sample()])
        backend.train("alone", [sample()])
        backend.train("mixed", [sample()])
        backend.train("other", [sample("Something else entirely.")])
        assert backend.owner == "other"
        assert backend.adapters["mixed"].optimizer.state  # its moments wait outside the slot
        backend.train("mixed", [sample()])
        alone, mixed = weights(backend, "alone"), weights(backend, "mixed")
        assert alone.keys() == mixed.keys()
        assert all(torch.allclose(alone[k], mixed[k], atol=1e-6) for k in alone)
        assert not same(mixed, weights(backend, "other"))
    finally:
        for name in ("alone", "mixed", "other"):
            backend.drop_adapter(name)


def test_versions_reset_in_place_and_import(backend):
    backend.create_adapter("ver")
    backend.create_adapter("ver_copy")
    try:
        initial, v0 = weights(backend, "ver"), backend.adapter_version("ver")
        stats = backend.train("ver", [sample()])
        assert stats.steps == 1 and stats.trained == [0]
        v1 = backend.adapter_version("ver")
        trained = weights(backend, "ver")
        assert v1 > v0 and not same(initial, trained)
        backend.import_adapter("ver_copy", trained)
        assert same(weights(backend, "ver_copy"), trained)
        model = backend.peft
        backend.reset_adapter("ver")
        assert backend.adapter_version("ver") > v1
        assert same(weights(backend, "ver"), initial)
        assert backend.adapters["ver"].optimizer is None and backend.adapters["ver"].steps == 0
        assert backend.peft is model  # in place: no reload, no new peft model
        with pytest.raises(ValueError, match="lack"):
            backend.import_adapter("ver_copy", {k: v for k, v in list(trained.items())[1:]})
    finally:
        backend.drop_adapter("ver")
        backend.drop_adapter("ver_copy")


def test_the_engine_serves_the_trained_version_under_a_fresh_id(backend):
    """Overfit a task's adapter; the engine (its own weights) reproduces the program from the handed tensors;
    after a reset the engine is handed the new version, not the cached old one."""
    prompt = messages("Flip the grid upside down.")
    target = f"```python\n{CODE}\n```"
    backend.create_adapter("serve_me")
    try:
        for _ in range(40):
            stats = backend.train("serve_me", [TrainSample(prompt, target)])
            if stats.mean_loss < 0.01:
                break
        greedy = SamplingParams(n=2, temperature=0.0, max_tokens=60)
        out = backend.generate([GenerationRequest([prompt], greedy, adapter="serve_me"),
                                GenerationRequest([prompt], greedy, adapter=None)])
        first = backend.engine.served[-2]
        assert first == ("serve_me", backend.adapter_version("serve_me"))
        trained, base = out[0][0], out[1][0]
        assert len(trained) == 2 and trained[0].text.strip() == target.strip()
        assert trained[0].finish_reason == "stop"
        assert trained[0].prompt_tokens == len(backend.prompt_ids(prompt)) and trained[0].completion_tokens > 0
        assert base[0].text.strip() != target.strip()
        handed = backend.handover("serve_me")
        assert backend.handover("serve_me") is handed  # made once per version
        assert all(t.dtype == torch.bfloat16 for t in handed.tensors.values())
        assert handed.config["use_rslora"] is True and handed.config["r"] == backend.lora_config.rank
        backend.reset_adapter("serve_me")
        backend.generate([GenerationRequest([prompt], greedy, adapter="serve_me")])
        assert backend.engine.served[-1][1] == backend.adapter_version("serve_me") != first[1]
    finally:
        backend.drop_adapter("serve_me")


def test_generate_keeps_request_order_and_the_engines_adapter_limit(backend):
    names = ["lim0", "lim1", "lim2", "lim3"]
    for name in names:
        backend.create_adapter(name)
    try:
        assert backend.max_adapters_per_call == 3
        p = SamplingParams(n=1, temperature=0.0, max_tokens=3)
        with pytest.raises(ValueError, match="4 adapters"):
            backend.generate([GenerationRequest([messages(n)], p, adapter=n) for n in names])
        out = backend.generate([GenerationRequest([messages("a"), messages("bb")], p, adapter="lim0"),
                                GenerationRequest([messages("c")], p, adapter=None, deadline=time.time() - 1),
                                GenerationRequest([messages("d")], p, adapter="lim1")])
        assert [len(r) for r in out] == [2, 1, 1]
        assert out[1][0] == []  # past its deadline: no completions, no error
        assert out[0][1][0].prompt_tokens == len(backend.prompt_ids(messages("bb")))
        assert backend.generate([]) == []
    finally:
        for name in names:
            backend.drop_adapter(name)


def test_streaming_submits_steps_and_aborts_like_generate(backend):
    # the stand-in engine ends every queued row in one step; vLLM's rows end over many (tests/test_streaming.py)
    backend.create_adapter("flow")
    try:
        p = SamplingParams(n=2, temperature=0.0, max_tokens=3)
        requests = [GenerationRequest([messages("a"), messages("bb")], p, adapter="flow"),
                    GenerationRequest([messages("c")], p, adapter=None)]
        blocking = backend.generate(requests)
        backend.submit(7, requests[0])
        backend.submit(8, requests[1])
        backend.submit(9, GenerationRequest([messages("gone")], p))
        backend.abort(9)
        assert backend.running() == 6  # 3 prompts x n=2
        with pytest.raises(RuntimeError, match="in flight"):
            backend.generate(requests)
        answers = dict(backend.step())
        assert sorted(answers) == [7, 8] and backend.running() == 0 and backend.step() == []
        assert [[c.text for c in cs] for cs in answers[7]] == [[c.text for c in cs] for cs in blocking[0]]
        assert [[c.text for c in cs] for cs in answers[8]] == [[c.text for c in cs] for cs in blocking[1]]
        assert backend.engine.served[-1] == (None, 0) and backend.engine.served[-2][0] == "flow"
    finally:
        backend.drop_adapter("flow")


def test_training_on_a_thread_swaps_under_the_slot_lock(backend):
    # the engine thread exports one task's weights while the training thread swaps another through the slot
    import threading

    backend.create_adapter("lock_a")
    backend.create_adapter("lock_b")
    try:
        backend.train("lock_a", [sample()])
        expected = weights(backend, "lock_a")
        stop, seen = threading.Event(), []

        def export_loop():
            while not stop.is_set():
                seen.append(backend.export_adapter("lock_a"))

        reader = threading.Thread(target=export_loop)
        reader.start()
        for _ in range(3):
            backend.train("lock_b", [sample("Other.")])  # swaps lock_a out of the slot and back in below
            backend._activate("lock_a")
        stop.set()
        reader.join()
        assert len(seen) > 1 and all(same(w, expected) for w in seen)
    finally:
        backend.drop_adapter("lock_a")
        backend.drop_adapter("lock_b")


def test_the_real_loader_needs_cuda_and_says_so():
    """load_with_unsloth is the GPU path (bench/gpu_unsloth_vllm.py); on a CPU it refuses in one line."""
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: bench/gpu_unsloth_vllm.py covers the real loader")
    config = Config()
    config.model.backend = "unsloth"
    with pytest.raises(UserError, match="needs a CUDA GPU"):
        load_with_unsloth(config, 2)
    with pytest.raises(UserError, match="needs a CUDA GPU"):
        load_backend(config)


def test_importing_the_backend_loads_nothing_that_unsloth_must_precede():
    """unsloth must be imported before transformers and peft (it patches them): importing this module, in
    a fresh interpreter, imports none of them nor vLLM nor unsloth, and sets no environment variable;
    `load_with_unsloth` imports unsloth first."""
    import subprocess
    import sys

    code = ("import os, sys; import arc25.backends.unsloth; "
            "print([m for m in ('transformers', 'peft', 'vllm', 'unsloth') if m in sys.modules], "
            "'UNSLOTH_VLLM_MERGED_ROLLOUT' in os.environ)")
    env = {k: v for k, v in __import__("os").environ.items() if k != "UNSLOTH_VLLM_MERGED_ROLLOUT"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["[]", "False"]


def test_the_chunked_head_loss_equals_the_whole_head_loss():
    """Same loss and gradients as the LM head over all labelled positions at once (HFBackend.loss's way)."""
    from arc25.backends.trainer import chunked_cross_entropy

    torch.manual_seed(0)
    hidden = torch.randn(300, 16, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(50, 16, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 50, (300,))
    whole = torch.nn.functional.cross_entropy(hidden @ weight.T, targets)
    grads = torch.autograd.grad(whole, (hidden, weight))
    chunked = chunked_cross_entropy(hidden, weight, targets, chunk=128)
    chunked_grads = torch.autograd.grad(chunked, (hidden, weight))
    assert torch.allclose(whole, chunked.double(), atol=1e-6)
    assert all(torch.allclose(a, b.double(), atol=1e-6) for a, b in zip(grads, chunked_grads))


class _Out:  # the fields of vLLM's CompletionOutput / RequestOutput that VLLMEngine reads
    def __init__(self, **kw):
        self.__dict__.update(kw)


class FakeLLMEngine:
    """Stand-in for vLLM's LLMEngine (add_request / step / abort_request), which needs CUDA here:
    each step gives every running request one more token; with n > 1 the children report one by one."""

    def __init__(self, tokens_per_request: int, clock: list[float]) -> None:
        self.running, self.finished, self.aborted = {}, set(), []
        self.tokens, self.clock = tokens_per_request, clock

    def add_request(self, rid, prompt, params, lora_request=None):
        self.running[rid] = {"n": params.n, "done": 0}

    def has_unfinished_requests(self):
        return bool(self.running)

    def abort_request(self, rids):
        self.aborted += rids
        for rid in rids:
            self.running.pop(rid, None)

    def step(self):
        self.clock[0] += 1.0  # one second per step
        outs = []
        for rid, r in list(self.running.items()):
            r["done"] += 1
            finished = r["done"] >= self.tokens
            for index in range(r["n"]):
                c = _Out(index=index, token_ids=list(range(r["done"])), text="x" * r["done"],
                         finish_reason="length" if finished else None)
                outs.append(_Out(request_id=rid, outputs=[c], finished=finished and index == r["n"] - 1))
            if finished:
                del self.running[rid]
        return outs


def test_vllm_engine_bookkeeping_children_deadlines_and_aborts(monkeypatch):
    """VLLMEngine with a stand-in LLMEngine: every child's output kept, a row past its deadline aborted with
    what it had ("deadline"), other rows run to the end."""
    import arc25.backends.unsloth as mod

    clock = [1000.0]
    monkeypatch.setattr(mod.time, "time", lambda: clock[0])
    monkeypatch.setattr(mod.VLLMEngine, "_params", lambda self, p: p)
    fake = FakeLLMEngine(tokens_per_request=5, clock=clock)
    engine = mod.VLLMEngine(type("LLM", (), {"llm_engine": fake})(), max_loras=2, stop_ids=[128009])
    rows = [EngineRow([1, 2, 3], SamplingParams(n=2, max_tokens=5), None),
            EngineRow([4, 5], SamplingParams(n=3, max_tokens=5), None, deadline=1002.5),
            EngineRow([6], SamplingParams(n=1, max_tokens=5), None, deadline=999.0)]  # already past: never runs
    out = engine.run(rows)
    assert [len(o) for o in out] == [2, 3, 0]
    assert all(c.finish_reason == "length" and len(c.token_ids) == 5 for c in out[0])
    assert all(c.finish_reason == "deadline" and len(c.token_ids) == 3 for c in out[1])
    assert len(fake.aborted) == 2


def test_vllms_share_is_asked_of_the_free_memory(monkeypatch):
    # CUDA cannot run here: torch.cuda's two calls are replaced. unsloth multiplies the utilization it is
    # given by the memory free at load (unsloth_zoo approximate_vllm_memory_usage), so the backend asks
    # vllm_gib / free; a share of the card's total left vLLM no KV cache on the GPU (docs/benchmarks.md).
    gib = 1024**3
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (int(74.6 * gib), int(79.18 * gib)))
    utilization = unsloth_utilization(17.0)
    assert utilization * 74.6 == pytest.approx(17.0)  # what unsloth hands vLLM: 17 GiB, not 16.0
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (int(10 * gib), int(22.5 * gib)))
    assert unsloth_utilization(17.0) == 0.98  # more than is free: capped, vLLM reports the shortfall


def test_fp8_weights_reach_unsloths_loader_and_an_l4_is_refused_in_one_line(monkeypatch):
    """unsloth.load_in_fp8 becomes from_pretrained(load_in_fp8=True). Stand-ins (unsloth and CUDA cannot run
    here): a `unsloth` module whose FastLanguageModel records its arguments, and torch.cuda's queries of an
    H200 (9.0) or an L4 (8.9). unsloth 2026.10.9 quantizes on the fly only from 9.0
    (_get_fp8_mode_and_check_settings); the backend says so before loading anything."""
    import sys
    import types

    seen = {}

    class Stop(Exception):
        pass

    class FastLanguageModel:
        @staticmethod
        def from_pretrained(path, **kwargs):
            seen.update(kwargs)
            raise Stop

    fake = types.ModuleType("unsloth")
    fake.FastLanguageModel = FastLanguageModel
    monkeypatch.setitem(sys.modules, "unsloth", fake)
    gib = 1024**3
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(total_memory=140 * gib))
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f: None)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (130 * gib, 140 * gib))
    config = Config()
    config.unsloth.load_in_fp8 = True
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: (9, 0))
    with pytest.raises(Stop):
        load_with_unsloth(config, 4)
    assert seen["load_in_fp8"] is True and seen["load_in_4bit"] is False and seen["fast_inference"] is True
    config.unsloth.load_in_fp8 = False
    with pytest.raises(Stop):
        load_with_unsloth(config, 4)
    assert seen["load_in_fp8"] is False  # the default: bf16 weights
    config.unsloth.load_in_fp8 = True
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: (8, 9))
    seen.clear()
    with pytest.raises(UserError, match=r"compute capability >= 9.0 .*this GPU is 8.9"):
        load_with_unsloth(config, 4)
    assert not seen  # refused before unsloth was asked
    assert "exclude each other" in fp8_problem(True, True, (9, 0))
    assert fp8_problem(False, True, (8, 9)) is None and fp8_problem(True, False, (9, 0)) is None
