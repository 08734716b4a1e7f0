"""What a task's search and learn produced: one type for the solver, claims, merger and report.

`TaskResult` is written as `RUN_DIR/tasks/<name>/result.json` (`rundir.task_dir_name`; atomically, after
every epoch) and read back by `arc25.rundir.read_result`. `from_dict` checks what it
reads, so a reader never trips over a damaged file: it gets a ValueError and treats
the task as having no result.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

TIME_PHASES = ("generate", "execute", "relabel", "train", "reset", "other")
STATUSES = ("running", "done", "interrupted")  # interrupted: stopped by the run's deadline, redone on resume


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
    truncated: int = 0  # completions cut by max_tokens or the deadline (no program: not a wrong one)
    tokens: int = 0  # completion tokens generated

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> EpochRecord:
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in row.items() if k in known})


GridJson = list[list[int]]


@dataclass
class TaskResult:
    task_id: str
    status: str  # one of STATUSES
    stop_reason: str | None
    attempts: list[list[GridJson]]  # per test input, two grids
    epochs: list[EpochRecord] = field(default_factory=list)
    predictions: int = 0
    train_pass_at_n: bool = False  # some program was right on every train pair
    solved: bool = False  # the stop rule's confidence
    budget_s: float = 0.0
    elapsed_s: float = 0.0
    started_at: float = 0.0  # time.time()
    timings: dict[str, float] = field(default_factory=dict)  # seconds per TIME_PHASES
    pass_at_n: float | None = None  # fraction of test inputs some program got right; None without solutions

    @property
    def done(self) -> bool:
        return self.status == "done"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> TaskResult:
        """A result from its JSON; ValueError when it is not one."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        for key, kind in (("task_id", str), ("attempts", list)):
            if not isinstance(data.get(key), kind):
                raise ValueError(f"{key!r} missing or not a {kind.__name__}")
        status = data.get("status", "running")  # attempts without a status still count for the merger
        if status not in STATUSES:
            raise ValueError(f"status {status!r} is not one of {', '.join(STATUSES)}")
        epochs = data.get("epochs") or []
        if not isinstance(epochs, list) or not all(isinstance(e, dict) for e in epochs):
            raise ValueError("'epochs' is not a list of objects")
        timings = data.get("timings") or {}
        if not isinstance(timings, dict):
            raise ValueError("'timings' is not an object")
        return cls(
            task_id=data["task_id"], status=status, stop_reason=data.get("stop_reason"),
            attempts=data["attempts"], epochs=[EpochRecord.from_dict(e) for e in epochs],
            predictions=int(data.get("predictions") or 0), train_pass_at_n=bool(data.get("train_pass_at_n")),
            solved=bool(data.get("solved")), budget_s=float(data.get("budget_s") or 0.0),
            elapsed_s=float(data.get("elapsed_s") or 0.0), started_at=float(data.get("started_at") or 0.0),
            timings={str(k): float(v) for k, v in timings.items() if isinstance(v, (int, float))},
            pass_at_n=None if data.get("pass_at_n") is None else float(data["pass_at_n"]),
        )
