"""K task solvers, one engine, one program executor: keep the engine busy.

Each round:
    1. hand finished program executions back to their solvers (-> learn, search or done)
    2. fill free adapter slots with new solvers (`refill`)
    3. train every solver that is in its learn phase, one after another (engine work)
    4. gather: if solvers are ready to search while others' programs are still executing,
       wait for those executions (at most `gather_s`) and train the solvers they release
    5. one engine call with the next request of every solver in its search phase
       (as many adapters as the backend can mix in one call); their programs go to the
       executor thread, so the next round's engine work overlaps their execution
    6. with no engine work to do, wait for an execution to finish (engine idle)

Why gather: decoding is memory-bound, so a call with one task's 8 sequences takes about as
long as one with four tasks' 32. Without it the solvers drift apart (the first task whose
programs finish executing learns and searches alone, the others follow in their own small
calls) and the engine spends its time on near-empty calls: measured on an H100 with the 8B
shape, 4 epochs took 2.47x the wall time of 1 epoch at equal predictions (docs/benchmarks.md).

A solver that raises is finished with `error` set; the others carry on. A failing
engine call fails the solvers that were in it. Engine time is logged per call
(`EngineLog`), which gives the worker's busy fraction and the report's timeline.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from arc25.backends.base import Backend
from arc25.execution import Executor, TaskExecution, execute_on_tasks
from arc25.search_and_learn import ADAPTER_SLOT, Job, TaskSolver

log = logging.getLogger(__name__)

Refill = Callable[[str], "TaskSolver | None"]  # a free adapter slot -> a new solver using it, or None


def adapter_slots(backend: Backend, k: int) -> list[str]:
    """Create k adapter slots once per process (the solvers reset them per task)."""
    names = [ADAPTER_SLOT] + [f"slot{i}" for i in range(1, k)]
    for name in names:
        try:
            backend.adapter_version(name)  # made by an earlier call in this process: reuse it
        except KeyError:
            backend.create_adapter(name)
    return names


@dataclass
class EngineSpan:
    kind: str  # generate | train
    start: float  # time.time()
    end: float
    tasks: list[str]
    sequences: int = 0
    tokens: int = 0  # completion tokens (generate) or trained tokens (train)


@dataclass
class EngineLog:
    """Every engine call of one worker; optionally appended to a JSONL file as it happens."""

    path: Path | None = None
    started: float = field(default_factory=time.time)  # the model is loaded: the engine could work from here
    busy_s: dict[str, float] = field(default_factory=lambda: {"generate": 0.0, "train": 0.0})
    tokens: dict[str, int] = field(default_factory=lambda: {"generate": 0, "train": 0})
    sequences: dict[str, int] = field(default_factory=lambda: {"generate": 0, "train": 0})
    calls_by_kind: dict[str, int] = field(default_factory=lambda: {"generate": 0, "train": 0})

    def record(self, span: EngineSpan) -> None:
        self.busy_s[span.kind] = self.busy_s.get(span.kind, 0.0) + span.end - span.start
        self.tokens[span.kind] = self.tokens.get(span.kind, 0) + span.tokens
        self.sequences[span.kind] = self.sequences.get(span.kind, 0) + span.sequences
        self.calls_by_kind[span.kind] = self.calls_by_kind.get(span.kind, 0) + 1
        if self.path is not None:
            with open(self.path, "a") as f:  # one small write per line: readers see whole lines
                f.write(json.dumps(asdict(span), separators=(",", ":")) + "\n")

    def summary(self, now: float | None = None) -> dict[str, float]:
        wall = max(1e-9, (now or time.time()) - self.started)
        busy = sum(self.busy_s.values())
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
        }


class Scheduler:
    """Drives up to len(slots) solvers; `run()` yields each solver as it finishes."""

    def __init__(self, backend: Backend, executor: Executor, slots: list[str], refill: Refill,
                 engine_log: EngineLog | None = None, idle_wait_s: float = 0.5, gather_s: float = 3.0) -> None:
        self.backend, self.executor, self.refill = backend, executor, refill
        self.free = list(slots)
        self.solvers: list[TaskSolver] = []
        self.errors: dict[int, BaseException] = {}  # id(solver) -> why it failed
        self.engine_log = engine_log or EngineLog()
        self.idle_wait_s = idle_wait_s
        self.gather_s = gather_s
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="execute")  # Executor: one run at a time
        self._pending: dict[Future, TaskSolver] = {}
        self.exhausted = False  # refill returned None: nothing to claim right now

    def __enter__(self) -> Scheduler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
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
        self._fill()
        worked = self._train()
        if self._gather():
            worked |= self._train()
        worked |= self._generate()
        if not worked and self._pending:
            wait(list(self._pending), timeout=self.idle_wait_s, return_when=FIRST_COMPLETED)
        self._collect_executions()
        return self._retire()

    def error(self, solver: TaskSolver) -> BaseException | None:
        return self.errors.get(id(solver))

    def remove(self, solver: TaskSolver) -> None:
        """Take a solver out (stopped or lost from outside); its slot is free again."""
        if solver in self.solvers:
            self.solvers.remove(solver)
            self.free.append(solver.adapter)
            for future, owner in list(self._pending.items()):
                if owner is solver:
                    del self._pending[future]  # its programs still run; nobody reads them

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
        self.errors[id(solver)] = exc
        solver.state.phase = "done"  # not stop(): a failed task writes nothing more

    def _train(self) -> bool:
        learners = [s for s in self.solvers if s.phase == "learn"]
        for solver in learners:
            start = time.time()
            try:
                solver.learn()
            except Exception as exc:  # noqa: BLE001 - one task's failure must not end the others
                self._fail(solver, exc)
            epoch = solver.state.epochs[-1] if solver.state.epochs else None
            self.engine_log.record(EngineSpan("train", start, time.time(), [solver.task.task_id],
                                              sequences=epoch.train_samples if epoch else 0))
        return bool(learners)

    def _gather(self) -> bool:
        """Wait (at most gather_s) for the executions of solvers that would miss this round's call."""
        if self.gather_s <= 0 or not self._pending or not any(s.phase == "search" for s in self.solvers):
            return False
        wait(list(self._pending), timeout=self.gather_s, return_when=ALL_COMPLETED)
        self._collect_executions()
        return True

    def _generate(self) -> bool:
        batch: list[TaskSolver] = []
        adapters: set[str] = set()
        for solver in self.solvers:
            if solver.phase != "search":
                continue
            adapter = solver.adapter if solver.adapter_ready else None
            if adapter is not None and adapter not in adapters:
                if len(adapters) >= self.backend.max_adapters_per_call:
                    continue  # next round
                adapters.add(adapter)
            batch.append(solver)
        if not batch:
            return False
        requests, members = [], []
        for solver in batch:
            try:
                requests.append(solver.request())
                members.append(solver)
            except Exception as exc:  # noqa: BLE001
                self._fail(solver, exc)
        if not requests:
            return True
        start = time.time()
        try:
            answers = self.backend.generate(requests)
        except Exception as exc:  # noqa: BLE001 - the call's tasks fail, the worker goes on
            for solver in members:
                self._fail(solver, exc)
            return True
        seconds = time.time() - start
        completions = [c for answer in answers for cs in answer for c in cs]
        self.engine_log.record(EngineSpan("generate", start, start + seconds, [s.task.task_id for s in members],
                                          len(completions), sum(c.completion_tokens for c in completions)))
        for solver, answer in zip(members, answers):
            solver.timings.seconds["generate"] += seconds
            try:
                jobs = solver.accept(answer)
            except Exception as exc:  # noqa: BLE001
                self._fail(solver, exc)
                continue
            self._pending[self._pool.submit(self._execute, solver, jobs)] = solver
        return True

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
        gone = [s for s in self.solvers if s.done]
        for solver in gone:
            self.remove(solver)
        return gone
