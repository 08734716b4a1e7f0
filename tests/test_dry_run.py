"""`arc25 dry-run` end to end, as a user runs it: tiny model on CPU, 2 tasks, 2 worker processes."""

import json

import pytest

from arc25.submission import validate_submission
from arc25.tasks import load_tasks
from helpers import run_cli


@pytest.mark.slow
def test_dry_run_end_to_end(tmp_path, tiny_model_dir):
    cache = tiny_model_dir.parent  # the session's tiny model, where dry-run looks for it
    out = tmp_path / "run"
    # few, short predictions: both tasks end by max_predictions well before the limit
    result = run_cli("dry-run", "--random-model", "--tasks", "2", "--workers", "2", "--time-limit", "100s", "--out", str(out),
                     "--cache-dir", str(cache), "--no-progress", "--set", "search.predictions_per_epoch=2",
                     "--set", "search.max_predictions=4", "--set", "sampling.max_tokens=24", timeout=280)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]

    # the run's own challenges: the 2 smallest ARC-AGI-2 evaluation tasks, solutions attached
    tasks = load_tasks(out / "challenges.json", out / "solutions.json")
    assert len(tasks) == 2
    submission = json.loads((out / "submission.json").read_text())
    assert validate_submission(submission, tasks) == []
    run = json.loads((out / "run.json").read_text())
    assert run["n_workers"] == 2 and run["config"]["sampling"]["max_tokens"] == 24
    assert run["config"]["search"]["max_epochs"] == 4  # the dry run's CPU defaults, under --set
    assert all((out / "tasks" / t / "result.json").exists() for t in tasks)

    assert "submission.json: valid" in result.stdout
    assert "score 0.0000 (0/" in result.stdout  # random weights solve nothing
    assert "tiny model has random weights and solves nothing" in result.stdout and "--model" in result.stdout
    report = (out / "report" / "report.md").read_text()
    assert "**Score: 0.0000**" in report and "| pass@2 |" in report and "unavailable" not in report
    for name in ("pass_at_n.png", "time_breakdown.png", "workers.png"):
        assert (out / "report" / name).stat().st_size > 5000
    # the submission was final before the run's time limit (start + 100 s) ran out
    assert (out / "submission.json").stat().st_mtime <= run["started_at"] + run["time_limit_s"]


@pytest.mark.slow
@pytest.mark.timeout(1200)  # may build the session's warm model first (~4 min)
def test_dry_run_default_model_runs_every_phase(tmp_path, warm_model_dir):
    """The default dry run (the warmed tiny model): programs run, relabeled samples train the task's
    adapter, the adapter is reset for each task, and the report shows it."""
    cache = warm_model_dir.parent  # the session's warm model, where dry-run looks for it
    out = tmp_path / "run"
    # generous caps: on an idle 2-core machine an epoch of 4 predictions takes ~10 s, under load 80 s, and a
    # task whose next epoch would overrun its cap stops before learning anything
    result = run_cli("dry-run", "--tasks", "2", "--workers", "1", "--time-limit", "500s", "--out", str(out),
                     "--cache-dir", str(cache), "--no-progress", "--set", "search.max_predictions=8",
                     "--set", "search.max_epochs=2", "--set", "run.per_task_cap_s=220", timeout=650)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "warmed tiny model" in result.stdout

    tasks = load_tasks(out / "challenges.json", out / "solutions.json")
    results = [json.loads((out / "tasks" / t / "result.json").read_text()) for t in tasks]
    epochs = [e for r in results for e in r["epochs"]]
    assert sum(e["valid_code"] for e in epochs) > 0 and sum(e["valid_outputs"] for e in epochs) > 0
    trained = [e for e in epochs if e["train_samples"] > 0]
    assert trained and all(0 < e["train_loss"] < 5 for e in trained)
    for r in results:  # one worker, one task at a time: each task trains its own, freshly reset adapter
        if any(e["train_samples"] for e in r["epochs"]):
            assert r["timings"]["train"] > 0 and r["timings"]["reset"] > 0 and r["timings"]["execute"] > 0
    report = (out / "report" / "report.md").read_text()
    assert "| valid code |" in report and "| valid code | 0.0%" not in report
    assert "## Learning" in report and "relabeled samples trained" in report and "adapter reset ms" in report
