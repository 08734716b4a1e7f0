"""The tiny model and the HF backend on it: format, masking, overfit, reset, seeding, isolation (CPU)."""

from __future__ import annotations

import json
import logging
import time

import numpy as np
import pytest

import torch

from arc25.backends import load_backend
from arc25.backends.base import GenerationRequest, SamplingParams, TrainSample, generate_texts
from arc25.backends.hf import HFBackend, _Row
from arc25.backends.trainer import IGNORE, collate
from arc25.cli import build_parser
from arc25.config import Config
from arc25.errors import UserError
from arc25.prompts import build_messages, extract_code, format_answer, render_chat, tokenize_prompt
from arc25.tasks import Example, Task, load_tasks
from helpers import TRAIN_2025

BOS, PAD, EOT = 128000, 128004, 128009

# The spec's example task and its chat prompt, byte for byte (spec sections 1 and "Chat template").
SPEC_TASK = Task("spec", [Example(np.array([[0, 1], [2, 0]]), np.array([[1]])),
                          Example(np.array([[3, 3, 3]]), np.array([[8], [9]]))], [np.array([[5, 0], [0, 5]])])
SPEC_SYSTEM = "You are a world-class puzzle solver with exceptional pattern recognition skills and expertise in Python programming. Your task is to analyze puzzles and provide Python solutions."
SPEC_USER = 'Given input-output grid pairs as reference examples, carefully observe the patterns to predict the output grid for new test input. Each pair follows the same transformation rule. Grids are 2D arrays represented as strings, with cells (colors) separated by spaces and rows by newlines.\nHere are the input and output grids for the reference examples:\nExample 1\nInput:\nBlack Blue\nRed Black\n\nOutput:\nBlue\n\n\nExample 2\nInput:\nGreen Green Green\n\nOutput:\nPurple\nBrown\n\n\nHere is the input grid for the test example:\nInput:\nGray Black\nBlack Gray\n\nWrite a Python function `transform` that can convert any given input grid to its corresponding output grid based on the pattern observed in the reference examples.'
SPEC_CHAT = ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
             "Today Date: 26 Jul 2024\n\n" + SPEC_SYSTEM + "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
             + SPEC_USER + "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")

SHORT_CODE = "from common import *\n\ndef transform(input_grid):\n    return np.flipud(input_grid)"


@pytest.fixture(scope="module")
def arc_messages():
    """A real ARC task prompt (the smallest training task: ~240 tiny-model tokens)."""
    tasks = load_tasks(TRAIN_2025)
    return build_messages(min(tasks.values(), key=lambda t: (t.n_cells, t.task_id)))


def short_messages(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SPEC_SYSTEM}, {"role": "user", "content": text}]


def logits(backend: HFBackend, ids: list[int], adapter: str | None) -> torch.Tensor:
    with backend.loras.using(adapter) as model, torch.no_grad():
        return model(input_ids=torch.tensor([ids], device=backend.loras.device)).logits


# --- the tiny model ------------------------------------------------------------------------------


def test_tiny_chat_prompt_matches_spec_byte_for_byte(hf_backend):
    tok = hf_backend.loras.tokenizer
    messages = build_messages(SPEC_TASK)
    assert render_chat(tok, messages) == SPEC_CHAT
    ids = tokenize_prompt(tok, messages)
    assert ids[0] == BOS and ids.count(BOS) == 1
    assert tok.decode(ids) == SPEC_CHAT
    # The trap the spec warns about is reproduced: template text + special tokens on = double BOS.
    assert tok(SPEC_CHAT)["input_ids"][:2] == [BOS, BOS]


def test_tiny_special_tokens_pad_and_eos(hf_backend, tiny_model_dir):
    tok = hf_backend.loras.tokenizer
    expected = {"<|begin_of_text|>": 128000, "<|end_of_text|>": 128001, "<|finetune_right_pad_id|>": 128004,
                "<|start_header_id|>": 128006, "<|end_header_id|>": 128007, "<|eom_id|>": 128008,
                "<|eot_id|>": 128009, "<|python_tag|>": 128010, "<|reserved_special_token_0|>": 128002,
                "<|reserved_special_token_2|>": 128005, "<|reserved_special_token_3|>": 128011,
                "<|reserved_special_token_247|>": 128255}
    assert {t: tok.convert_tokens_to_ids(t) for t in expected} == expected
    assert len(tok) == 128256 and tok.pad_token == "<|eot_id|>" and tok.bos_token_id == BOS
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["vocab_size"] == 128256
    assert config["head_dim"] == 64
    generation = json.loads((tiny_model_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [128001, 128008, 128009]
    assert "Cutting Knowledge Date" in json.loads((tiny_model_dir / "tokenizer_config.json").read_text())["chat_template"]
    # Special tokens in text are single tokens; answer text is encoded without them.
    assert tok("<|eot_id|>", add_special_tokens=False)["input_ids"] == [EOT]


@pytest.mark.slow
def test_make_tiny_model_cli_is_deterministic(tmp_path, tiny_model_dir):
    # In process (the CLI's parser and command), since a subprocess re-imports torch + transformers.
    args = build_parser().parse_args(["make-tiny-model", str(tmp_path / "tiny"), "--seed", "0"])
    assert args._run(args) == 0
    for name in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                 "tokenizer_config.json"):
        assert (tmp_path / "tiny" / name).read_bytes() == (tiny_model_dir / name).read_bytes(), name


# --- training batches ----------------------------------------------------------------------------


def test_labels_mask_prompt_and_padding(hf_backend):
    long = TrainSample(short_messages("Black Blue Red\nGreen Green"), format_answer(SHORT_CODE))
    short = TrainSample(short_messages("Black"), "x = 1")
    encoded = [hf_backend.loras.encode(long), hf_backend.loras.encode(short)]
    for sample, (ids, labels) in zip([long, short], encoded):
        prompt = tokenize_prompt(hf_backend.loras.tokenizer, sample.messages)
        answer = hf_backend.loras.tokenizer(sample.answer, add_special_tokens=False)["input_ids"]
        assert ids == prompt + answer + [EOT] and ids.count(BOS) == 1
        assert labels == [IGNORE] * len(prompt) + answer + [EOT]
    batch = collate(encoded, hf_backend.loras.ids.pad, torch.device("cpu"))
    assert hf_backend.loras.ids.pad == PAD
    n_long, n_short = len(encoded[0][0]), len(encoded[1][0])
    assert batch.input_ids.shape == (2, n_long)
    row = batch.input_ids[1]
    assert row[n_short:].eq(PAD).all() and batch.labels[1, n_short:].eq(IGNORE).all()
    assert batch.attention_mask[1].tolist() == [1] * n_short + [0] * (n_long - n_short)
    for r, (ids, labels) in enumerate(encoded):
        labelled = [i for i, lab in enumerate(batch.labels[r].tolist()) if lab != IGNORE]
        prompt_len = labels.index(next(lab for lab in labels if lab != IGNORE))
        assert labelled == list(range(prompt_len, len(ids)))  # exactly answer + final eot
        assert batch.labels[r, labelled[-1]] == EOT
    # targets: the next-token labels, in row-major order of target_mask
    assert batch.targets.tolist() == [lab for labels in (encoded[0][1], encoded[1][1]) for lab in labels if lab != IGNORE]
    assert int(batch.target_mask.sum()) == len(batch.targets)


def test_head_only_at_labels_equals_full_logits_loss(hf_backend):
    hf_backend.create_adapter("lossparity")
    try:
        sample = TrainSample(short_messages("Red Red\nBlue"), format_answer(SHORT_CODE))
        hf_backend.train("lossparity", [sample] * 2)  # non-zero LoRA B: the adapter really takes part
        batch = collate([hf_backend.loras.encode(sample), hf_backend.loras.encode(TrainSample(short_messages("x"), "y"))],
                        hf_backend.loras.ids.pad, hf_backend.loras.device)
        with hf_backend.loras.using("lossparity") as model, torch.no_grad():
            ours = hf_backend.loras.loss(batch)
            full = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels).loss
        tol = 1e-5 if hf_backend.loras.dtype == torch.float32 else 1e-2  # bf16 GEMMs of other shapes round differently
        torch.testing.assert_close(ours, full, rtol=tol, atol=tol)
    finally:
        hf_backend.drop_adapter("lossparity")


def test_too_long_samples_are_skipped(hf_backend, caplog):
    hf_backend.create_adapter("toolong")
    saved = hf_backend.loras.training_config.max_seq_len
    try:
        hf_backend.loras.training_config.max_seq_len = 90
        with caplog.at_level(logging.WARNING, logger="arc25.backends.hf"):
            stats = hf_backend.train("toolong", [TrainSample(short_messages("Black " * 40), "y"),
                                                 TrainSample(short_messages("Red"), "y")])
        assert stats.steps == 1 and "skipped" in caplog.text
        assert stats.trained == [1]  # the skipped sample is not reported as trained: it stays available
    finally:
        hf_backend.loras.training_config.max_seq_len = saved
        hf_backend.drop_adapter("toolong")


# --- learning ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_overfit_one_relabeled_sample_reproduces_program(hf_backend, arc_messages):
    sample = TrainSample(arc_messages, format_answer(SHORT_CODE))
    greedy = SamplingParams(n=1, temperature=0.0, max_tokens=120)
    hf_backend.create_adapter("overfit")
    try:
        stats = hf_backend.train("overfit", [sample] * 30)
        assert stats.steps == 30 and stats.tokens == 30 * len(hf_backend.loras.encode(sample)[0])
        [[completion]] = generate_texts(hf_backend, [arc_messages], greedy, adapter="overfit")
        assert extract_code(completion) == SHORT_CODE, completion
        assert completion == sample.answer  # and it stopped at <|eot_id|>, which is not in the text
        # the base model is untouched
        [[base]] = generate_texts(hf_backend, [arc_messages], greedy, adapter=None)
        assert extract_code(base) != SHORT_CODE
    finally:
        hf_backend.drop_adapter("overfit")


def test_reset_restores_initial_weights_and_optimizer(hf_backend):
    ids = tokenize_prompt(hf_backend.loras.tokenizer, short_messages("Green Black\nBlack Green"))
    sample = TrainSample(short_messages("Green Black\nBlack Green"), format_answer(SHORT_CODE))
    base = logits(hf_backend, ids, None)
    hf_backend.create_adapter("resetme")
    try:
        state = hf_backend.loras.adapters["resetme"]
        initial = [p.detach().clone() for p in state.params]
        assert torch.equal(logits(hf_backend, ids, "resetme"), base)  # B = 0 at init

        first = hf_backend.train("resetme", [sample] * 3)
        assert not torch.equal(logits(hf_backend, ids, "resetme"), base)
        hf_backend.reset_adapter("resetme")
        assert all(torch.equal(p, q) for p, q in zip(state.params, initial))
        assert torch.equal(logits(hf_backend, ids, "resetme"), base)
        assert state.optimizer is None and state.steps == 0

        # a fresh optimizer and warmup: the same three steps give the same losses again
        again = hf_backend.train("resetme", [sample] * 3)
        assert again.mean_loss == pytest.approx(first.mean_loss, rel=1e-6)

        # same seed + name -> same initial weights; the fresh adapter's logits equal the reset one's
        hf_backend.reset_adapter("resetme")
        hf_backend.drop_adapter("resetme")
        hf_backend.create_adapter("resetme")
        fresh = hf_backend.loras.adapters["resetme"]
        assert all(torch.equal(p, q) for p, q in zip(fresh.params, initial))
        assert torch.equal(logits(hf_backend, ids, "resetme"), base)
    finally:
        hf_backend.drop_adapter("resetme")


# --- generation ----------------------------------------------------------------------------------


def test_same_seed_same_completions(hf_backend):
    prompts = [short_messages("Black Blue"), short_messages("Red Red Red\nGreen")]
    params = SamplingParams(n=3, temperature=1.0, top_p=0.95, max_tokens=6, seed=7)
    first = generate_texts(hf_backend, prompts, params)
    assert [len(c) for c in first] == [3, 3] and all(isinstance(t, str) for c in first for t in c)
    assert generate_texts(hf_backend, prompts, params) == first
    assert generate_texts(hf_backend, prompts, SamplingParams(n=3, max_tokens=6, seed=8)) != first


def test_chunked_generation_keeps_order(hf_backend):
    prompts = [short_messages("Black Blue"), short_messages("Red Red Red\nGreen Green")]
    greedy = SamplingParams(n=2, temperature=0.0, max_tokens=5)
    whole = generate_texts(hf_backend, prompts, greedy)
    saved = hf_backend.max_batch_tokens
    try:
        hf_backend.max_batch_tokens = 1  # one row per chunk
        assert generate_texts(hf_backend, prompts, greedy) == whole
    finally:
        hf_backend.max_batch_tokens = saved
    rows = [_Row(0, 0, [1] * n, None, None) for n in (10, 10, 30, 5)]
    assert [len(c) for c in hf_backend._chunks(rows, max_new=10)] == [4]
    try:
        hf_backend.max_batch_tokens = 60  # (rows so far) x (widest prompt + new tokens) <= 60
        assert [len(c) for c in hf_backend._chunks(rows, max_new=10)] == [2, 1, 1]
    finally:
        hf_backend.max_batch_tokens = saved


def test_adapters_do_not_interfere(hf_backend):
    prompts = [short_messages("Pink Pink\nOrange")]
    params = SamplingParams(n=2, temperature=1.0, max_tokens=8, seed=3)
    ids = tokenize_prompt(hf_backend.loras.tokenizer, prompts[0])
    base_text = generate_texts(hf_backend, prompts, params, adapter=None)
    base = logits(hf_backend, ids, None)
    hf_backend.create_adapter("trained")
    hf_backend.create_adapter("untouched")
    try:
        untouched = [p.detach().clone() for p in hf_backend.loras.adapters["untouched"].params]
        hf_backend.train("trained", [TrainSample(prompts[0], format_answer(SHORT_CODE))] * 3)
        assert all(torch.equal(p, q) for p, q in zip(hf_backend.loras.adapters["untouched"].params, untouched))
        assert torch.equal(logits(hf_backend, ids, "untouched"), base)
        assert not torch.equal(logits(hf_backend, ids, "trained"), base)
        assert generate_texts(hf_backend, prompts, params, adapter="untouched") == base_text
        assert generate_texts(hf_backend, prompts, params, adapter=None) == base_text  # adapters really disabled
        assert generate_texts(hf_backend, prompts, params, adapter="trained") != base_text
        with pytest.raises(KeyError):
            generate_texts(hf_backend, prompts, params, adapter="missing")
    finally:
        hf_backend.drop_adapter("trained")
        hf_backend.drop_adapter("untouched")
    assert generate_texts(hf_backend, prompts, params) == base_text  # no adapter left: plain base model
    assert hf_backend.timings.as_dict().keys() >= {"load", "generate", "train", "create", "reset"}


# --- interface v2: requests, finish reasons, deadlines, versions, export/import ----------------------


def test_one_call_mixes_base_and_two_adapters(hf_backend):
    """Rows of different adapters share a batch (peft adapter_names) and equal their separate calls."""
    prompts = [short_messages("Pink Pink\nOrange"), short_messages("Blue")]
    greedy = SamplingParams(n=2, temperature=0.0, max_tokens=8)
    hf_backend.create_adapter("mixa")
    hf_backend.create_adapter("mixb")
    try:
        # fresh adapters mix too (a new peft model starts in training mode, where peft refuses mixing)
        fresh = hf_backend.generate([GenerationRequest(prompts, greedy, a) for a in (None, "mixa", "mixb")])
        assert fresh[0] == fresh[1] == fresh[2]  # LoRA B = 0 at creation: all three are the base model
        hf_backend.train("mixa", [TrainSample(prompts[0], format_answer(SHORT_CODE))] * 3)
        hf_backend.train("mixb", [TrainSample(prompts[0], "Black Black Black Black")] * 3)
        alone = [generate_texts(hf_backend, prompts, greedy, adapter=a) for a in (None, "mixa", "mixb")]
        assert alone[0] != alone[1] and alone[1] != alone[2]  # three different models
        mixed = hf_backend.generate([GenerationRequest(prompts, greedy, a) for a in (None, "mixa", "mixb")])
        assert [[[c.text for c in cs] for cs in answer] for answer in mixed] == alone
        assert all(c.finish_reason in ("stop", "length") and c.prompt_tokens > 0 and 0 < c.completion_tokens <= 8
                   for answer in mixed for cs in answer for c in cs)
    finally:
        hf_backend.drop_adapter("mixa")
        hf_backend.drop_adapter("mixb")


def test_finish_reasons_and_token_counts(hf_backend, arc_messages):
    [[[c]]] = hf_backend.generate([GenerationRequest([arc_messages], SamplingParams(n=1, temperature=0.0,
                                                                                    max_tokens=5))])
    assert c.finish_reason == "length" and c.completion_tokens == 5 and c.truncated
    assert c.prompt_tokens == len(tokenize_prompt(hf_backend.loras.tokenizer, arc_messages))
    sample = TrainSample(arc_messages, "Done.")
    hf_backend.create_adapter("stopper")
    try:
        hf_backend.train("stopper", [sample] * 25)
        [[[c]]] = hf_backend.generate([GenerationRequest([arc_messages], SamplingParams(n=1, temperature=0.0,
                                                                                        max_tokens=40), "stopper")])
        assert (c.text, c.finish_reason, c.truncated) == ("Done.", "stop", False)
        assert c.completion_tokens == len(hf_backend.loras.tokenizer("Done.", add_special_tokens=False)["input_ids"]) + 1
    finally:
        hf_backend.drop_adapter("stopper")


def test_deadline_cuts_generation_and_keeps_partial_text(hf_backend):
    prompts = [short_messages("Black Blue")]
    long = SamplingParams(n=2, temperature=1.0, max_tokens=100_000, seed=1)
    # a deadline already past: nothing starts, nothing is returned, no waiting
    [[past]] = hf_backend.generate([GenerationRequest(prompts, long, None, time.time() - 1)])
    assert past == []
    # a request with a deadline beside one without: only the first is cut
    start = time.time()
    cut, whole = hf_backend.generate([GenerationRequest(prompts, long, None, start + 1.0),
                                      GenerationRequest(prompts, SamplingParams(n=1, max_tokens=3), None)])
    # rows that started were cut with their text so far (not 100k tokens: the deadline ended them);
    # a chunk not started by then is left out
    assert len(cut[0]) in (1, 2) and all(c.finish_reason == "deadline" for c in cut[0])
    assert all(0 < c.completion_tokens < 100_000 for c in cut[0])
    assert [c.finish_reason for c in whole[0]] == ["length"]


def test_versions_export_import(hf_backend):
    prompts = [short_messages("Pink Pink\nOrange")]
    ids = tokenize_prompt(hf_backend.loras.tokenizer, prompts[0])
    hf_backend.create_adapter("src")
    hf_backend.create_adapter("dst")
    try:
        seen = [hf_backend.adapter_version("src"), hf_backend.adapter_version("dst")]
        hf_backend.train("src", [TrainSample(prompts[0], format_answer(SHORT_CODE))] * 3)
        seen.append(hf_backend.adapter_version("src"))
        tensors = hf_backend.export_adapter("src")
        assert tensors and all(t.device.type == "cpu" and ".src." not in k for k, t in tensors.items())
        hf_backend.import_adapter("dst", tensors)
        seen.append(hf_backend.adapter_version("dst"))
        assert torch.equal(logits(hf_backend, ids, "dst"), logits(hf_backend, ids, "src"))
        hf_backend.reset_adapter("src")
        seen.append(hf_backend.adapter_version("src"))
        assert len(set(seen)) == len(seen) and seen == sorted(seen)  # every change: a new, larger number
        assert not torch.equal(logits(hf_backend, ids, "dst"), logits(hf_backend, ids, "src"))
        stats = hf_backend.train("src", [TrainSample(prompts[0], "x")], deadline=time.time() - 1)
        assert stats.steps == 0 and stats.trained == [] and hf_backend.adapter_version("src") == seen[-1]
    finally:
        hf_backend.drop_adapter("src")
        hf_backend.drop_adapter("dst")


# --- factory -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["nonsense"])
def test_load_backend_rejects_unavailable(name):
    config = Config()
    config.model.backend = name
    with pytest.raises(UserError, match=name):
        load_backend(config)


def test_load_backend_hf(tiny_model_dir):
    config = Config()
    config.model.path = str(tiny_model_dir)
    backend = load_backend(config)
    try:
        assert isinstance(backend, HFBackend) and backend.loras.device.type in ("cpu", "cuda")
    finally:
        backend.close()
    config.model.path = str(tiny_model_dir / "missing")
    with pytest.raises(UserError, match="not a model folder"):
        load_backend(config)


def test_load_backend_scripted(tmp_path):
    path = tmp_path / "completions.json"
    path.write_text(json.dumps({"completions": ["hello"]}))
    config = Config()
    config.model.backend, config.model.path = "scripted", str(path)
    backend = load_backend(config)
    assert generate_texts(backend, [short_messages("x")], SamplingParams(n=2)) == [["hello", "hello"]]
