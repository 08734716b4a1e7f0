"""The run report: RUN_DIR/report/report.md with the score, metrics, per-task table and plots.

Built from what a run leaves on disk (run.json, tasks/*/result.json and
predictions.jsonl.gz, workers/*.timeline.jsonl). Any of those may be missing or
half-written after a crash, so every section is built on its own: a section that
fails says so in the report and the rest still stands. Plots use matplotlib's Agg
backend (no display).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Mapping

from arc25.rundir import predictions_path, read_jsonl_rows, read_result
from arc25.task_result import TaskResult
from arc25.io import atomic_write_text, read_jsonl, read_text
from arc25.metrics import (
    PredictionMetrics,
    TaskMetrics,
    kind_rows,
    score_task,
    summary_rows,
)
from arc25.scheduler import union_s
from arc25.task_result import TIME_PHASES
from arc25.submission import ScoreReport
from arc25.tasks import Task

log = logging.getLogger(__name__)

REPORT_DIR = "report"
REPORT_FILE = "report.md"
PASS_AT_N_PNG = "pass_at_n.png"
TIME_PNG = "time_breakdown.png"
WORKERS_PNG = "workers.png"
# fields of a prediction row the report keeps (rows also hold completions and grids: too big to keep)
ROW_FIELDS = ("epoch", "index", "valid_code", "valid_outputs", "correct_grids", "pixel_similarity", "train_pass",
              "test_pass")


@dataclass
class RunData:
    """Everything the report reads from a run folder; absent pieces are empty."""

    run_dir: Path
    run: dict[str, Any] = field(default_factory=dict)
    results: dict[str, TaskResult] = field(default_factory=dict)  # task id -> result.json
    predictions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # task id -> rows in order
    timeline: list[dict[str, Any]] = field(default_factory=list)  # one row per task attempt, all workers
    engine: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # worker -> engine calls (generate/train)
    engine_summary: dict[str, dict[str, Any]] = field(default_factory=dict)  # worker -> its status file's summary
    sandbox: dict[str, str] = field(default_factory=dict)  # worker -> the program sandbox's active layers


# -- reading the run ---------------------------------------------------------------------------
def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(read_text(path))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable (%s)", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def outputs_fingerprint(row: dict[str, Any]) -> str:
    """One key for a prediction's whole output set, for rows written without one: equal grids serialize equally."""
    text = json.dumps([row.get("train_outputs"), row.get("test_outputs")], separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def prediction_row(row: dict[str, Any]) -> dict[str, Any]:
    """The part of a predictions.jsonl.gz row the report needs: its scores, not its text and grids.

    Rows carry arc25.metrics' PredictionMetrics fields (kind, outputs_key); older rows named
    the kind "error" and had no outputs_key.
    """
    kept = {k: row.get(k) for k in ROW_FIELDS}
    kept["kind"] = row.get("kind", row.get("error"))
    key = row.get("outputs_key") or outputs_fingerprint(row)
    kept["outputs_key"] = key if row.get("valid_outputs") else None
    return kept


def _read_rows(path: Path, transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None
               ) -> list[dict[str, Any]]:
    """Rows of a jsonl(.gz) file; a corrupt file yields the rows before the damage."""
    rows: list[dict[str, Any]] = []
    if not path.exists():
        return rows
    try:
        for row in read_jsonl(path):
            if isinstance(row, dict):
                rows.append(transform(row) if transform else row)
    except Exception as exc:  # zlib/JSON errors mid-file: keep what came before
        log.warning("%s: read %d rows, then %s", path, len(rows), exc)
    return rows


def load_run(run_dir: str | Path, task_ids: list[str]) -> RunData:
    run_dir = Path(run_dir)
    data = RunData(run_dir, run=_read_json_object(run_dir / "run.json"))
    for task_id in task_ids:
        result = read_result(run_dir, task_id, warn=False)  # the merger has warned already
        if result is not None:
            data.results[task_id] = result
        rows = _read_rows(predictions_path(run_dir, task_id), prediction_row)
        if rows:
            data.predictions[task_id] = sorted(rows, key=lambda r: _num(r.get("index")))
    for path in sorted((run_dir / "workers").glob("worker-*.timeline.jsonl")):
        data.timeline += _read_rows(path)
    for path in sorted((run_dir / "workers").glob("worker-*.engine.jsonl")):
        worker = path.name.split(".")[0].removeprefix("worker-")
        data.engine[worker] = read_jsonl_rows(path)
        summary = _read_json_object(path.with_name(f"worker-{worker}.status.json")).get("engine")
        if isinstance(summary, dict):
            data.engine_summary[worker] = summary
    for path in sorted((run_dir / "workers").glob("worker-*.status.json")):
        sandbox = _read_json_object(path).get("sandbox")
        if isinstance(sandbox, dict) and isinstance(sandbox.get("active"), list):
            worker = path.name.split(".")[0].removeprefix("worker-")
            data.sandbox[worker] = " + ".join(map(str, sandbox["active"])) or "none"
    return data


def _num(value: Any, default: float = 0.0) -> float:
    """A number from JSON data that may hold anything (None, a string, a bool...)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return default


def _timestamp(value: Any) -> float | None:
    """Seconds since the epoch from a number or an ISO-8601 string."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return None
    return None


# -- markdown helpers --------------------------------------------------------------------------
def md_table(head: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


# -- sections ----------------------------------------------------------------------------------
def header_section(data: RunData, tasks: Mapping[str, Task]) -> str:
    run = data.run
    config = run.get("config") if isinstance(run.get("config"), dict) else {}
    model = config.get("model", {}) if isinstance(config.get("model"), dict) else {}
    rows = [
        ["challenges", run.get("challenges", "-")],
        ["tasks", len(tasks)],
        ["test inputs", sum(len(t.test_inputs) for t in tasks.values())],
        ["tasks with a result", f"{len(data.results)} / {len(tasks)}"],
        ["model", f"{model.get('path', '-')} ({model.get('backend', '-')} backend)"],
        ["engine", _engine(run.get("engine"))],
        ["workers", f"{run.get('n_workers', '-')} on {run.get('devices', '-')}"],
        ["time limit", f"{_fmt(run.get('time_limit_s'), 0)} s"],
        ["started", _when(run.get("started_at"))],
        ["wall time", f"{_fmt(_wall_time(data), 1)} s"],
    ]
    return md_table(["run", ""], rows)


def _engine(engine: Any) -> str:
    """run.json's resolved engine: which backend ran, and why (a fall-back is named)."""
    if not isinstance(engine, dict):
        return "-"
    text = f"{engine.get('name', '-')} (model.backend={engine.get('requested', '-')}: {engine.get('reason', '')})"
    return text + (f"; {engine['fallback']}" if engine.get("fallback") else "")


def _when(value: Any) -> str:
    ts = _timestamp(value)
    return datetime.fromtimestamp(ts).isoformat(timespec="seconds") if ts is not None else "-"


def _wall_time(data: RunData) -> float | None:
    """From the first task start to the last task end, by the timelines (else the results)."""
    spans = [(_timestamp(r.get("start")), _timestamp(r.get("end"))) for r in data.timeline]
    spans = [(s, e) for s, e in spans if s is not None and e is not None]
    if not spans:
        spans = [(r.started_at, r.started_at + r.elapsed_s)
                 for r in data.results.values() if _timestamp(r.started_at) is not None]
    if not spans:
        return None
    start = _timestamp(data.run.get("started_at")) or min(s for s, _ in spans)
    return max(e for _, e in spans) - start


def score_section(score: ScoreReport | None, submission: Mapping[str, Any] | None) -> str:
    if score is None:
        return "No solutions known for these tasks: the submission is not scored."
    lines = [f"**Score: {score.score:.4f}** ({score.n_correct} of {score.n_outputs} test outputs right with "
             f"either of two attempts; Kaggle's metric).",
             "",
             f"Tasks fully solved: {score.n_solved} of {len(score.tasks)}; mean per-task score {score.task_mean:.4f}."]
    if submission is not None:
        lines.append(f"Submission: {len(submission)} tasks, {sum(len(v) for v in submission.values())} test entries.")
    return "\n".join(lines)


def per_task_section(data: RunData, tasks: Mapping[str, Task], score: ScoreReport | None) -> str:
    """One row per task: its score, how its search went and where its time went."""
    scores = {t.task_id: t for t in score.tasks} if score is not None else {}
    metrics = {m.task_id: m for m in task_metrics(data, tasks, score)[0]}
    head = ["task", "solved", "status", "stop reason", "epochs", "predictions", "valid outputs", "unique outputs",
            "train pass@n", "pass@n", "search s", "learn s", "total s"]
    rows = []
    for task_id in tasks:
        s, m, r = scores.get(task_id), metrics[task_id], data.results.get(task_id)
        right = f"{s.n_correct}/{len(s.correct)}" if s is not None else "-"
        if r is None:
            rows.append([task_id, right, "no result"] + ["-"] * (len(head) - 3))
            continue
        rows.append([task_id, right, r.status, r.stop_reason or "-", len(r.epochs), r.predictions,
                     f"{m.valid_outputs:.2f}", m.unique_outputs, _fmt(r.train_pass_at_n), _fmt(r.pass_at_n),
                     f"{sum(e.search_s for e in r.epochs):.1f}", f"{sum(e.learn_s for e in r.epochs):.1f}",
                     f"{r.elapsed_s:.1f}"])
    note = "solved: test outputs right with either attempt of the submission."
    return f"{md_table(head, rows)}\n\n{note}"


def learning_section(data: RunData, tasks: Mapping[str, Task]) -> str:
    """Per task and epoch: the programs run, the relabeled samples the task's adapter trained on and their
    mean loss; per task, the time of each learning phase (the adapter's reset included)."""
    head = ["task", "epoch", "predictions", "valid code", "valid outputs", "train pass", "best train grids",
            "relabeled samples trained", "train loss", "search s", "learn s"]
    rows, phases = [], []
    for task_id in tasks:
        r = data.results.get(task_id)
        if r is None:
            continue
        rows += [[task_id, e.epoch, e.predictions, e.valid_code, e.valid_outputs, e.train_pass,
                  f"{e.best_correct_grids:.2f}", e.train_samples, _fmt(e.train_loss), f"{e.search_s:.1f}",
                  f"{e.learn_s:.1f}"] for e in r.epochs]
        t = r.timings
        phases.append([task_id, f"{t.get('execute', 0.0):.2f}", f"{t.get('relabel', 0.0):.3f}",
                       f"{t.get('train', 0.0):.2f}", f"{1000 * t.get('reset', 0.0):.1f}"])
    note = ("Each epoch samples from the task's adapter as trained so far (from the base model until a learn "
            "step trained it); train loss: the mean loss of the learn step after that epoch. The adapter is "
            "reset before the task's first training step.")
    times = md_table(["task", "execute s", "relabel s", "train s", "adapter reset ms"], phases)
    return f"{md_table(head, rows)}\n\n{note}\n\n{times}"


def workers_section(data: RunData) -> str:
    """Per worker: task attempts, and how busy its engine was (generating or training) over its wall time."""
    segments = worker_segments(data)
    if not segments and not data.engine:
        return "No worker timelines in this run."
    rows = []
    for worker in sorted(set(segments) | set(data.engine), key=lambda w: (len(w), w)):
        segs = segments.get(worker, [])
        spans = data.engine.get(worker, [])
        gen = sum(_num(r.get("end")) - _num(r.get("start")) for r in spans if r.get("kind") == "generate")
        train = sum(_num(r.get("end")) - _num(r.get("start")) for r in spans if r.get("kind") == "train")
        tokens = sum(_num(r.get("tokens")) for r in spans if r.get("kind") == "generate")
        summary = data.engine_summary.get(worker, {})
        wall = _num(summary.get("wall_s")) or _engine_wall(spans)
        # training on a thread beside the engine overlaps generation: busy is their union
        covered = union_s([(_num(r.get("start")), _num(r.get("end"))) for r in spans])
        busy = covered / wall if wall > 0 else None
        outcomes = sorted({o for _, _, _, o in segs})
        rows.append([worker, len(segs), f"{gen:.1f}", f"{train:.1f}", f"{wall:.1f}",
                     "-" if busy is None else f"{busy:.0%}", f"{tokens / gen:.0f}" if gen > 0 else "-",
                     ", ".join(outcomes), data.sandbox.get(worker, "-")])
    head = ["worker", "task attempts", "generate s", "train s", "wall s", "engine busy", "tokens/s", "outcomes",
            "program sandbox"]
    note = ("engine busy: generating or training (or both: learn steps may run beside the decoding), over the "
            "worker's wall time from its model being loaded to its last task (tasks in flight share one engine; "
            "programs run beside it).")
    return f"{md_table(head, rows)}\n\n{note}"


def _engine_wall(spans: list[dict[str, Any]]) -> float:
    if not spans:
        return 0.0
    return max(_num(r.get("end")) for r in spans) - min(_num(r.get("start")) for r in spans)


# -- timelines ---------------------------------------------------------------------------------
Segment = tuple[float, float, str, str]  # (start, end) in seconds since the run started, task id, outcome


def worker_segments(data: RunData) -> dict[str, list[Segment]]:
    """worker -> its task attempts in order of worker number; rows without a valid span are skipped."""
    rows = []
    for row in data.timeline:
        start, end = _timestamp(row.get("start")), _timestamp(row.get("end"))
        if start is not None and end is not None and end >= start:
            rows.append((str(row.get("worker", "?")), start, end, str(row.get("task_id", "?")),
                         str(row.get("outcome") or "?")))
    if not rows:
        return {}
    first = min(start for _, start, _, _, _ in rows)
    t0 = _timestamp(data.run.get("started_at"))
    t0 = first if t0 is None or t0 > first else t0  # from the run's start: model loading shows as idle
    out: dict[str, list[Segment]] = {}
    for worker, start, end, task_id, outcome in sorted(rows, key=lambda r: (len(r[0]), r[0], r[1])):
        out.setdefault(worker, []).append((start - t0, end - t0, task_id, outcome))
    return out


# -- plots -------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on Kaggle or CI
    import matplotlib.pyplot as plt

    return plt


def first_pass(rows: list[dict[str, Any]], key: str) -> int | None:
    """1-based number of predictions until the first with `key` true; None if none."""
    for n, row in enumerate(rows, start=1):
        if row.get(key) is True:
            return n
    return None


def pass_at_n_curve(data: RunData, key: str) -> tuple[list[int], list[int]]:
    """(n, tasks with a `key` prediction among their first n predictions), as steps."""
    firsts = sorted(n for n in (first_pass(rows, key) for rows in data.predictions.values()) if n is not None)
    longest = max((len(rows) for rows in data.predictions.values()), default=0)
    xs, ys = [0], [0]
    for i, n in enumerate(firsts, start=1):
        xs.append(n)
        ys.append(i)
    xs.append(max(longest, xs[-1]))
    ys.append(ys[-1])
    return xs, ys


def plot_pass_at_n(data: RunData, tasks: Mapping[str, Task], score: ScoreReport | None, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    # train pass under test pass: a wide pale line and a narrow dashed one stay visible when equal
    styles = (("train_pass", "train pass@n (a program right on all train pairs)", dict(linewidth=5, alpha=0.4)),
              ("test_pass", "pass@n (a program right on the test outputs)", dict(linewidth=2, linestyle="--")))
    for key, label, style in styles:
        xs, ys = pass_at_n_curve(data, key)
        ax.step(xs, ys, where="post", label=label, **style)
    if score is not None:
        ax.axhline(score.n_solved, color="grey", linestyle=":", label="solved by the submission (pass@2)")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("predictions per task (n)")
    ax.set_ylabel("tasks")
    ax.set_ylim(0, max(len(tasks), 1) * 1.05)
    ax.set_title(f"Solved tasks vs number of predictions ({len(data.predictions)} of {len(tasks)} tasks ran)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    _save(fig, path)


def plot_time_breakdown(data: RunData, tasks: Mapping[str, Task], path: Path) -> None:
    plt = _pyplot()
    ids = [t for t in tasks if t in data.results]
    ids.sort(key=lambda t: -sum(data.results[t].timings.values()))
    height = min(2.0 + 0.25 * max(len(ids), 1), 60.0)
    fig, ax = plt.subplots(figsize=(8, height))
    left = [0.0] * len(ids)
    for phase in TIME_PHASES:
        widths = [data.results[t].timings.get(phase, 0.0) for t in ids]
        ax.barh(ids, widths, left=left, label=phase)
        left = [a + b for a, b in zip(left, widths)]
    ax.invert_yaxis()  # slowest task on top
    ax.set_xlabel("seconds")
    ax.set_title("Time per task by phase" if ids else "Time per task by phase (no task results)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax.tick_params(axis="y", labelsize=7 if len(ids) > 30 else 9)
    _save(fig, path)


def task_lanes(segments: list[Segment]) -> list[int]:
    """A lane per segment so that overlapping tasks (several in flight on one worker) never share one."""
    ends: list[float] = []
    lanes = []
    for start, end, _, _ in segments:
        lane = next((i for i, e in enumerate(ends) if e <= start), len(ends))
        if lane == len(ends):
            ends.append(end)
        ends[lane] = end
        lanes.append(lane)
    return lanes


ENGINE_COLORS = {"generate": "tab:blue", "train": "tab:orange"}


def plot_workers(data: RunData, path: Path) -> None:
    """Per worker: its engine lane (generating, training; white: idle) above its tasks in flight."""
    plt = _pyplot()
    segments = worker_segments(data)
    workers = sorted(set(segments) | set(data.engine), key=lambda w: (len(w), w))
    outcomes = sorted({o for segs in segments.values() for _, _, _, o in segs})
    colors = {o: plt.get_cmap("Set2")(i % 8) for i, o in enumerate(outcomes)}
    t0 = _run_start(data)
    lanes_of = {w: task_lanes(segments.get(w, [])) for w in workers}
    heights = {w: 1 + max(lanes_of[w], default=0) + 1 for w in workers}  # engine lane + task lanes
    fig, ax = plt.subplots(figsize=(11, 1.5 + 0.45 * max(sum(heights.values()), 1)))
    y, ticks, labels = 0.0, [], []
    for worker in reversed(workers):
        segs, lanes = segments.get(worker, []), lanes_of[worker]
        for (s, e, task_id, outcome), lane in zip(segs, lanes):
            ax.broken_barh([(s, e - s)], (y + lane - 0.35, 0.7), facecolors=[colors[outcome]], edgecolors="black",
                           linewidth=0.4)
            if len(segs) <= 40:
                ax.text((s + e) / 2, y + lane, task_id, ha="center", va="center", fontsize=6, clip_on=True)
        engine_y = y + max(lanes, default=-1) + 1
        for kind, color in ENGINE_COLORS.items():
            spans = [(_num(r.get("start")) - t0, _num(r.get("end")) - _num(r.get("start")))
                     for r in data.engine.get(worker, []) if r.get("kind") == kind]
            if spans:  # training may run beside generation: its bar is thinner, drawn over
                height = 0.6 if kind == "generate" else 0.3
                ax.broken_barh(spans, (engine_y - height / 2, height), facecolors=color, linewidth=0)
        ticks += [engine_y, y + (max(lanes, default=0)) / 2]
        labels += [f"worker {worker} engine", f"worker {worker} tasks"]
        y = engine_y + 1.2
    deadline = _deadline_s(data)
    if deadline is not None:
        ax.axvline(deadline, color="red", linestyle="--", linewidth=1)
        ax.text(deadline, y - 0.5, " deadline", color="red", fontsize=8, va="top")
    ax.set_xlim(left=0)  # from the run's start: model loading shows as idle
    ax.set_yticks(ticks, labels, fontsize=7)
    ax.set_xlabel("seconds since the run started (engine lane: blue generating, orange training, white idle)")
    ax.set_title("Worker timelines" if workers else "Worker timelines (none recorded)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[o]) for o in outcomes]
    handles += [plt.Rectangle((0, 0), 1, 1, color=c) for c in ENGINE_COLORS.values()]
    if handles:
        ax.legend(handles, outcomes + list(ENGINE_COLORS), loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    _save(fig, path)


def _run_start(data: RunData) -> float:
    """Time zero of the timelines: the run's start (model loading shows as idle), else the first event."""
    starts = [_timestamp(r.get("start")) for r in data.timeline]
    starts += [_timestamp(r.get("start")) for spans in data.engine.values() for r in spans]
    first = min((s for s in starts if s is not None), default=0.0)
    t0 = _timestamp(data.run.get("started_at"))
    return first if t0 is None or t0 > first else t0


def _deadline_s(data: RunData) -> float | None:
    """The run's deadline in seconds since its start, when run.json has both."""
    started, deadline = _timestamp(data.run.get("started_at")), _timestamp(data.run.get("deadline"))
    return None if started is None or deadline is None else deadline - started


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    try:
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)


# -- metrics -----------------------------------------------------------------------------------
# arc25.metrics' labels -> the report's
METRIC_LABELS = {"train pass": "train pass rate", "test pass": "test pass rate"}


def prediction_metrics(task_id: str, row: dict[str, Any]) -> PredictionMetrics:
    """A predictions.jsonl.gz row as arc25.metrics' PredictionMetrics (the row already holds the scores)."""
    return PredictionMetrics(
        task_id=task_id, valid_code=bool(row.get("valid_code")), valid_outputs=bool(row.get("valid_outputs")),
        pixel_similarity=_num(row.get("pixel_similarity")), correct_grids=_num(row.get("correct_grids")),
        train_pass=bool(row.get("train_pass")), test_pass=row.get("test_pass"), kind=row.get("kind"),
        outputs_key=row.get("outputs_key"))


def task_metrics(data: RunData, tasks: Mapping[str, Task], score: ScoreReport | None
                 ) -> tuple[list[TaskMetrics], list[PredictionMetrics]]:
    """Per-task metrics for every task (one that never ran has none of its predictions), pass@2 from `score`."""
    scores = {t.task_id: t.score for t in score.tasks} if score is not None else {}
    per_task, everything = [], []
    for task_id, task in tasks.items():
        preds = [prediction_metrics(task_id, row) for row in data.predictions.get(task_id, [])]
        metrics = score_task(task, preds, [])  # pass@2 comes from the submission's own score instead
        per_task.append(dataclasses.replace(metrics, pass_at_2=scores.get(task_id)))
        everything += preds
    return per_task, everything


def rows_table(rows: list[dict[str, str]]) -> str:
    """arc25.metrics' table rows (dicts, one key per column) as markdown, its labels renamed for the report."""
    if not rows:
        return "(none)"
    head = list(rows[0])
    return md_table(head, [[METRIC_LABELS.get(str(r.get(c, "")), r.get(c, "")) for c in head] for r in rows])


def metrics_section(data: RunData, tasks: Mapping[str, Task], score: ScoreReport | None) -> str:
    per_task, predictions = task_metrics(data, tasks, score)
    table = rows_table(summary_rows(per_task, predictions))
    kinds = rows_table(kind_rows(predictions))
    notes = ("Rates are over all predictions; pass@n counts tasks where any prediction got every test output "
             "right; pass@2 is the submission's score on the task (two attempts).")
    return f"{table}\n\n{notes}\n\n{kinds}" if predictions else f"{table}\n\nNo predictions were recorded."


# -- the report --------------------------------------------------------------------------------
def _safe(name: str, build: Callable[[], str | None]) -> str:
    """A section's text, or a line saying why it is missing: one broken section never sinks the report."""
    try:
        return build() or ""
    except Exception as exc:
        log.warning("report: %s section failed", name, exc_info=True)
        return f"_{name} unavailable: {type(exc).__name__}: {exc}_"


def _plot(build: Callable[[Path], None], path: Path, title: str) -> str:
    def make() -> str:
        build(path)
        return f"![{title}]({path.name})"

    return _safe(f"plot {path.name}", make)


def write_report(run_dir: str | Path, tasks: Mapping[str, Task], submission: Mapping[str, Any] | None,
                 score: ScoreReport | None) -> Path:
    """Write RUN_DIR/report/report.md and its PNG plots; returns the report's path.

    `score` is None when the tasks have no known solutions.
    """
    started = time.monotonic()
    out_dir = Path(run_dir) / REPORT_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    data = load_run(run_dir, list(tasks))
    parts = [
        "# arc25 run report", "",
        _safe("run", lambda: header_section(data, tasks)), "",
        "## Score", "", _safe("score", lambda: score_section(score, submission)), "",
        "## Metrics over tasks", "", _safe("metrics", lambda: metrics_section(data, tasks, score)), "",
        "## Solved tasks vs predictions", "",
        _plot(lambda p: plot_pass_at_n(data, tasks, score, p), out_dir / PASS_AT_N_PNG, "pass@n"), "",
        "## Per task", "", _safe("per-task", lambda: per_task_section(data, tasks, score)), "",
        "## Learning", "", _safe("learning", lambda: learning_section(data, tasks)), "",
        "## Time per task", "",
        _plot(lambda p: plot_time_breakdown(data, tasks, p), out_dir / TIME_PNG, "time breakdown"), "",
        "## Workers", "", _safe("workers", lambda: workers_section(data)), "",
        _plot(lambda p: plot_workers(data, p), out_dir / WORKERS_PNG, "worker timelines"), "",
    ]
    path = out_dir / REPORT_FILE
    atomic_write_text(path, "\n".join(parts))
    log.info("report written to %s (%.1f s)", path, time.monotonic() - started)
    return path
