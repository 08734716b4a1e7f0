"""Search and learn for one ARC task, one phase per call.

    search: sample completions under fresh augmentations, run the programs, score
    stop:   when solved with confidence, or the budget / epochs / predictions are spent
    learn:  relabel this epoch's programs (hindsight) and train the task's LoRA on them

`TaskSolver.step()` advances one phase and returns, so a worker can interleave
several tasks on one GPU. After every search the task's result (best attempts so
far, per-epoch metrics, time breakdown) is written atomically, so a crash loses at
most the epoch in flight; a solver started on a task that has earlier predictions on
disk resumes from them (a crashed, interrupted or re-run task never loses answers).
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from arc25.attempts import select_attempts
from arc25.augment import Augmentation
from arc25.backends.base import Backend, SamplingParams, Timings
from arc25.config import Config, derive_seed
from arc25.execution import Executor, execute_on_tasks
from arc25.grid import fingerprint, grid_to_json
from arc25.io import append_jsonl_gz, atomic_write_json, read_jsonl
from arc25.metrics import score_prediction
from arc25.prediction import Prediction
from arc25.prompts import PromptSpec, build_messages, extract_code
from arc25.relabel import Relabeler
from arc25.tasks import Task

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"
PREDICTIONS_FILE = "predictions.jsonl.gz"
TIME_PHASES = ("generate", "execute", "relabel", "train", "reset", "other")


@dataclass
class EpochRecord:
    epoch: int
    predictions: int
    valid_code: int
    valid_outputs: int
    unique_outputs: int
    train_pass: int
    test_pass: int | None
    best_correct_grids: float
    train_samples: int = 0
    train_loss: float | None = None
    search_s: float = 0.0
    learn_s: float = 0.0


@dataclass
class SolverState:
    epoch: int = 0
    phase: str = "search"  # search | learn | done
    stop_reason: str | None = None
    predictions: list[Prediction] = field(default_factory=list)
    epochs: list[EpochRecord] = field(default_factory=list)


class TaskSolver:
    """Search and learn on one task; `step()` runs one phase, `run()` runs to the end."""

    def __init__(
        self,
        task: Task,
        backend: Backend,
        executor: Executor,
        config: Config,
        budget_s: float,
        out_dir: str | Path | None = None,
        adapter: str = "task",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.task, self.backend, self.executor, self.config = task, backend, executor, config
        self.budget_s, self.adapter, self.clock = budget_s, adapter, clock
        self.out_dir = Path(out_dir) / task.task_id if out_dir is not None else None
        self.state = SolverState()
        self.timings = Timings()
        self.relabeler = Relabeler(config.training.max_samples_per_epoch)
        self.adapter_ready = False  # the first search samples from the base model
        self.started = clock()
        self.started_wall = time.time()
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._resume()

    def _resume(self) -> None:
        """Carry on from the predictions of an earlier attempt at this task (crash, deadline, re-run).

        Its best attempts stay candidates and its programs are relabeled again for the
        new adapter, so redoing a task never loses what it had found.
        """
        path = self.out_dir / PREDICTIONS_FILE
        if not path.exists():
            return
        try:
            found = [Prediction.from_dict(row) for row in read_jsonl(path)]
            if any(p.task_id != self.task.task_id or len(p.train_outputs) != len(self.task.train)
                   or len(p.test_outputs) != len(self.task.test_inputs) for p in found):
                raise ValueError("predictions of another task")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s: ignoring earlier predictions in %s (%s)", self.task.task_id, path, exc)
            path.unlink(missing_ok=True)
            return
        found.sort(key=lambda p: p.index)
        self.state.predictions = [replace(p, index=i) for i, p in enumerate(found)]
        self.state.epoch = max((p.epoch for p in found), default=-1) + 1
        self.state.epochs = self._earlier_epochs()
        # rewrite whole: drops a truncated tail, and keeps the file's rows equal to the state
        path.unlink()
        if found:
            append_jsonl_gz(path, (p.to_dict() for p in self.state.predictions))
            log.info("%s: resumed with %d earlier predictions, from epoch %d", self.task.task_id, len(found),
                     self.state.epoch)

    def _earlier_epochs(self) -> list[EpochRecord]:
        """The per-epoch records of the earlier attempt, when its result file is readable."""
        try:
            rows = json.loads((self.out_dir / RESULT_FILE).read_text())["epochs"]
            return [EpochRecord(**row) for row in rows if row["epoch"] < self.state.epoch]
        except (OSError, ValueError, KeyError, TypeError):
            return []

    # -- the loop ---------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.state.phase == "done"

    @property
    def elapsed_s(self) -> float:
        return self.clock() - self.started

    def step(self) -> bool:
        """Advance one phase; True while there is more to do."""
        if self.state.phase == "search":
            self._search()
            self.state.phase = self._after_search()
            if self.state.phase == "done":
                self._finish()
        elif self.state.phase == "learn":
            self._learn()
            self.state.epoch += 1
            self.state.phase = "search"
        return not self.done

    def run(self) -> dict[str, Any]:
        while self.step():
            pass
        return self.result()

    def stop(self, reason: str) -> None:
        """End the task now (e.g. the run's deadline); the attempts so far stand."""
        if not self.done:
            self.state.phase, self.state.stop_reason = "done", reason
            self._finish()

    # -- search -----------------------------------------------------------------------
    def _prompt_specs(self, n_prompts: int) -> list[PromptSpec]:
        cfg = self.config
        specs = []
        for j in range(n_prompts):
            rng = random.Random(derive_seed(cfg.seed, self.task.task_id, self.state.epoch, j))
            augmentation = Augmentation.random(rng, cfg.augment.keep_black_p) if cfg.augment.enabled else Augmentation()
            shuffle = rng.randrange(2**31) if cfg.augment.shuffle_train else None
            specs.append(PromptSpec(j % len(self.task.test_inputs), augmentation, shuffle))
        return specs

    def _sampling_params(self, n: int) -> SamplingParams:
        s = self.config.sampling
        seed = derive_seed(self.config.seed, self.task.task_id, self.state.epoch, "sample")
        return SamplingParams(n=n, temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens, seed=seed)

    def _search(self) -> None:
        start = self.clock()
        cfg = self.config
        remaining = cfg.search.max_predictions - len(self.state.predictions)
        wanted = min(cfg.search.predictions_per_epoch, remaining)
        n = min(cfg.sampling.n_per_prompt, wanted)
        specs = self._prompt_specs(math.ceil(wanted / n))
        with self.timings.measure("other"):
            prompts = [build_messages(self.task, spec) for spec in specs]
        with self.timings.measure("generate"):
            adapter = self.adapter if self.adapter_ready else None
            completions = self.backend.generate(prompts, self._sampling_params(n), adapter=adapter)
        with self.timings.measure("execute"):
            new = self._execute(specs, completions)
        self.state.predictions.extend(new)
        self.state.epochs.append(self._epoch_record(new, self.clock() - start))
        with self.timings.measure("other"):
            self._save(new)
        log.info("%s epoch %d: %s", self.task.task_id, self.state.epoch, self._summary(self.state.epochs[-1]))

    def _execute(self, specs: list[PromptSpec], completions: list[list[str]]) -> list[Prediction]:
        task, first = self.task, len(self.state.predictions)
        drafts = [(spec, text, extract_code(text)) for spec, texts in zip(specs, completions) for text in texts]
        executions = execute_on_tasks(self.executor, [(code, task, spec.augmentation) for spec, _, code in drafts])
        return [
            Prediction(task.task_id, self.state.epoch, first + i, spec, text, code, ex, score_prediction(task, ex))
            for i, ((spec, text, code), ex) in enumerate(zip(drafts, executions))
        ]

    def _epoch_record(self, new: list[Prediction], search_s: float) -> EpochRecord:
        known = self.task.test_outputs is not None
        return EpochRecord(
            epoch=self.state.epoch,
            predictions=len(new),
            valid_code=sum(p.valid_code for p in new),
            valid_outputs=sum(p.valid_outputs for p in new),
            unique_outputs=len({p.outputs_key() for p in new if p.valid_outputs}),
            train_pass=sum(p.train_pass for p in new),
            test_pass=sum(bool(p.test_pass) for p in new) if known else None,
            best_correct_grids=max((p.correct_grids for p in new), default=0.0),
            search_s=search_s,
        )

    @staticmethod
    def _summary(r: EpochRecord) -> str:
        return (f"{r.predictions} predictions, {r.valid_code} valid code, {r.valid_outputs} valid outputs, "
                f"{r.train_pass} train pass, best correct grids {r.best_correct_grids:.2f}")

    # -- stop ---------------------------------------------------------------------------
    def solved(self) -> bool:
        """Confident: enough distinct train-perfect answers, or enough programs agreeing on one."""
        votes = Counter(
            "|".join(fingerprint(o) for o in p.test_outputs)
            for p in self.state.predictions
            if p.train_pass and p.valid_outputs  # right on train but failing a test input: no answer
        )
        if not votes:
            return False
        s = self.config.search
        return len(votes) >= s.stop_distinct_outputs or max(votes.values()) >= s.stop_agreeing_programs

    def _after_search(self) -> str:
        s, st = self.config.search, self.state
        reason = None
        if self.solved():
            reason = "solved"
        elif len(st.predictions) >= s.max_predictions:
            reason = "max_predictions"
        elif st.epoch + 1 >= s.max_epochs:
            reason = "max_epochs"
        elif self.elapsed_s + self._next_epoch_estimate_s() > self.budget_s:
            reason = "budget"
        if reason:
            st.stop_reason = reason
            return "done"
        return "learn" if s.learn else self._skip_learning()

    def _skip_learning(self) -> str:
        self.state.epoch += 1  # pure sampling: the next epoch's search follows at once
        return "search"

    def _next_epoch_estimate_s(self) -> float:
        """The last epoch's search + learn time: don't start what cannot finish in budget."""
        last = self.state.epochs[-1]
        learn = self.state.epochs[-2].learn_s if len(self.state.epochs) > 1 else 0.0
        return last.search_s + learn

    # -- learn --------------------------------------------------------------------------
    def _learn(self) -> None:
        start = self.clock()
        if not self.adapter_ready:
            with self.timings.measure("reset"):
                self.backend.reset_adapter(self.adapter)
            self.adapter_ready = True
        with self.timings.measure("relabel"):
            samples = self.relabeler.samples(self.task, self.state.predictions)
        record = self.state.epochs[-1]
        record.train_samples = len(samples)
        if samples:
            with self.timings.measure("train"):
                stats = self.backend.train(self.adapter, samples)
            record.train_loss = stats.mean_loss
        record.learn_s = self.clock() - start
        log.info("%s epoch %d: trained on %d relabeled samples", self.task.task_id, self.state.epoch, len(samples))

    # -- results ------------------------------------------------------------------------
    def attempts(self) -> list[list[np.ndarray]]:
        return select_attempts(self.task, self.state.predictions)

    def result(self) -> dict[str, Any]:
        """Everything a merger and a report need, as JSON-ready data."""
        st = self.state
        times = {k: round(v, 4) for k, v in self.timings.as_dict().items()}
        accounted = sum(times.values())
        times["other"] = round(times.get("other", 0.0) + max(0.0, self.elapsed_s - accounted), 4)
        result = {
            "task_id": self.task.task_id,
            "status": self._status(),
            "stop_reason": st.stop_reason,
            "attempts": [[grid_to_json(g) for g in pair] for pair in self.attempts()],
            "epochs": [asdict(r) for r in st.epochs],
            "predictions": len(st.predictions),
            "train_pass_at_n": any(p.train_pass for p in st.predictions),
            "solved": self.solved(),
            "budget_s": self.budget_s,
            "elapsed_s": round(self.elapsed_s, 4),
            "started_at": self.started_wall,
            "timings": {k: times.get(k, 0.0) for k in TIME_PHASES},
        }
        if self.task.test_outputs is not None:
            result["pass_at_n"] = any(p.test_pass for p in st.predictions)
        return result

    def _status(self) -> str:
        """running, done, or interrupted (stopped by the run's deadline: a resumed run redoes it)."""
        if not self.done:
            return "running"
        return "interrupted" if self.state.stop_reason == "deadline" else "done"

    def _save(self, new: list[Prediction]) -> None:
        if self.out_dir is None:
            return
        append_jsonl_gz(self.out_dir / PREDICTIONS_FILE, (p.to_dict() for p in new))
        atomic_write_json(self.out_dir / RESULT_FILE, self.result())

    def _finish(self) -> None:
        if self.out_dir is not None:
            atomic_write_json(self.out_dir / RESULT_FILE, self.result())
        log.info("%s done (%s) after %d epochs, %d predictions, %.1f s", self.task.task_id, self.state.stop_reason,
                 len(self.state.epochs), len(self.state.predictions), self.elapsed_s)


ADAPTER_SLOT = "slot0"


def solve_tasks(tasks: list[Task], backend: Backend, executor: Executor, config: Config, budget_s: float,
                out_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Solve tasks one after another on one device, reusing one adapter slot (reset per task)."""
    backend.create_adapter(ADAPTER_SLOT)
    results = []
    for task in tasks:
        solver = TaskSolver(task, backend, executor, config, budget_s, out_dir, adapter=ADAPTER_SLOT)
        results.append(solver.run())
    return results
