"""Solve a list of tasks in this process: the scheduler and its solvers without a run folder's workers.

For `arc25 solve`, the benchmarks and the tests; a run's workers (`arc25.workers`) drive the same
scheduler with claims, budgets and a heartbeat instead.
"""

from __future__ import annotations

from pathlib import Path

from arc25.backends.base import Backend
from arc25.config import Config
from arc25.execution import Executor
from arc25.scheduler import EngineLog, Scheduler
from arc25.search_and_learn import TaskSolver
from arc25.slots import adapter_slots
from arc25.task_result import TaskResult
from arc25.tasks import Task


def solve_tasks(tasks: list[Task], backend: Backend, executor: Executor, config: Config, budget_s: float,
                out_dir: str | Path | None = None, tasks_in_flight: int = 1, engine_log: EngineLog | None = None
                ) -> list[TaskResult]:
    """Solve tasks on one device, `tasks_in_flight` at a time through the scheduler; results in task order.

    Adapter slots are created once (if the backend lacks them) and reset per task, as a worker does.
    `engine_log` records the engine's busy time.
    """
    slots = adapter_slots(backend, tasks_in_flight)
    results: dict[str, TaskResult] = {}
    queue = list(tasks)

    def refill(free_slot: str) -> TaskSolver | None:
        if not queue:
            return None
        return TaskSolver(queue.pop(0), backend, executor, config, budget_s, out_dir, adapter=free_slot)

    with Scheduler(backend, executor, slots, refill, engine_log,
                   concurrent_training=config.run.concurrent_training) as scheduler:
        for solver in scheduler.run():
            results[solver.task.task_id] = solver.result()
    return [results[t.task_id] for t in tasks]
