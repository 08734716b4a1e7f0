"""Search and learn for one ARC task, as a state machine a scheduler drives.

    search:  the solver offers its next engine request (this epoch's prompts under fresh
             augmentations, its adapter or the base model, its deadline)
    execute: the scheduler hands back the completions; their programs run in the sandbox
    learn:   relabel this epoch's programs (hindsight) and train the task's LoRA on them
    done:    solved with confidence, the budget / epochs / predictions are spent, or stopped
             from outside (`stop(reason)`, e.g. the run's deadline)
    failed:  a step raised (`fail(exc)`); the error stays on the solver (`error`)

`request()`, `accept()`, `executed()` and `learn()` move the solver through the
phases without ever blocking on the engine or the executor, so one worker can keep
several tasks in flight and serve all their prompts from one stepped engine
(`arc25.scheduler`). The phase is the solver's own: a driver asks (`phase`, `done`,
`error`) and tells (`stop`, `fail`), never writes it. `step()` runs one phase the
simple way (one task, blocking), for `run()` and tests. After every search the
task's result (best attempts so far, per-epoch metrics, time breakdown) is written
atomically, so a crash loses at most the epoch in flight; a solver started on a task
that has earlier predictions on disk resumes from them (a crashed, interrupted or
re-run task never loses answers).
Every write happens inside `fence()`: a worker that lost its claim writes nothing.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Callable

import numpy as np

from arc25.attempts import agreeing_programs, select_attempts
from arc25.augment import Augmentation
from arc25.backends.base import Backend, Completion, GenerationRequest, SamplingParams, Timings
from arc25.config import Config, derive_seed
from arc25.execution import Executor, TaskExecution, execute_on_tasks
from arc25.grid import grid_to_json
from arc25.io import append_jsonl_gz, atomic_write_json, read_jsonl, read_text
from arc25.metrics import pass_at_n, score_prediction, train_pass_at_n
from arc25.prediction import Prediction
from arc25.prompts import PromptSpec, build_messages, extract_code
from arc25.relabel import Relabeler, training_sample
from arc25.rundir import PREDICTIONS_FILE, RESULT_FILE, task_dir_name
from arc25.task_result import TIME_PHASES, EpochRecord, TaskResult
from arc25.tasks import Task

log = logging.getLogger(__name__)


class Phase(StrEnum):
    """Where a task solver is (a string too: the workers' status files show it)."""

    SEARCH = "search"  # ready to offer its next engine request
    GENERATE = "generate"  # its request is with the engine
    EXECUTE = "execute"  # its programs run in the sandbox
    LEARN = "learn"  # ready to train its adapter
    DONE = "done"  # finished: its result is written (stop_reason says why)
    FAILED = "failed"  # a step raised: the solver's `error`; it writes nothing more

    @property
    def ended(self) -> bool:
        return self in (Phase.DONE, Phase.FAILED)


@dataclass
class SolverState:
    epoch: int = 0
    phase: Phase = Phase.SEARCH
    stop_reason: str | None = None
    predictions: list[Prediction] = field(default_factory=list)
    epochs: list[EpochRecord] = field(default_factory=list)


Job = tuple[str | None, Task, Augmentation]  # one program to run: (code, task, augmentation)


@dataclass
class Draft:
    """A completion waiting for its program to run."""

    spec: PromptSpec
    completion: Completion
    code: str | None


class TaskSolver:
    """Search and learn on one task: a state machine (`request` / `accept` / `executed` / `learn`).

    `budget_s` is the task's own time; `deadline` (absolute time.time()) is the run's.
    Generation is cut at whichever comes first, so the budget holds inside an epoch.
    """

    def __init__(
        self,
        task: Task,
        backend: Backend,
        executor: Executor | None,
        config: Config,
        budget_s: float,
        out_dir: str | Path | None = None,
        adapter: str = "task",
        clock: Callable[[], float] = time.monotonic,
        deadline: float | None = None,
        fence: Callable[[], AbstractContextManager[Any]] = nullcontext,
    ) -> None:
        self.task, self.backend, self.executor, self.config = task, backend, executor, config
        self.budget_s, self.adapter, self.clock, self.fence = budget_s, adapter, clock, fence
        self.out_dir = Path(out_dir) / task_dir_name(task.task_id) if out_dir is not None else None
        self.state = SolverState()
        self.timings = Timings()
        self.relabeler = Relabeler.for_task(task, config.training, config.seed)
        # The task's adapter serves only once an optimizer step changed it: until then it equals the base
        # model, and a LoRA request would pay vLLM's LoRA kernels for nothing (~1.35x per decoded token
        # on the 8B shape, docs/benchmarks.md)
        self.adapter_reset = False
        self.adapter_ready = False
        self.started = clock()
        self.started_wall = time.time()
        self.deadline = min(self.started_wall + budget_s, deadline if deadline is not None else math.inf)
        self._drafts: list[Draft] = []
        self._search_started = 0.0
        self._error: BaseException | None = None
        if self.out_dir is not None:
            with self.fence():
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
            rows = json.loads(read_text(self.out_dir / RESULT_FILE))["epochs"]
            return [EpochRecord.from_dict(row) for row in rows if row["epoch"] < self.state.epoch]
        except (OSError, ValueError, KeyError, TypeError):
            return []

    # -- the state machine ------------------------------------------------------------
    @property
    def phase(self) -> Phase:
        return self.state.phase

    @property
    def done(self) -> bool:
        """Nothing more to do: done, or failed."""
        return self.state.phase.ended

    @property
    def error(self) -> BaseException | None:
        """Why the solver failed (phase FAILED); None otherwise."""
        return self._error

    def _expect(self, phase: Phase) -> None:
        if self.state.phase != phase:
            raise RuntimeError(f"{self.task.task_id}: {phase.value} step in phase {self.state.phase.value}")

    @property
    def elapsed_s(self) -> float:
        return self.clock() - self.started

    def step(self) -> bool:
        """Advance one phase the blocking way (one task alone); True while there is more to do."""
        if self.state.phase == Phase.SEARCH:
            request = self.request()
            with self.timings.measure("generate"):
                [completions] = self.backend.generate([request])
            jobs = self.accept(completions)
            with self.timings.measure("execute"):
                executions = execute_on_tasks(self.executor, jobs)
            self.executed(executions)
        elif self.state.phase == Phase.LEARN:
            self.learn()
        return not self.done

    def run(self) -> TaskResult:
        while self.step():
            pass
        return self.result()

    def stop(self, reason: str) -> None:
        """End the task now (e.g. the run's deadline); the attempts so far stand and its result is written.
        A solver that already ended keeps its ending."""
        if not self.done:
            self.state.phase, self.state.stop_reason = Phase.DONE, reason
            self._finish()

    def fail(self, exc: BaseException) -> None:
        """A step of this task raised (here or in its driver): the task ends failed with `exc` as its error and
        writes nothing more (its last saved epoch stands; a retry resumes from it). A solver that already ended
        keeps its ending."""
        if not self.done:
            self.state.phase, self._error = Phase.FAILED, exc

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

    def request(self) -> GenerationRequest:
        """This epoch's engine request (search phase -> generate)."""
        self._expect(Phase.SEARCH)
        self._search_started = self.clock()
        cfg = self.config
        remaining = cfg.search.max_predictions - len(self.state.predictions)
        wanted = min(cfg.search.predictions_per_epoch, remaining)
        n = min(cfg.sampling.n_per_prompt, wanted)
        self._specs = self._prompt_specs(math.ceil(wanted / n))
        with self.timings.measure("other"):
            prompts = [build_messages(self.task, spec) for spec in self._specs]
        self.state.phase = Phase.GENERATE
        adapter = self.adapter if self.adapter_ready else None
        return GenerationRequest(prompts, self._sampling_params(n), adapter, self.deadline)

    def accept(self, completions: list[list[Completion]]) -> list[Job]:
        """The engine's answer (generate -> execute): the programs to run, in order."""
        self._expect(Phase.GENERATE)
        self._drafts = [Draft(spec, c, extract_code(c.text) if c.finish_reason != "deadline" else None)
                        for spec, cs in zip(self._specs, completions) for c in cs]
        self.state.phase = Phase.EXECUTE
        return [(d.code, self.task, d.spec.augmentation) for d in self._drafts]

    def executed(self, executions: list[TaskExecution]) -> None:
        """What the programs did (execute -> learn, search or done); saves the epoch."""
        self._expect(Phase.EXECUTE)
        task, first = self.task, len(self.state.predictions)
        new = [
            Prediction(task.task_id, self.state.epoch, first + i, d.spec, d.completion.text, d.code, ex,
                       score_prediction(task, ex), d.completion.finish_reason, d.completion.completion_tokens)
            for i, (d, ex) in enumerate(zip(self._drafts, executions))
        ]
        self._drafts = []
        self.state.predictions.extend(new)
        self.state.epochs.append(self._epoch_record(new, self.clock() - self._search_started))
        with self.timings.measure("other"):
            self._save(new)
        log.info("%s epoch %d: %s", task.task_id, self.state.epoch, self._summary(self.state.epochs[-1]))
        self.state.phase = self._after_search()
        if self.state.phase == Phase.DONE:
            self._finish()

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
            truncated=sum(p.truncated for p in new),
            tokens=sum(p.completion_tokens for p in new),
        )

    @staticmethod
    def _summary(r: EpochRecord) -> str:
        return (f"{r.predictions} predictions, {r.valid_code} valid code, {r.valid_outputs} valid outputs, "
                f"{r.train_pass} train pass, best correct grids {r.best_correct_grids:.2f}")

    # -- stop ---------------------------------------------------------------------------
    def solved(self) -> bool:
        """Confident: enough distinct train-perfect answers, or enough programs agreeing on one."""
        votes = agreeing_programs(self.state.predictions)  # distinct programs per test answer
        if not votes:
            return False
        s = self.config.search
        return len(votes) >= s.stop_distinct_outputs or max(votes.values()) >= s.stop_agreeing_programs

    def _after_search(self) -> Phase:
        s, st = self.config.search, self.state
        reason = None
        if self.solved():
            reason = "solved"
        elif len(st.predictions) >= s.max_predictions:
            reason = "max_predictions"
        elif st.epoch + 1 >= s.max_epochs:
            reason = "max_epochs"
        elif time.time() >= self.deadline or self.elapsed_s + self._next_epoch_estimate_s() > self.budget_s:
            reason = "budget"
        if reason:
            st.stop_reason = reason
            return Phase.DONE
        return Phase.LEARN if s.learn else self._skip_learning()

    def _skip_learning(self) -> Phase:
        self.state.epoch += 1  # pure sampling: the next epoch's search follows at once
        return Phase.SEARCH

    def _next_epoch_estimate_s(self) -> float:
        """The last epoch's search + learn time: don't start what cannot finish in budget."""
        last = self.state.epochs[-1]
        learn = self.state.epochs[-2].learn_s if len(self.state.epochs) > 1 else 0.0
        return last.search_s + learn

    # -- learn --------------------------------------------------------------------------
    def learn(self) -> None:
        """Relabel and train the task's adapter (learn -> search)."""
        self._expect(Phase.LEARN)
        start = self.clock()
        with self.timings.measure("relabel"):
            chosen = self.relabeler.select(self.state.predictions)
            samples = [training_sample(self.task, p) for p in chosen]
        record = self.state.epochs[-1]
        if samples:
            if not self.adapter_reset:  # a task with nothing to learn never pays for its slot's reset
                with self.timings.measure("reset"):
                    self.backend.reset_adapter(self.adapter)
                self.adapter_reset = True
            with self.timings.measure("train"):
                stats = self.backend.train(self.adapter, samples, deadline=self.deadline)
            self.relabeler.record_training(chosen, stats.trained)
            self.adapter_ready = self.adapter_ready or stats.steps > 0
            record.train_samples = len(stats.trained)
            record.train_loss = stats.mean_loss if stats.steps else None
        record.learn_s = self.clock() - start
        log.info("%s epoch %d: trained on %d relabeled samples", self.task.task_id, self.state.epoch,
                 record.train_samples)
        self.state.epoch += 1
        self.state.phase = Phase.SEARCH

    # -- results ------------------------------------------------------------------------
    def attempts(self) -> list[list[np.ndarray]]:
        return select_attempts(self.task, self.state.predictions)

    def result(self) -> TaskResult:
        """Everything a merger and a report need."""
        st = self.state
        times = {k: round(v, 4) for k, v in self.timings.as_dict().items()}
        accounted = sum(times.values())
        times["other"] = round(times.get("other", 0.0) + max(0.0, self.elapsed_s - accounted), 4)
        metrics = [p.metrics for p in st.predictions]
        return TaskResult(
            task_id=self.task.task_id,
            status=self._status(),
            stop_reason=st.stop_reason,
            attempts=[[grid_to_json(g) for g in pair] for pair in self.attempts()],
            epochs=list(st.epochs),
            predictions=len(st.predictions),
            train_pass_at_n=train_pass_at_n(metrics),
            solved=self.solved(),
            budget_s=self.budget_s,
            elapsed_s=round(self.elapsed_s, 4),
            started_at=self.started_wall,
            timings={k: times.get(k, 0.0) for k in TIME_PHASES},
            pass_at_n=pass_at_n(self.task, metrics),
        )

    def _status(self) -> str:
        """running, done, or interrupted (stopped by the run's deadline: a resumed run redoes it)."""
        if self.state.phase != Phase.DONE:
            return "running"  # failed: the result on disk is the last epoch saved while it ran
        return "interrupted" if self.state.stop_reason == "deadline" else "done"

    def _save(self, new: list[Prediction]) -> None:
        if self.out_dir is None:
            return
        with self.fence():
            append_jsonl_gz(self.out_dir / PREDICTIONS_FILE, (p.to_dict() for p in new))
            atomic_write_json(self.out_dir / RESULT_FILE, self.result().to_dict())

    def _finish(self) -> None:
        if self.out_dir is not None:
            with self.fence():
                atomic_write_json(self.out_dir / RESULT_FILE, self.result().to_dict())
        log.info("%s done (%s) after %d epochs, %d predictions, %.1f s", self.task.task_id, self.state.stop_reason,
                 len(self.state.epochs), len(self.state.predictions), self.elapsed_s)

