"""What the parent shows while a run's workers work: a tqdm bar over tasks and one status line per worker.

The lines come from each worker's status file (arc25.rundir); without a terminal (`progress=False`)
the same lines are logged, at most once a minute unless a task finished.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ContextManager

from arc25.rundir import read_json_or_none, status_path

if TYPE_CHECKING:
    from arc25.supervisor import WorkerProcess

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """A tqdm bar over tasks (ETA from tasks finished in this run) and one status line per worker."""

    total: int
    initial: int
    workers: list[WorkerProcess]
    enabled: bool = True
    log_every_s: float = 60.0
    bars: list[Any] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    last_log: float = 0.0
    last_done: int = -1

    def __post_init__(self) -> None:
        if self.enabled:
            from tqdm.auto import tqdm

            self.bars = [tqdm(total=self.total, initial=self.initial, desc="tasks", unit="task", smoothing=0.05,
                              dynamic_ncols=True)]
            # one text-only "bar" per worker under the main one: its status line
            self.bars += [tqdm(total=0, position=k + 1, bar_format="{desc}", leave=False)
                          for k in range(len(self.workers))]
        self.lines = [""] * len(self.workers)

    def update(self, done: int, run_dir: Path) -> None:
        lines = [self.worker_line(w, read_json_or_none(status_path(run_dir, w.index))) for w in self.workers]
        if self.enabled:
            main = self.bars[0]
            if done > main.n:
                main.update(done - main.n)
            for bar, old, new in zip(self.bars[1:], self.lines, lines):
                if new != old:
                    bar.set_description_str(new)
        elif time.time() - self.last_log >= self.log_every_s or done != self.last_done:
            self.last_log, self.last_done = time.time(), done
            log.info("%d/%d tasks finished | %s", done, self.total, " | ".join(lines))
        self.lines = lines

    @staticmethod
    def worker_line(worker: WorkerProcess, status: dict[str, Any] | None) -> str:
        head = f"worker {worker.index} [{worker.device}]"
        if not worker.alive():
            return f"{head}: stopped"
        if not status or status.get("pid") != worker.pid:
            return f"{head}: starting"
        tasks = status.get("tasks") or []
        if status.get("state") == "working" and tasks:
            now = time.time()
            shown = ", ".join(f"{t.get('task_id')} {t.get('phase')} e{t.get('epoch')} {now - (t.get('started') or now):.0f}s"
                              for t in tasks)
            busy = (status.get("engine") or {}).get("busy_fraction")
            return f"{head}: {shown}" + (f" | engine busy {100 * busy:.0f}%" if busy is not None else "")
        return f"{head}: {status.get('state')}"

    def logging(self) -> ContextManager[Any]:
        """Log lines printed above the bars instead of through them."""
        if not self.enabled:
            return contextlib.nullcontext()
        from tqdm.contrib.logging import logging_redirect_tqdm

        return logging_redirect_tqdm()

    def close(self) -> None:
        for bar in reversed(self.bars):
            bar.close()
