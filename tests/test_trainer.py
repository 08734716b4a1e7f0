"""The LoRA training loop (`arc25.backends.trainer.LoraTrainer`) and the adapter table, on the tiny model.

Real transformers + peft through the session's `hf_backend` (its PeftLoras): each test trains its own
adapter, with a LoraTrainer of its own settings on the same model where the settings matter.
"""

from __future__ import annotations

import math
import time

import pytest

torch = pytest.importorskip("torch")

from arc25.backends.adapters import AdapterTable, check_name  # noqa: E402
from arc25.backends.base import TrainSample  # noqa: E402
from arc25.backends.trainer import IGNORE, LoraTrainer, TrainState, collate  # noqa: E402
from arc25.config import TrainingConfig  # noqa: E402

CODE = "from common import *\n\ndef transform(input_grid):\n    return np.flipud(input_grid)"


def messages(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You solve puzzles."}, {"role": "user", "content": text}]


def sample(text: str = "Black Blue\nBlue Black") -> TrainSample:
    return TrainSample(messages(text), f"```python\n{CODE}\n```")


def trainer_like(loras, head_chunk: int | None = None, **settings) -> LoraTrainer:
    """A trainer with its own settings on the backend's model and tokenizer."""
    return LoraTrainer(TrainingConfig(**settings), loras.base, loras.encode, loras.ids.pad, loras.device,
                       loras.timings, head_chunk=head_chunk)


def weights(loras, name: str) -> dict[str, torch.Tensor]:
    return loras.export_adapter(name)


def test_warm_up_is_linear_then_constant_and_steps_use_it(hf_backend):
    loras = hf_backend.loras
    trainer = trainer_like(loras, learning_rate=1e-3, warmup_steps=3)
    assert [trainer.learning_rate(k) for k in range(5)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3])
    loras.create_adapter("warmup")
    try:
        state = loras.adapters["warmup"]
        stats = trainer.train("warmup", state, [sample(), sample("Red")], None, loras.peft,
                              lambda: loras.activate("warmup"))
        assert stats.steps == state.steps == 2
        assert state.optimizer.param_groups[0]["lr"] == pytest.approx(5e-4)  # the second step's rate
        trainer.train("warmup", state, [sample()] * 2, None, loras.peft, lambda: loras.activate("warmup"))
        assert state.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)  # warm-up counts across calls
    finally:
        loras.drop_adapter("warmup")


def test_trained_indices_skip_too_long_samples_and_passes_repeat(hf_backend):
    loras = hf_backend.loras
    short, other, long = sample("Red"), sample("Blue Blue"), sample("Black " * 60)
    limit = max(len(loras.encode(short)[0]), len(loras.encode(other)[0]))
    assert len(loras.encode(long)[0]) > limit
    trainer = trainer_like(loras, max_seq_len=limit, batch_size=2, passes_per_epoch=2, warmup_steps=0)
    loras.create_adapter("indices")
    try:
        state = loras.adapters["indices"]
        stats = trainer.train("indices", state, [short, long, other], None, loras.peft,
                              lambda: loras.activate("indices"))
        assert stats.trained == [0, 2]  # the long one (1) stays available for a later call
        assert stats.steps == 2  # one batch of two, two passes
        n_tokens = len(loras.encode(short)[0]) + len(loras.encode(other)[0])
        assert stats.tokens == 2 * n_tokens and math.isfinite(stats.mean_loss)
    finally:
        loras.drop_adapter("indices")


def test_a_passed_deadline_trains_nothing_and_keeps_the_version(hf_backend):
    loras = hf_backend.loras
    loras.create_adapter("late")
    try:
        before, version = weights(loras, "late"), loras.adapter_version("late")
        stats = hf_backend.train("late", [sample()] * 3, deadline=time.time() - 1)
        assert stats.steps == 0 and stats.trained == [] and stats.tokens == 0 and math.isnan(stats.mean_loss)
        after = weights(loras, "late")
        assert all(torch.equal(before[k], after[k]) for k in before)
        assert loras.adapter_version("late") == version  # nothing changed: the engine's copy stays valid
        assert not loras.peft.training  # back in eval mode (peft refuses mixed-adapter batches in train mode)
        stats = hf_backend.train("late", [sample()], deadline=time.time() + 600)
        assert stats.steps == 1 and loras.adapter_version("late") > version
    finally:
        loras.drop_adapter("late")


def test_loss_is_the_mean_over_answer_tokens_and_the_final_eot_only(hf_backend):
    """Against logits of the whole sequence, positions counted from the prompt's and answer's lengths."""
    loras = hf_backend.loras
    s = sample()
    prompt = loras.prompt_ids(s.messages)
    answer = [*loras.prompt_ids.answer(s.answer), loras.ids.eot]
    ids, labels = loras.encode(s)
    assert ids == prompt + answer and labels == [IGNORE] * len(prompt) + answer
    batch = collate([(ids, labels)], loras.ids.pad, loras.device)
    loras.create_adapter("mask")
    try:
        hf_backend.train("mask", [s])  # non-zero LoRA B: the adapter takes part in both computations
        with loras.using("mask") as model, torch.no_grad():
            ours = loras.loss(batch)
            chunked = trainer_like(loras, head_chunk=3).loss(batch)
            full = model(input_ids=torch.tensor([ids], device=loras.device)).logits[0].float()
        predicting = full[len(prompt) - 1 : len(ids) - 1]  # the positions whose next token is an answer token
        expected = torch.nn.functional.cross_entropy(predicting, torch.tensor(answer, device=loras.device))
        assert len(predicting) == len(answer)
        assert ours.item() == pytest.approx(expected.item(), rel=1e-4)
        assert chunked.item() == pytest.approx(ours.item(), rel=1e-5)  # the head in chunks: the same loss
    finally:
        loras.drop_adapter("mask")


def test_the_table_gives_a_new_version_when_a_step_ran_also_if_the_call_failed():
    table: AdapterTable[TrainState] = AdapterTable()
    a = table.add("task_a", TrainState(params=[]))
    b = table.add("task_b", TrainState(params=[]))
    assert 0 < a.version < b.version
    with table.training(a):
        pass  # no step: the same version
    assert a.version < b.version
    with pytest.raises(RuntimeError), table.training(a):
        a.steps += 1
        raise RuntimeError("failed after a step")
    assert a.version > b.version  # the weights moved: never served under the old number
    a.optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])
    table.forget_training(a)
    assert a.optimizer is None and a.steps == 0
    with pytest.raises(KeyError, match="no adapter 'task_c'"):
        table["task_c"]
    with pytest.raises(ValueError, match="already exists"):
        table.add("task_a", TrainState(params=[]))
    assert list(table) == ["task_a", "task_b"] and "task_a" in table and len(table) == 2
    for bad in ("", "x.y", "lora", "a"):  # "a": peft would mistake it inside its "lora_" prefix
        with pytest.raises(ValueError, match="adapter name"):
            check_name(bad)
    check_name("task_00576224")
