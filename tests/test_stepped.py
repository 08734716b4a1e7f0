"""Every backend steps: `submit` / `step` / `abort` / `running`, and `generate` is `generate_by_steps` over them.

Scripted (no model) and HF (the tiny model, the session's `hf_backend`); vLLM and unsloth are
stepped through their engines (tests/test_streaming.py, tests/test_unsloth_backend.py).
"""

from __future__ import annotations

import pytest

from arc25.backends.base import GenerationRequest, SamplingParams, generate_by_steps
from arc25.backends.scripted import ScriptedBackend


def messages(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You solve puzzles."}, {"role": "user", "content": text}]


def texts(answer) -> list[list[str]]:
    return [[c.text for c in cs] for cs in answer]


def test_scripted_steps_answer_what_was_submitted_and_generate_loops_over_them():
    params = SamplingParams(n=2, max_tokens=100)
    requests = [GenerationRequest([messages("a"), messages("b")], params),
                GenerationRequest([messages("c")], params, adapter="t")]
    blocking = ScriptedBackend(["one", "two", "three"])
    blocking.create_adapter("t")
    expected = blocking.generate(requests)
    assert len(blocking.engine_calls) == 1  # one step: one engine call

    b = ScriptedBackend(["one", "two", "three"])
    b.create_adapter("t")
    assert b.step() == [] and b.running() == 0
    b.submit(5, requests[0])
    b.submit(6, requests[1])
    with pytest.raises(ValueError, match="already in flight"):
        b.submit(5, requests[0])
    with pytest.raises(RuntimeError, match="in flight"):
        b.generate(requests)
    assert b.running() == 6  # 3 prompts x n=2
    answers = dict(b.step())
    assert sorted(answers) == [5, 6] and b.running() == 0
    assert [texts(answers[5]), texts(answers[6])] == [texts(a) for a in expected]

    b.submit(7, requests[0])
    b.abort(7)
    b.abort(8)  # unknown: nothing to do
    assert b.running() == 0 and b.step() == []


def test_a_failed_submit_leaves_nothing_in_flight():
    b = ScriptedBackend(["x"])
    params = SamplingParams(n=1)
    with pytest.raises(KeyError, match="no adapter 'gone'"):
        generate_by_steps(b, [GenerationRequest([messages("a")], params),
                              GenerationRequest([messages("b")], params, adapter="gone")])
    assert b.running() == 0 and b.step() == [] and b.engine_calls == []


def test_hf_step_generates_all_submitted_requests_as_one_batch(hf_backend):
    greedy = SamplingParams(n=2, temperature=0.0, max_tokens=8)
    sampled = SamplingParams(n=1, temperature=1.0, max_tokens=8, seed=3)
    hf_backend.create_adapter("stepped")
    try:
        requests = [GenerationRequest([messages("a"), messages("bb")], greedy, adapter="stepped"),
                    GenerationRequest([messages("c")], greedy),
                    GenerationRequest([messages("d")], sampled)]
        blocking = hf_backend.generate(requests)
        assert hf_backend.running() == 0
        for key, request in zip((10, 11, 12), requests):
            hf_backend.submit(key, request)
        hf_backend.submit(13, requests[1])
        hf_backend.abort(13)
        assert hf_backend.running() == 4 + 2 + 1
        answers = dict(hf_backend.step())
        assert sorted(answers) == [10, 11, 12] and hf_backend.running() == 0 and hf_backend.step() == []
        # the same batch as generate's (same groups, same seeds): the same completions
        assert [texts(answers[k]) for k in (10, 11, 12)] == [texts(a) for a in blocking]
        with pytest.raises(KeyError, match="no adapter"):
            hf_backend.submit(14, GenerationRequest([messages("e")], greedy, adapter="missing"))
    finally:
        hf_backend.drop_adapter("stepped")
