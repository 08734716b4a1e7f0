"""K task solvers, one engine, one program executor: keep the engine busy.

One way to drive the engine, for every backend (the stepped interface, `StreamingBackend`): each
solver's request joins the engine's batch the moment the solver is ready to search, and leaves it when
its last sequence ends; the scheduler steps the engine and hands every finished answer to its solver at
once. What one step runs is the backend's batching rule (vLLM: its continuous batch; HF and scripted:
every request pending at the step, in one batch). Learn steps run on a training thread beside the
engine (`run.concurrent_training`, backends with `trains_concurrently`), so the engine never waits for
a task to learn and the tasks never wait for each other; other backends train on this thread between
steps. Each round:
    1. hand finished program executions and learn steps back to their solvers
    2. fill free adapter slots with new solvers (`refill`)
    3. hand new learners to the training thread (or train them here, one after another)
    4. submit the request of every solver that is ready to search
    5. step the engine for `STEP_SLICE_S`; answers go to their solvers, their programs to the executor
    6. with nothing to step, wait for an execution or a learn step to finish (engine idle)
Measured on an H100 with the 8B shape (bench/gpu_overlap.py): continuous refill decodes k calls'
worth of sequences 8% faster than k lockstep calls, and 4 tasks' learn steps (3.4 s alone) cost
0.3-1.0 s beside the decoding instead of 3.4 s before it. (Until issue 20 HF and scripted were driven
one blocking `generate` per round, with a `gather_s` wait for executions before it: that mode is gone.)

The solvers own their phases (`arc25.search_and_learn.Phase`): the scheduler asks them and tells them
(`stop`, `fail`), never sets a phase itself. A solver that raises is failed (`solver.fail(exc)`: its
error is on it) and leaves; the others carry on. A failing engine step fails the solvers that were in it.
Requests are admitted by the engine interface's one rule (`arc25.backends.base.admits`). Engine
time is logged per call (`EngineLog`), which gives the worker's busy fraction and the report's timeline.
"""

from __future__ import annotations

import itertools
import logging
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from arc25.backends.base import Completion, StreamingBackend, admits
from arc25.execution import Executor, TaskExecution, execute_on_tasks
from arc25.rundir import append_log_line
from arc25.search_and_learn import Job, Phase, TaskSolver

log = logging.getLogger(__name__)

Refill = Callable[[str], "TaskSolver | None"]  # a free adapter slot -> a new solver using it, or None
STEP_SLICE_S = 0.25  # engine steps per round, between looks at executions and learn steps


@dataclass
class EngineSpan:
    kind: str  # generate | train
    start: float  # time.time()
    end: float
    tasks: list[str]
    sequences: int = 0  # completions ended (generate) or samples trained (train)
    tokens: int = 0  # completion tokens (generate) or trained tokens (train)
    # generate: mean sequences submitted and not ended per engine step, running and waiting alike
    # (the engine interface's `running()` cannot tell them apart); 0: not measured
    in_engine: float = 0.0
    steps: int = 0  # generate: engine steps taken in the span
    prompt_tokens: int = 0  # generate: the prompt tokens of the completions that ended (each sequence's context)


@dataclass
class EngineLog:
    """Every engine call of one worker; optionally appended to a JSONL file as it happens."""

    path: Path | None = None
    started: float = field(default_factory=time.time)  # the model is loaded: the engine could work from here
    busy_s: dict[str, float] = field(default_factory=lambda: {"generate": 0.0, "train": 0.0})
    tokens: dict[str, int] = field(default_factory=lambda: {"generate": 0, "train": 0})
    sequences: dict[str, int] = field(default_factory=lambda: {"generate": 0, "train": 0})
    calls_by_kind: dict[str, int] = field(default_factory=lambda: {"generate": 0, "train": 0})
    # (start, end) of every span: training beside generation overlaps, busy time is their union
    intervals: list[tuple[float, float]] = field(default_factory=list)
    in_engine_s: float = 0.0  # sum of span.in_engine x duration over generate spans that measured it
    in_engine_span_s: float = 0.0
    prompt_tokens: int = 0  # generate spans' prompt tokens, one prompt per completion
    steps: int = 0  # engine steps of the generate spans
    step_tokens: int = 0  # completion tokens of the generate spans

    def record(self, span: EngineSpan) -> None:
        self.busy_s[span.kind] = self.busy_s.get(span.kind, 0.0) + span.end - span.start
        self.tokens[span.kind] = self.tokens.get(span.kind, 0) + span.tokens
        self.sequences[span.kind] = self.sequences.get(span.kind, 0) + span.sequences
        self.calls_by_kind[span.kind] = self.calls_by_kind.get(span.kind, 0) + 1
        self.intervals.append((span.start, span.end))
        if span.kind == "generate":
            self.prompt_tokens += span.prompt_tokens
        if span.in_engine:
            self.in_engine_s += span.in_engine * (span.end - span.start)
            self.in_engine_span_s += span.end - span.start
        if span.steps:
            self.steps += span.steps
            self.step_tokens += span.tokens
        if self.path is not None:
            append_log_line(self.path, asdict(span))  # best effort: a full disk costs log lines, not the run

    def summary(self, now: float | None = None) -> dict[str, float]:
        wall = max(1e-9, (now or time.time()) - self.started)
        busy = union_s(self.intervals)
        gen_s = self.busy_s.get("generate", 0.0)
        return {
            "wall_s": round(wall, 3), "busy_s": round(busy, 3), "busy_fraction": round(busy / wall, 4),
            "generate_s": round(gen_s, 3), "train_s": round(self.busy_s.get("train", 0.0), 3),
            "generated_tokens": self.tokens.get("generate", 0),
            "tokens_per_s": round(self.tokens.get("generate", 0) / gen_s, 1) if gen_s > 0 else 0.0,
            "calls": sum(self.calls_by_kind.values()),
            "generate_calls": self.calls_by_kind.get("generate", 0),
            # a full call decodes many sequences at once; few per call means a starved engine
            "sequences_per_call": round(self.sequences.get("generate", 0) / max(1, self.calls_by_kind.get("generate", 0)), 1),
            # sequences submitted and not ended per step, running + waiting (an upper bound on those
            # decoding at once: requests wait when the KV cache or max_num_seqs is full)
            "mean_in_engine": round(self.in_engine_s / self.in_engine_span_s, 1) if self.in_engine_span_s else 0.0,
            # sequences decoding at once, measured: a decoding step makes one token per running
            # sequence (tokens of requests aborted or still in flight are not counted: slightly low)
            "tokens_per_step": round(self.step_tokens / self.steps, 1) if self.steps else 0.0,
            # each running sequence's context (what a decoding step reads of the KV cache): arc25.throughput
            "mean_prompt_tokens": round(self.prompt_tokens / max(1, self.sequences.get("generate", 0)), 1),
            "mean_completion_tokens": round(self.tokens.get("generate", 0) / max(1, self.sequences.get("generate", 0)), 1),
        }


def union_s(intervals: list[tuple[float, float]]) -> float:
    """Seconds covered by at least one interval."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


class Scheduler:
    """Drives up to len(slots) solvers; `run()` yields each solver as it finishes."""

    def __init__(self, backend: StreamingBackend, executor: Executor, slots: list[str], refill: Refill,
                 engine_log: EngineLog | None = None, idle_wait_s: float = 0.5,
                 concurrent_training: bool = True) -> None:
        self.backend, self.executor, self.refill = backend, executor, refill
        self.free = list(slots)
        self.solvers: list[TaskSolver] = []
        self.engine_log = engine_log or EngineLog()
        self.idle_wait_s = idle_wait_s
        self.concurrent_training = concurrent_training and getattr(backend, "trains_concurrently", False)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="execute")  # Executor: one run at a time
        self._trainer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="train") if self.concurrent_training else None
        self._pending: dict[Future, TaskSolver] = {}
        self._training: dict[Future, TaskSolver] = {}
        self._in_flight: dict[int, TaskSolver] = {}  # request key -> its solver
        self._submitted_at: dict[int, float] = {}
        self._keys = itertools.count()
        self._span: EngineSpan | None = None  # the engine's current busy stretch
        self.exhausted = False  # refill returned None: nothing to claim right now
        log.info("scheduler: %s", "training beside the engine" if self.concurrent_training else "training between engine steps")

    def __enter__(self) -> Scheduler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._close_span()
        for key in list(self._in_flight):
            self.backend.abort(key)
        self._in_flight.clear()
        if self._trainer is not None:
            self._trainer.shutdown(wait=True, cancel_futures=True)
        self._pool.shutdown(wait=True, cancel_futures=True)

    # -- the loop ---------------------------------------------------------------------
    def run(self) -> Iterator[TaskSolver]:
        """Rounds until no solver is left and `refill` has nothing more."""
        while True:
            yield from self.round()
            if not self.solvers and self.exhausted:
                return

    def round(self) -> list[TaskSolver]:
        """One round (see the module docstring); the solvers that finished in it."""
        self._collect_executions()
        self._collect_training()
        self._fill()
        worked = self._start_training()
        worked |= self._submit()
        worked |= self._step_engine()
        if not worked:
            self._close_span()
            waiting = list(self._pending) + list(self._training)
            if waiting:
                wait(waiting, timeout=self.idle_wait_s, return_when=FIRST_COMPLETED)
        self._collect_executions()
        self._collect_training()
        return self._retire()

    def stop(self, solver: TaskSolver, reason: str) -> None:
        """End a solver now (e.g. the run's deadline), once its learn step (if one runs) has returned.

        Its programs may still be running: their results are dropped, not handed to a solver that is done
        (issue 18: that failed an assertion, so a task stopped by the deadline counted as a crash)."""
        self._wait_training(solver)
        self._abort(solver)
        self._drop_executions(solver)
        solver.stop(reason)

    def remove(self, solver: TaskSolver) -> None:
        """Take a solver out (stopped or lost from outside); its slot is free again."""
        if solver in self.solvers:
            self._wait_training(solver)  # its slot's adapter is not reused while a thread trains it
            self._abort(solver)
            self.solvers.remove(solver)
            self.free.append(solver.adapter)
            self._drop_executions(solver)

    def _drop_executions(self, solver: TaskSolver) -> None:
        for future, owner in list(self._pending.items()):
            if owner is solver:
                del self._pending[future]  # its programs still run; nobody reads them

    def _wait_training(self, solver: TaskSolver) -> None:
        for future, owner in list(self._training.items()):
            if owner is solver:
                wait([future])
                self._collect_training()

    def _abort(self, solver: TaskSolver) -> None:
        for key, owner in list(self._in_flight.items()):
            if owner is solver:
                del self._in_flight[key]
                self._submitted_at.pop(key, None)
                self.backend.abort(key)

    # -- steps ------------------------------------------------------------------------
    def _fill(self) -> None:
        self.exhausted = False
        while self.free:
            slot = self.free[0]
            solver = self.refill(slot)
            if solver is None:
                self.exhausted = True
                return
            self.free.pop(0)
            self.solvers.append(solver)

    def _fail(self, solver: TaskSolver, exc: BaseException) -> None:
        log.error("task %s failed: %s: %s", solver.task.task_id, type(exc).__name__, exc, exc_info=exc)
        solver.fail(exc)  # not stop(): a failed task writes nothing more

    def _learn(self, solver: TaskSolver) -> tuple[float, float]:
        start = time.time()
        solver.learn()
        return start, time.time()

    def _record_train(self, solver: TaskSolver, start: float, end: float) -> None:
        epoch = solver.state.epochs[-1] if solver.state.epochs else None
        self.engine_log.record(EngineSpan("train", start, end, [solver.task.task_id],
                                          sequences=epoch.train_samples if epoch else 0))

    def _train(self) -> bool:
        learners = [s for s in self.solvers if s.phase == Phase.LEARN and s not in self._training.values()]
        for solver in learners:
            start = time.time()
            try:
                solver.learn()
            except Exception as exc:  # noqa: BLE001 - one task's failure must not end the others
                self._fail(solver, exc)
            self._record_train(solver, start, time.time())
        return bool(learners)

    def _start_training(self) -> bool:
        """Learners go to the training thread (they run there one after another)."""
        if self._trainer is None:
            if any(s.phase == Phase.LEARN for s in self.solvers):
                self._close_span()  # the engine waits while this thread trains
            return self._train()
        training = set(map(id, self._training.values()))
        for solver in self.solvers:
            if solver.phase == Phase.LEARN and id(solver) not in training:
                self._training[self._trainer.submit(self._learn, solver)] = solver
        return False  # the engine's work is elsewhere: a round with nothing to step waits

    def _collect_training(self) -> None:
        for future in [f for f in self._training if f.done()]:
            solver = self._training.pop(future)
            try:
                start, end = future.result()
                self._record_train(solver, start, end)
            except Exception as exc:  # noqa: BLE001
                self._fail(solver, exc)

    def _submit(self) -> bool:
        """The request of every solver ready to search joins the engine's batch."""
        flying = set(map(id, self._in_flight.values())) | set(map(id, self._training.values()))
        adapters = {s.adapter for s in self._in_flight.values() if s.adapter_ready}
        submitted = False
        for solver in self.solvers:
            if solver.phase != Phase.SEARCH or id(solver) in flying:
                continue
            if not self._admit(adapters, solver):
                continue  # the engine's LoRA slots are taken: when a request ends
            key = next(self._keys)
            try:
                self.backend.submit(key, solver.request())
            except Exception as exc:  # noqa: BLE001
                self._fail(solver, exc)
                continue
            self._in_flight[key] = solver
            self._submitted_at[key] = time.time()
            submitted = True
        return submitted

    def _step_engine(self) -> bool:
        """Step the engine for one slice; each answer goes to its solver at once."""
        if not self._in_flight:
            return False
        tasks = sorted({s.task.task_id for s in self._in_flight.values()})
        if self._span is not None and self._span.tasks != tasks:
            self._close_span()  # one span per set of tasks sharing the engine: the report shows who did
        if self._span is None:
            now = time.time()
            self._span = EngineSpan("generate", now, now, tasks)
        until = time.time() + STEP_SLICE_S
        while self._in_flight and time.time() < until:
            self._span.in_engine += self.backend.running()
            self._span.steps += 1
            try:
                answers = self.backend.step()
            except Exception as exc:  # noqa: BLE001 - the tasks in flight fail, the worker goes on
                for key, solver in list(self._in_flight.items()):
                    self._fail(solver, exc)
                    try:
                        self._abort(solver)
                    except Exception:  # noqa: BLE001 - the engine is broken already; said above
                        self._in_flight.pop(key, None)
                return True
            for key, answer in answers:
                self._answer(key, answer)
            if any(f.done() for f in itertools.chain(self._pending, self._training)):
                break  # a task is ready for its next phase: submit its request without waiting
        self._span.end = time.time()
        return True

    def _answer(self, key: int, answer: list[list[Completion]]) -> None:
        solver = self._in_flight.pop(key, None)
        submitted = self._submitted_at.pop(key, time.time())
        if solver is None or solver.done:
            return
        completions = [c for cs in answer for c in cs]
        self._span.sequences += len(completions)
        self._span.tokens += sum(c.completion_tokens for c in completions)
        self._span.prompt_tokens += sum(c.prompt_tokens for c in completions)
        solver.timings.seconds["generate"] += time.time() - submitted
        self._accept(solver, answer)

    def _close_span(self) -> None:
        span, self._span = self._span, None
        if span is not None and span.end > span.start:
            span.in_engine = round(span.in_engine / max(1, span.steps), 2)
            self.engine_log.record(span)

    def _admit(self, adapters: set[str], solver: TaskSolver) -> bool:
        """Whether the solver's request may join the engine beside `adapters` (`admits`); if so, its adapter
        is added to them. Its request is under its adapter once that is trained, else under the base model."""
        adapter = solver.adapter if solver.adapter_ready else None
        if not admits(adapters, adapter, self.backend.max_adapters_per_call):
            return False
        if adapter is not None:
            adapters.add(adapter)
        return True

    def _accept(self, solver: TaskSolver, answer: list[list[Completion]]) -> None:
        """The engine's answer to its solver; its programs go to the executor thread."""
        try:
            jobs = solver.accept(answer)
        except Exception as exc:  # noqa: BLE001
            self._fail(solver, exc)
            return
        self._pending[self._pool.submit(self._execute, solver, jobs)] = solver

    def _execute(self, solver: TaskSolver, jobs: list[Job]) -> list[TaskExecution]:
        with solver.timings.measure("execute"):
            return execute_on_tasks(self.executor, jobs)

    def _collect_executions(self) -> None:
        for future in [f for f in self._pending if f.done()]:
            solver = self._pending.pop(future)
            try:
                solver.executed(future.result())
            except Exception as exc:  # noqa: BLE001
                self._fail(solver, exc)

    def _retire(self) -> list[TaskSolver]:
        """Solvers that are done (finished here or failed/stopped earlier) leave and free their slot."""
        training = set(map(id, self._training.values()))
        gone = [s for s in self.solvers if s.done and id(s) not in training]
        for solver in gone:
            self.remove(solver)
        return gone
