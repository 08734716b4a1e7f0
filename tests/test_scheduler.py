"""The scheduler's rounds on real ARC tasks: K solvers, one engine call per round, real executions.

The model is `ScriptedBackend` (a test double for the model only: it plays back known
programs); the programs run in the real sandboxed executor, so how long a task's
executions take is real: the played-back program sleeps on big grids.
"""

import pytest

from arc25.backends.scripted import ScriptedBackend
from arc25.config import Config
from arc25.prompts import ANSWER_PREFIX
from arc25.scheduler import EngineLog
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


def config(gather_s: float) -> Config:
    c = Config(seed=0)
    c.sampling.n_per_prompt = 4
    c.search.predictions_per_epoch = 4
    c.search.max_predictions = 4 * EPOCHS
    c.search.max_epochs = EPOCHS
    c.search.stop_agreeing_programs = 99
    c.search.stop_distinct_outputs = 99
    c.training.max_samples_per_epoch = 2
    c.run.gather_s = gather_s
    return c


def run(tasks, executor, gather_s: float, tmp_path) -> tuple[ScriptedBackend, EngineLog]:
    backend, log = ScriptedBackend([SLEEPY]), EngineLog()
    results = solve_tasks(tasks, backend, executor, config(gather_s), 120.0, tmp_path, tasks_in_flight=2,
                          engine_log=log)
    assert [len(r.epochs) for r in results] == [EPOCHS, EPOCHS]
    assert all(r.predictions == 4 * EPOCHS for r in results)
    return backend, log


def test_gather_keeps_the_tasks_in_one_call_per_round(tasks, executor, tmp_path):
    backend, log = run(tasks, executor, gather_s=30.0, tmp_path=tmp_path)
    # every round's call carries both tasks: one call per epoch, not one per task and epoch
    assert [len(call) for call in backend.engine_calls] == [2] * EPOCHS
    summary = log.summary()
    assert summary["generate_calls"] == EPOCHS and summary["sequences_per_call"] == 8.0
    # after the first (base model) call, each call serves both tasks' own adapters
    assert all(sorted(r.adapter for r in call) == ["slot0", "slot1"] for call in backend.engine_calls[1:])


def test_without_gather_the_tasks_drift_into_separate_calls(tasks, executor, tmp_path):
    # the control: the fast task's programs finish first, it learns and searches alone
    backend, log = run(tasks, executor, gather_s=0.0, tmp_path=tmp_path)
    sizes = [len(call) for call in backend.engine_calls]
    assert sizes[0] == 2 and 1 in sizes and len(sizes) > EPOCHS
    assert log.summary()["sequences_per_call"] < 8.0


def test_a_solver_stopped_while_its_programs_run_is_stopped_not_failed(tasks, executor, tmp_path):
    """Issue 18, defect 7: the run's deadline stops a task whose programs are running in the real executor;
    their results arrive after the stop. It ends interrupted (a resumed run redoes it), with no error: on
    the old code `executed()` then failed its phase assertion and the worker counted a crash."""
    from concurrent.futures import wait

    from arc25.scheduler import Scheduler
    from arc25.search_and_learn import TaskSolver

    backend = ScriptedBackend([SLEEPY])
    solver = TaskSolver(tasks[1], backend, executor, config(0.0), 120.0, tmp_path)
    queue = [solver]
    with Scheduler(backend, executor, ["slot0"], lambda slot: queue.pop() if queue else None, gather_s=0.0,
                   streaming=False) as scheduler:
        scheduler.round()  # one engine call; the programs go to the executor thread
        running = list(scheduler._pending)
        assert solver.phase == "execute" and running
        scheduler.stop(solver, "deadline")
        wait(running)  # the programs finish after the stop
        finished = scheduler.round()
    assert finished == [solver] and solver.error is None
    assert solver.state.stop_reason == "deadline" and solver.result().status == "interrupted"
