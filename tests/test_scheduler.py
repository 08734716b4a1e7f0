"""The scheduler's rounds on real ARC tasks: K solvers, one stepped engine, real executions: end to end,
then its rules one by one (admission, refill, a failing solver,
the deadline's stop) and its engine summary.

The model is `ScriptedBackend` (a test double for the model only: it plays back known
programs); the programs run in the real sandboxed executor, so how long a task's
executions take is real: the played-back program sleeps on big grids.
"""

import itertools
import threading
import time
from concurrent.futures import wait
from contextlib import contextmanager

import pytest

from arc25.backends.base import Completion, GenerationRequest, check_admitted
from arc25.backends.scripted import ScriptedBackend
from arc25.config import Config
from arc25.prompts import ANSWER_PREFIX
from arc25.scheduler import EngineLog, EngineSpan, Scheduler
from arc25.search_and_learn import Phase, TaskSolver
from arc25.slots import adapter_slots
from arc25.solve import solve_tasks
from arc25.tasks import load_tasks
from helpers import TRAIN_2025, TRAIN_2025_SOLUTIONS

FAST, SLOW = "3c9b0459", "045e512c"  # 3x3 grids; 21x21 and larger grids
# valid, wrong for both tasks (so every epoch runs), slow only where the grids are big
SLEEPY = (f"{ANSWER_PREFIX}```python\nfrom common import *\n\nimport time\nimport numpy as np\n\n"
          "def transform(input_grid):\n    if input_grid.size > 100:\n        time.sleep(0.08)\n"
          "    return np.fliplr(input_grid)\n```")
EPOCHS = 3


@pytest.fixture(scope="module")
def tasks():
    all_tasks = load_tasks(TRAIN_2025, TRAIN_2025_SOLUTIONS)
    return [all_tasks[FAST], all_tasks[SLOW]]


def config() -> Config:
    c = Config(seed=0)
    c.sampling.n_per_prompt = 4
    c.search.predictions_per_epoch = 4
    c.search.max_predictions = 4 * EPOCHS
    c.search.max_epochs = EPOCHS
    c.search.stop_agreeing_programs = 99
    c.search.stop_distinct_outputs = 99
    c.training.max_samples_per_epoch = 2
    return c


def run(tasks, executor, tmp_path) -> tuple[ScriptedBackend, EngineLog]:
    backend, log = ScriptedBackend([SLEEPY]), EngineLog()
    results = solve_tasks(tasks, backend, executor, config(), 120.0, tmp_path, tasks_in_flight=2,
                          engine_log=log)
    assert [len(r.epochs) for r in results] == [EPOCHS, EPOCHS]
    assert all(r.predictions == 4 * EPOCHS for r in results)
    return backend, log


def test_every_backend_is_stepped_and_a_step_serves_every_pending_request(tasks, executor, tmp_path):
    """Issue 20 item 1: one mode. The scripted backend (once driven one blocking `generate` per round) is
    submitted to and stepped like vLLM; its step answers every request pending at it, so the first step
    carries both tasks (submitted in the same round) and every task's request is served once per epoch.
    The old scheduler gave this backend one `generate` call per round, with `gather_s` (gone)."""
    backend, log = run(tasks, executor, tmp_path=tmp_path)
    sizes = [len(call) for call in backend.engine_calls]
    assert sizes[0] == 2 and sum(sizes) == 2 * EPOCHS
    summary = log.summary()
    assert summary["tokens_per_step"] > 0 and summary["generated_tokens"] > 0  # the steps were counted
    # after the first (base model) epoch, each task's requests are under its own adapter
    served = [r.adapter for call in backend.engine_calls[1:] for r in call]
    assert sorted(set(served)) == ["slot0", "slot1"]


# -- the Scheduler's own rules, unit by unit (issue 20 item 4) -----------------------------------------------
# Small real tasks (3x3 grids) and the real executor; the model is `ScriptedBackend` (a test double for the
# model only). "all": `ScriptedBackend`'s own step (one step answers every pending request, as HF's does);
# "stream": `SteppedScripted`, requests join and leave an engine that decodes for a while (as vLLM's does).

SMALL = ["3c9b0459", "0d3d703e", "25d8a9c8", "6150a2bd"]
MODES = ["all", "stream"]
MAX_ROUNDS = 1000  # a stuck scheduler fails the test instead of hanging it


class SteppedScripted(ScriptedBackend):
    """The scripted model behind the stepped interface (`StreamingBackend`), as the scheduler drives
    vLLM: `submit` starts a request, `step` returns those whose decoding took `decode_s`, `abort` drops one.
    `submit` refuses more distinct adapters in flight than the engine serves (as `check_admitted` refuses a
    call) and records the most it held. It plays the model, nothing of the scheduler."""

    def __init__(self, completions: list[str], decode_s: float = 0.0, trains_concurrently: bool = False) -> None:
        super().__init__(completions)
        self.decode_s, self.trains_concurrently = decode_s, trains_concurrently
        self.stepped: dict[int, tuple[float, GenerationRequest]] = {}
        self.dropped: list[int] = []
        self.most_adapters = 0  # distinct adapters in flight at once, at most

    def submit(self, key: int, request: GenerationRequest) -> None:
        check_admitted([r for _, r in self.stepped.values()] + [request], self.max_adapters_per_call)
        self.stepped[key] = (time.time(), request)
        self.most_adapters = max(self.most_adapters, len({r.adapter for _, r in self.stepped.values()} - {None}))

    def step(self) -> list[tuple[int, list[list[Completion]]]]:
        ready = [k for k, (t, _) in self.stepped.items() if time.time() - t >= self.decode_s]
        if not ready:
            time.sleep(0.01)  # an engine step's time
        requests = [(k, self.stepped.pop(k)[1]) for k in ready]
        for _, request in requests:
            self.engine_calls.append([request])
        return [(k, self._answer(request)) for k, request in requests]

    def abort(self, key: int) -> None:
        self.stepped.pop(key, None)
        self.dropped.append(key)

    def running(self) -> int:
        return sum(len(r.prompts) * r.params.n for _, r in self.stepped.values())


@pytest.fixture(scope="module")
def small_tasks():
    all_tasks = load_tasks(TRAIN_2025, TRAIN_2025_SOLUTIONS)
    return [all_tasks[t] for t in SMALL]


def scripted(mode: str, **kwargs) -> ScriptedBackend:
    return SteppedScripted([SLEEPY], **kwargs) if mode == "stream" else ScriptedBackend([SLEEPY])


def drive(backend, executor, tasks, slots: int, tmp_path, solver_kwargs=None, cfg: Config | None = None):
    """Run a Scheduler to the end over `tasks` on `slots` adapter slots; (solvers in the order they finished,
    the slot each refill call was given, the most solvers in flight after any round)."""
    cfg = cfg or config()
    queue, given, finished, most = list(tasks), [], [], 0

    def refill(slot: str) -> TaskSolver | None:
        if not queue:
            return None
        task = queue.pop(0)
        given.append(slot)
        return TaskSolver(task, backend, executor, cfg, 120.0, tmp_path, adapter=slot,
                          **(solver_kwargs or {}).get(task.task_id, {}))

    with Scheduler(backend, executor, adapter_slots(backend, slots), refill,
                   concurrent_training=True) as scheduler:
        for _ in range(MAX_ROUNDS):
            finished += scheduler.round()
            most = max(most, len(scheduler.solvers))
            if not scheduler.solvers and scheduler.exhausted:
                return finished, given, most
    raise AssertionError(f"not done after {MAX_ROUNDS} rounds: {len(finished)} of {len(tasks)} tasks finished")


@pytest.mark.parametrize("mode", MODES)
def test_admission_never_puts_more_adapters_in_the_engine_than_it_serves(mode, small_tasks, executor, tmp_path):
    """Three tasks with trained adapters on an engine that serves one adapter at a time (vLLM's max_loras = 1):
    the scheduler admits by `admits`, so no call (no moment of the running batch) carries two, and every task
    still gets all its epochs. The tasks would share the engine: a step that answers every pending request
    ("all"), or a decoding that lasts ("stream"). Passed on the old code too (its own copies of the rule);
    fails with the rule taken out."""
    backend = scripted(mode, decode_s=0.5) if mode == "stream" else scripted(mode)
    backend.max_adapters_per_call = 1
    finished, _, _ = drive(backend, executor, small_tasks[:3], 3, tmp_path, cfg=config())
    assert sorted(s.task.task_id for s in finished) == sorted(SMALL[:3])
    assert all(s.phase == Phase.DONE and s.error is None and len(s.state.epochs) == EPOCHS for s in finished)
    for call in backend.engine_calls:
        check_admitted(call, 1)
    served = [r.adapter for call in backend.engine_calls for r in call]
    assert {"slot0", "slot1", "slot2"} <= set(served)  # every task's adapter was served, one at a time
    if mode == "stream":
        assert backend.most_adapters == 1
    else:
        assert max(len({r.adapter for r in call} - {None}) for call in backend.engine_calls) == 1


@pytest.mark.parametrize("mode", MODES)
def test_refill_gives_a_finished_tasks_slot_to_the_next_task(mode, small_tasks, executor, tmp_path):
    """Four tasks on two slots: never more than two in flight; each task after the first two starts on the slot
    of the task that finished before it, and resets that slot's adapter before it trains on it. Passed on the
    old code."""
    backend = scripted(mode)
    finished, given, most = drive(backend, executor, small_tasks, 2, tmp_path)
    assert most == 2 and len(finished) == 4
    assert given[:2] == ["slot0", "slot1"]
    assert given[2:] == [s.adapter for s in finished[:2]]  # the first to finish frees the slot the next one gets
    assert all(s.phase == Phase.DONE and len(s.state.epochs) == EPOCHS for s in finished)
    assert sorted(backend.resets) == sorted(s.adapter for s in finished)  # one reset per task, on its own slot


@pytest.mark.parametrize("where", ["execute", "learn"])
@pytest.mark.parametrize("mode", MODES)
def test_a_failing_solver_fails_alone_with_its_error_on_it(mode, where, small_tasks, executor, tmp_path):
    """One task fails (its result cannot be written after its first epoch's programs ran, or its learn step
    raises, on the training thread in "stream" mode); it ends FAILED with that error on the solver itself, the
    scheduler keeps nothing of it, its slot goes to the next task and the others finish. The old code finished
    the others too, but kept the error in a dict keyed by id(solver) and marked the solver "done": fails there."""
    bad = SMALL[0]
    boom = OSError("disk gone") if where == "execute" else RuntimeError("CUDA error: an illegal memory access")
    backend = scripted(mode, trains_concurrently=True) if mode == "stream" else scripted(mode)
    solver_kwargs = {}
    if where == "execute":
        uses = itertools.count()

        @contextmanager
        def fence():
            if next(uses) >= 1:  # the first use is the solver's start; the next is its first epoch's write
                raise boom
            yield

        solver_kwargs = {bad: {"fence": fence}}
    else:
        train = backend.train

        def failing_train(adapter, samples, deadline=None):
            if adapter == "slot0" and not backend.resets.count("slot0") > 1:  # the first task on slot0: `bad`
                raise boom
            return train(adapter, samples, deadline)

        backend.train = failing_train
    finished, given, _ = drive(backend, executor, small_tasks[:3], 2, tmp_path, solver_kwargs)
    failed = [s for s in finished if s.task.task_id == bad]
    assert len(failed) == 1 and failed[0].phase == Phase.FAILED and failed[0].error is boom and failed[0].done
    assert len(failed[0].state.epochs) == 1  # it failed in its first epoch
    others = [s for s in finished if s.task.task_id != bad]
    assert sorted(s.task.task_id for s in others) == sorted(SMALL[1:3])
    assert all(s.phase == Phase.DONE and s.error is None and len(s.state.epochs) == EPOCHS for s in others)
    assert given[2] == "slot0"  # the failed task's slot went to the third task
    assert failed[0].result().status == "running"  # not a finished result: a retry redoes the task


@pytest.mark.parametrize("mode, phase", [("all", Phase.EXECUTE), ("stream", Phase.EXECUTE),
                                         ("stream", Phase.GENERATE), ("stream", Phase.LEARN)])
def test_a_solver_stopped_at_the_deadline_is_interrupted_not_crashed(mode, phase, tasks, small_tasks, executor,
                                                                     tmp_path):
    """`Scheduler.stop()` (issue 18) in each phase a deadline can find a task in: its request in the engine
    (aborted: its answer never comes back), its programs running (their results dropped), its learn step on
    the training thread (the stop waits for it). The task ends DONE, stop_reason "deadline", no error, result
    "interrupted" (a resumed run redoes it), and leaves at the next round with its slot free. Passed on the
    old code, given the Phase and `error` it reads (fixed there by issue 18)."""
    backend = SteppedScripted([SLEEPY], decode_s=3600.0 if phase == Phase.GENERATE else 0.0,
                              trains_concurrently=True) if mode == "stream" else ScriptedBackend([SLEEPY])
    release, training = threading.Event(), threading.Event()
    train = backend.train

    def held_train(adapter, samples, deadline=None):
        training.set()
        release.wait()  # a learn step that is still running when the deadline comes
        return train(adapter, samples, deadline)

    backend.train = held_train
    task = tasks[1] if phase == Phase.EXECUTE else small_tasks[0]  # big grids: its programs take a while
    solver = TaskSolver(task, backend, executor, config(), 120.0, tmp_path, adapter="slot0")
    queue = [solver]
    with Scheduler(backend, executor, adapter_slots(backend, 1), lambda slot: queue.pop() if queue else None,
                   concurrent_training=True) as scheduler:
        for _ in range(50):
            scheduler.round()
            if (solver.phase == phase and phase != Phase.LEARN) or training.is_set():
                break
        assert solver.phase == phase
        if phase == Phase.LEARN:
            threading.Timer(0.2, release.set).start()  # the learn step ends while stop() waits for it
        running = list(scheduler._pending)  # its programs, if it is executing
        assert bool(running) == (phase == Phase.EXECUTE)
        scheduler.stop(solver, "deadline")
        assert solver.phase == Phase.DONE and solver.state.stop_reason == "deadline"
        wait(running)  # its programs finish after the stop (issue 18, defect 7: their results then failed the
        finished = scheduler.round()  # solver's phase check and the worker counted a crash)
        if phase == Phase.GENERATE:
            assert backend.dropped and not backend.stepped  # its request left the engine
        if phase == Phase.LEARN:
            assert backend.train_calls  # the learn step it was in finished before the stop
        assert finished == [solver] and scheduler.free == ["slot0"] and not scheduler.solvers
    assert solver.error is None and solver.result().status == "interrupted"
    # the epoch in flight at the stop is dropped (its answers or programs' results are not read); a learn step
    # comes after its epoch was saved
    assert len(solver.state.epochs) == (1 if phase == Phase.LEARN else 0)


def test_the_engine_summary_names_in_engine_and_decoding_apart():
    """Issue 21's small fix: the streaming engine summary's sequences per step were those submitted and not
    ended (`running()`: waiting ones too), reported as `mean_running`. Now `mean_in_engine` says so, and
    `tokens_per_step` (a decoding step makes one token per running sequence) measures those decoding. A blocking
    call has no steps and counts in neither. New fields: fails on the old code."""
    log = EngineLog(started=0.0)
    log.record(EngineSpan("generate", 0.0, 1.0, ["a"], sequences=8, tokens=80, in_engine=40.0, steps=10))
    log.record(EngineSpan("generate", 1.0, 4.0, ["a", "b"], sequences=8, tokens=600, in_engine=20.0, steps=50))
    log.record(EngineSpan("generate", 4.0, 5.0, ["c"], sequences=8, tokens=999))  # a blocking call: no steps
    summary = log.summary(now=5.0)
    assert summary["tokens_per_step"] == round(680 / 60, 1)  # 11.3 decoding per step
    assert summary["mean_in_engine"] == round((40.0 * 1 + 20.0 * 3) / 4, 1)  # 25.0 in the engine, by time
    assert "mean_running" not in summary
