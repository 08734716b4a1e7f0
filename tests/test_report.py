"""The run report, from a run folder made by the real engine (scripted model, real executor, real tasks)."""

import gzip
import json
import time

import numpy as np
import pytest

from arc25 import report as report_module
from arc25.backends.scripted import ScriptedBackend
from arc25.report import RunData, load_run, pass_at_n_curve, write_report
from arc25.solve import solve_tasks
from arc25.submission import score_submission, write_submission
from arc25.tasks import load_tasks
from helpers import TRAIN_2025, TRAIN_2025_SOLUTIONS
from test_search_and_learn import CRASH, IDENTITY, MIRROR, NO_CODE, RIGHT, config

SOLVED, UNSOLVED, NEVER_RAN = "3c9b0459", ["6150a2bd", "007bbfb7"], "00d62c1b"
PNGS = ("pass_at_n.png", "time_breakdown.png", "workers.png")


def timeline_rows(run_dir, worker, task_ids, outcome="done"):
    rows = []
    for task_id in task_ids:
        r = json.loads((run_dir / "tasks" / task_id / "result.json").read_text())
        rows.append({"worker": worker, "task_id": task_id, "start": r["started_at"],
                     "end": r["started_at"] + r["elapsed_s"], "outcome": outcome, "epochs": len(r["epochs"]),
                     "predictions": r["predictions"]})
    return rows


@pytest.fixture(scope="module")
def run(tmp_path_factory, executor):
    """A run folder as the workers leave it: results, predictions, run.json, timelines of 2 workers."""
    run_dir = tmp_path_factory.mktemp("run")
    all_tasks = load_tasks(TRAIN_2025, TRAIN_2025_SOLUTIONS)
    tasks = {t: all_tasks[t] for t in [SOLVED, *UNSOLVED, NEVER_RAN]}
    started = time.time()
    # the right program comes 4th: pass@n steps up after a few predictions
    solve_tasks([tasks[SOLVED]], ScriptedBackend([IDENTITY, MIRROR, CRASH, RIGHT]), executor,
                config(max_epochs=2, stop_agreeing_programs=99), 60.0, run_dir / "tasks")
    solve_tasks([tasks[t] for t in UNSOLVED], ScriptedBackend([IDENTITY, MIRROR, NO_CODE, CRASH]), executor,
                config(max_epochs=3), 60.0, run_dir / "tasks")
    (run_dir / "run.json").write_text(json.dumps({
        "challenges": str(TRAIN_2025), "task_ids": list(tasks), "n_workers": 2, "devices": ["cpu", "cpu"],
        "started_at": started, "time_limit_s": 600.0, "config": {"model": {"path": "scripted", "backend": "scripted"}}}))
    (run_dir / "workers").mkdir()
    for worker, (ids, outcome) in enumerate([([SOLVED], "done"), (UNSOLVED, "deadline")]):
        lines = [json.dumps(r) for r in timeline_rows(run_dir, worker, ids, outcome)]
        (run_dir / "workers" / f"worker-{worker}.timeline.jsonl").write_text("\n".join(lines) + "\n")
    (run_dir / "workers" / "worker-0.status.json").write_text(json.dumps({"worker": 0, "sandbox": {
        "active": ["landlock", "seccomp", "audit_hook"], "missing": {}, "landlock_abi": 7}}))
    submission = write_submission(run_dir, tasks, run_dir / "submission.json")
    return run_dir, tasks, submission, score_submission(submission, tasks)


def check_png(path):
    import matplotlib.image

    assert path.stat().st_size > 5000, path
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 200 and image.shape[1] > 400
    assert float(np.std(image[..., :3])) > 0.05  # more than a blank canvas


def test_report_from_a_real_run(run):
    run_dir, tasks, submission, score = run
    path = write_report(run_dir, tasks, submission, score)
    assert path == run_dir / "report" / "report.md"
    text = path.read_text()

    assert "**Score: 0.2500** (1 of 4 test outputs" in text and "Tasks fully solved: 1 of 4" in text
    assert "| tasks with a result | 3 / 4 |" in text and "| workers | 2 on ['cpu', 'cpu'] |" in text
    for label in ("valid code", "valid outputs", "unique outputs", "pixel similarity", "correct grids",
                  "train pass rate", "train pass@n", "test pass rate", "pass@n", "pass@2"):
        assert f"| {label} |" in text, label
    assert "| pass@2 | 25.0% | 1/4 tasks |" in text and "| train pass@n | 25.0% | 1/4 tasks |" in text
    assert "| exception |" in text and "| no_code |" in text  # program outcomes
    # per task: solved, epochs, predictions, stop reason; a task that never ran is listed too
    assert f"| {SOLVED} | 1/1 | done | max_epochs | 2 | 16 |" in text
    assert f"| {UNSOLVED[0]} | 0/1 | done | max_epochs | 3 | 24 |" in text
    assert f"| {NEVER_RAN} | 0/1 | no result |" in text
    # workers: one row each, busy share and outcomes
    assert "| 0 | 1 |" in text and "| 1 | 2 |" in text and "deadline" in text
    assert "| landlock + seccomp + audit_hook |" in text  # the program sandbox, from worker 0's status file
    assert "unavailable" not in text
    for name in PNGS:
        assert f"]({name})" in text
        check_png(run_dir / "report" / name)


def test_pass_at_n_curve_counts_tasks_by_first_passing_prediction(run):
    run_dir, tasks, _, _ = run
    data = load_run(run_dir, list(tasks))
    assert [len(data.predictions[t]) for t in [SOLVED, *UNSOLVED]] == [16, 24, 24]
    xs, ys = pass_at_n_curve(data, "test_pass")
    first = next(i for i, r in enumerate(data.predictions[SOLVED], 1) if r["test_pass"])
    assert xs == [0, first, 24] and ys == [0, 1, 1]
    synthetic = RunData(run_dir, predictions={"a": [{"train_pass": False}, {"train_pass": True}],
                                              "b": [{"train_pass": True}], "c": [{}] * 5})
    assert pass_at_n_curve(synthetic, "train_pass") == ([0, 1, 2, 5], [0, 1, 2, 2])


def test_report_survives_a_broken_run_folder(run, tmp_path):
    _, tasks, submission, score = run
    run_dir = tmp_path / "broken"
    (run_dir / "tasks" / SOLVED).mkdir(parents=True)
    (run_dir / "tasks" / SOLVED / "result.json").write_text('{"task_id": "3c9b0459", "epochs": [{"sear')
    (run_dir / "tasks" / UNSOLVED[0]).mkdir(parents=True)
    (run_dir / "tasks" / UNSOLVED[0] / "result.json").write_text(json.dumps(
        {"epochs": "nope", "timings": {"generate": "x"}, "predictions": None, "elapsed_s": None}))
    rows = gzip.compress(b'{"index": 0, "test_pass": true}\n{"index": 1, "test_p')  # cut mid-row
    (run_dir / "tasks" / UNSOLVED[0] / "predictions.jsonl.gz").write_bytes(rows[:-5])
    (run_dir / "workers").mkdir()
    (run_dir / "workers" / "worker-0.timeline.jsonl").write_text('{"worker": 0, "start": "soon"}\nnot json\n')
    (run_dir / "run.json").write_text("[]")

    text = write_report(run_dir, tasks, submission, score).read_text()
    assert "unavailable" not in text and "**Score: 0.2500**" in text
    assert f"| {SOLVED} | 1/1 | no result |" in text
    for name in PNGS:
        assert (run_dir / "report" / name).stat().st_size > 1000


def test_report_of_an_empty_run_without_solutions(run, tmp_path):
    _, tasks, _, _ = run
    text = write_report(tmp_path, tasks, None, None).read_text()
    assert "not scored" in text and "No worker timelines" in text and "No predictions were recorded" in text
    assert all((tmp_path / "report" / name).exists() for name in PNGS)


def test_a_failing_section_does_not_sink_the_report(run, monkeypatch, tmp_path):
    run_dir, tasks, submission, score = run

    def broken(*args):
        raise RuntimeError("no display")

    monkeypatch.setattr(report_module, "plot_workers", broken)
    monkeypatch.setattr(report_module, "workers_section", broken)
    text = write_report(run_dir, tasks, submission, score).read_text()
    assert "_plot workers.png unavailable: RuntimeError: no display_" in text
    assert "_workers unavailable: RuntimeError: no display_" in text
    assert "**Score: 0.2500**" in text and "![pass@n](pass_at_n.png)" in text
