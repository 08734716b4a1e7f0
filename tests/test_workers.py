"""Many workers, one run: real worker processes on the CPU, real failures, and always a valid submission.

The model is the scripted backend (completions played back from a JSON file), except
in one test that runs the real tiny HF model. Faults are injected through the
workers' ARC25_FAULT_INJECT test hook, or done for real (SIGKILL, a truncated file).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from arc25 import claims
from arc25.config import Config
from arc25.errors import UserError
from arc25.prompts import ANSWER_PREFIX
from arc25.run import order_tasks, run_pipeline
from arc25.submission import validate_submission
from arc25.tasks import load_tasks, load_tasks_tolerant
from arc25.workers import FAULT_ENV
from helpers import REPO, TRAIN_2025, TRAIN_2025_SOLUTIONS, run_cli

ROTATED = "3c9b0459"  # a half turn: solved by the first completion below
TASK_IDS = [ROTATED, "00576224", "007bbfb7"]


def answer(body: str) -> str:
    code = f"from common import *\n\nimport numpy as np\n\ndef transform(input_grid):\n{body}\n"
    return f"{ANSWER_PREFIX}```python\n{code}```"


COMPLETIONS = [answer("    return np.rot90(input_grid, 2)"), answer("    return input_grid"),
               answer("    return np.fliplr(input_grid)"), answer("    return input_grid[100]")]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """A small challenges file, its solutions and a scripted-completions file."""
    folder = tmp_path_factory.mktemp("data")
    challenges = json.loads(TRAIN_2025.read_text())
    solutions = json.loads(TRAIN_2025_SOLUTIONS.read_text())
    paths = {"challenges": folder / "challenges.json", "solutions": folder / "solutions.json",
             "completions": folder / "completions.json"}
    paths["challenges"].write_text(json.dumps({t: challenges[t] for t in TASK_IDS}))
    paths["solutions"].write_text(json.dumps({t: solutions[t] for t in TASK_IDS}))
    paths["completions"].write_text(json.dumps({"completions": COMPLETIONS}))
    return paths


SMALL = ["model.backend=scripted", "sampling.n_per_prompt=2", "search.predictions_per_epoch=4",
         "search.max_epochs=2", "execution.timeout_s=1", "execution.workers=1", "run.reserve_s=4",
         "run.heartbeat_s=1", "run.tasks_per_worker=1"]

# The failure tests run with one task in flight per worker and with four (one engine call for all four)
IN_FLIGHT = pytest.mark.parametrize("k", [1, 4])


def run_args(data: dict[str, Path], out: Path, time_limit: str = "90", extra: list[str] = ()) -> list[str]:
    args = ["-q", "run", "--challenges", str(data["challenges"]), "--solutions", str(data["solutions"]),
            "--model", str(data["completions"]), "--out", str(out), "--workers", "2", "--time-limit", time_limit,
            "--no-progress"]
    for item in [*SMALL, *extra]:
        args += ["--set", item]
    return args


def run_arc25(args: list[str], fault: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop(FAULT_ENV, None)
    if fault:
        env[FAULT_ENV] = fault
    return subprocess.run([sys.executable, "-m", "arc25", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env=env)


def check_submission(out: Path, challenges: Path, skip_invalid: bool = False) -> dict:
    """The submission covers every task of the challenges file and is valid."""
    submission = json.loads((out / "submission.json").read_text())
    tasks = load_tasks_tolerant(challenges).everything if skip_invalid else load_tasks(challenges)
    assert validate_submission(submission, tasks) == []
    assert set(submission) == set(tasks)
    return submission


def result(out: Path, task_id: str) -> dict:
    return json.loads((out / "tasks" / task_id / "result.json").read_text())


def timeline(out: Path) -> list[dict]:
    rows = []
    for path in sorted((out / "workers").glob("worker-*.timeline.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines()]
    return sorted(rows, key=lambda r: r["end"])


def claim(out: Path, task_id: str) -> claims.Claim:
    found = claims.read_claim(out, task_id)
    assert found is not None
    return found


# -- units: budget, order, claims --------------------------------------------------------------


def test_budget_shares_the_time_left_between_the_tasks_left():
    assert claims.task_budget_s(3600, 4, 240, cap_s=1800) == pytest.approx(60)  # 3600 * 4 / 240
    assert claims.task_budget_s(3600, 4, 2, cap_s=1800) == 1800  # capped
    assert claims.task_budget_s(100, 4, 1, cap_s=1800) == 100  # never past the deadline
    assert claims.task_budget_s(-5, 4, 10, cap_s=1800) == 0
    # early-solved tasks give their time to the rest: fewer tasks left, more time each
    assert claims.task_budget_s(3000, 2, 10, 1e9) > claims.task_budget_s(3000, 2, 20, 1e9)


def test_task_order():
    tasks = load_tasks(TRAIN_2025)
    ids = list(tasks)[:20]
    subset = {t: tasks[t] for t in ids}
    longest = order_tasks(subset, "longest_first")
    assert [subset[t].n_cells for t in longest] == sorted((t.n_cells for t in subset.values()), reverse=True)
    assert order_tasks(subset, "shortest_first")[0] == longest[-1]
    assert order_tasks(subset, "file") == ids


def test_a_live_claim_is_kept_and_a_stale_one_is_taken_over(tmp_path):
    ids = ["a", "b"]
    first = claims.claim_next(tmp_path, ids, 0, max_crashes=2, stale_after_s=60).claim
    second = claims.claim_next(tmp_path, ids, 1, max_crashes=2, stale_after_s=60)
    assert (first.task_id, second.claim.task_id) == ("a", "b")
    third = claims.claim_next(tmp_path, ids, 2, max_crashes=2, stale_after_s=60)
    assert third.claim is None and third.unfinished == 2 and third.in_progress == 2  # live and fresh: kept
    # worker 0's heartbeat stops (same live pid, but it has not refreshed for too long)
    first.heartbeat -= 120
    claims.write_claim(tmp_path, first)
    taken = claims.claim_next(tmp_path, ids, 2, max_crashes=2, stale_after_s=60).claim
    assert taken.task_id == "a" and taken.attempt == 2 and taken.crashes == 1 and taken.failed_workers == [0]
    assert not claims.refresh(tmp_path, first)  # the old owner learns it lost the task
    assert claims.refresh(tmp_path, taken)


def test_a_claim_whose_process_is_gone_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = claims.Claim("a", claims.ACTIVE, worker=3, pid=dead.pid, host=claims.socket.gethostname(), attempt=1,
                         claimed_at=time.time(), heartbeat=time.time())  # fresh heartbeat, dead process
    claims.write_claim(tmp_path, stale)
    taken = claims.claim_next(tmp_path, ["a"], 0, max_crashes=2, stale_after_s=3600).claim
    assert taken.task_id == "a" and taken.attempt == 2 and taken.crashes == 1 and taken.pid == os.getpid()
    # the same pid on another host cannot be checked: only the heartbeat counts there
    claims.write_claim(tmp_path, claims.Claim("b", claims.ACTIVE, worker=3, pid=dead.pid, host="elsewhere",
                                              attempt=1, heartbeat=time.time()))
    assert claims.claim_next(tmp_path, ["b"], 0, max_crashes=2, stale_after_s=3600).claim is None


def test_a_task_that_crashes_twice_is_given_up_and_retried_elsewhere_first(tmp_path):
    first = claims.claim_next(tmp_path, ["a"], 0, max_crashes=2, stale_after_s=60).claim
    assert claims.release(tmp_path, first, claims.FAILED, max_crashes=2) == claims.FAILED
    # worker 0 crashed on it: left to the others while one is alive...
    assert claims.claim_next(tmp_path, ["a"], 0, max_crashes=2, stale_after_s=60, others_alive=True).claim is None
    second = claims.claim_next(tmp_path, ["a"], 1, max_crashes=2, stale_after_s=60).claim
    assert second.attempt == 2
    assert claims.release(tmp_path, second, claims.FAILED, max_crashes=2) == claims.GIVEN_UP
    scan = claims.claim_next(tmp_path, ["a"], 2, max_crashes=2, stale_after_s=60)
    assert scan.claim is None and scan.unfinished == 0
    # ...but retried there when nobody else is left
    third = claims.claim_next(tmp_path, ["b"], 0, max_crashes=2, stale_after_s=60).claim
    claims.release(tmp_path, third, claims.FAILED, max_crashes=2)
    assert claims.claim_next(tmp_path, ["b"], 0, max_crashes=2, stale_after_s=60, others_alive=False).claim


def test_one_gpu_per_worker_set_before_python_starts(tmp_path):
    from arc25.gpus import parse_gpus, plan_devices
    from arc25.supervisor import WorkerProcess

    assert plan_devices(None, parse_gpus("0,1,2,3")) == ["0", "1", "2", "3"]
    assert plan_devices(2, None) == ["cpu", "cpu"]
    assert WorkerProcess._env("2", 4)["CUDA_VISIBLE_DEVICES"] == "2"
    assert WorkerProcess._env("cpu", 2)["CUDA_VISIBLE_DEVICES"] == ""  # CPU workers never grab a GPU
    with pytest.raises(UserError, match="expected GPU indices"):
        parse_gpus("0,x")


def test_one_parent_per_run_folder(tmp_path):
    from arc25.errors import UserError
    from arc25.run import hold_run_dir

    (tmp_path / "claims").mkdir()
    with hold_run_dir(tmp_path):
        with pytest.raises(UserError, match="another run"):
            hold_run_dir(tmp_path)
    hold_run_dir(tmp_path).release()  # free again once the first run is over


def test_duration_arguments():
    from arc25.commands.run import parse_duration

    assert [parse_duration(t) for t in ("12h", "90m", "3600s", "3600", "1.5h")] == [43200, 5400, 3600, 3600, 5400]
    with pytest.raises(argparse.ArgumentTypeError, match="expected a positive duration"):
        parse_duration("soon")


# -- whole runs --------------------------------------------------------------------------------


@IN_FLIGHT
def test_run_writes_a_complete_submission_and_resume_redoes_nothing(data, tmp_path, k):
    out = tmp_path / "run"
    done = run_arc25(run_args(data, out, extra=[f"run.tasks_per_worker={k}"]))
    assert done.returncode == 0, done.stderr
    assert "submission:" in done.stdout and str(out / "submission.json") in done.stdout
    submission = check_submission(out, data["challenges"])
    truth = json.loads(data["solutions"].read_text())[ROTATED][0]
    assert submission[ROTATED][0]["attempt_1"] == truth
    run = json.loads((out / "run.json").read_text())
    assert run["n_workers"] == 2 and run["devices"] == ["cpu", "cpu"]
    assert sorted(run["task_ids"]) == sorted(TASK_IDS) and run["deadline"] < run["started_at"] + run["time_limit_s"]
    for task_id in TASK_IDS:
        assert result(out, task_id)["status"] == "done"
        assert claim(out, task_id).state == claims.DONE
    rows = timeline(out)
    assert sorted(r["task_id"] for r in rows) == sorted(TASK_IDS) and {r["outcome"] for r in rows} == {"done"}
    assert {r["worker"] for r in rows} <= {0, 1}
    status = json.loads((out / "workers" / "worker-0.status.json").read_text())
    assert status["state"] == "exited" and status["tasks"] == [] and {"worker", "pid", "updated_at"} <= set(status)
    assert "audit_hook" in status["sandbox"]["active"]  # what the programs ran under (test_sandbox.py)
    # the scripted engine answers in microseconds: busy time is tiny, but every call was logged
    # (with 4 in flight one worker may have claimed all 3 tasks before the other was up)
    calls = 0
    for k in (0, 1):
        status = json.loads((out / "workers" / f"worker-{k}.status.json").read_text())
        engine_log = out / "workers" / f"worker-{k}.engine.jsonl"
        spans = [json.loads(line) for line in engine_log.read_text().splitlines()] if engine_log.exists() else []
        assert 0 <= status["engine"]["busy_fraction"] <= 1 and status["engine"]["calls"] == len(spans)
        assert {r["kind"] for r in spans} <= {"generate", "train"}
        calls += len(spans)
    assert calls > 0
    assert "task" in (out / "workers" / "worker-0.log").read_text()

    stamps = {t: (out / "tasks" / t / "result.json").stat().st_mtime_ns for t in TASK_IDS}
    again = run_arc25(run_args(data, out, extra=[f"run.tasks_per_worker={k}"]))
    assert again.returncode == 0, again.stderr
    assert {t: (out / "tasks" / t / "result.json").stat().st_mtime_ns for t in TASK_IDS} == stamps
    assert len(timeline(out)) == len(rows) and all(claim(out, t).attempt == 1 for t in TASK_IDS)
    check_submission(out, data["challenges"])


def wait_for_worker_on(out: Path, task_id: str, timeout: float = 60) -> dict:
    limit = time.time() + timeout
    while time.time() < limit:
        for path in (out / "workers").glob("worker-*.status.json"):
            try:
                status = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if any(t.get("task_id") == task_id for t in status.get("tasks") or []) and status.get("state") == "working":
                return status
        time.sleep(0.1)
    raise AssertionError(f"no worker took task {task_id}")


@IN_FLIGHT
def test_kill_9_of_a_worker_mid_task(data, tmp_path, k):
    out, victim = tmp_path / "run", "00576224"
    env = {**os.environ, FAULT_ENV: f"hang:{victim}@1"}  # keeps the first attempt busy until we kill it
    cmd = [sys.executable, "-m", "arc25", *run_args(data, out, extra=[f"run.tasks_per_worker={k}"])]
    with subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        status = wait_for_worker_on(out, victim)
        os.kill(status["pid"], signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    check_submission(out, data["challenges"])
    assert result(out, victim)["status"] == "done"  # redone by another (or the restarted) worker
    taken = claim(out, victim)
    assert taken.state == claims.DONE and taken.attempt == 2 and taken.crashes == 1
    # in order of the attempts' starts: the parent writes the killed attempt's row when it notices the
    # death, which may come after the other worker already appended the redone attempt's row
    rows = sorted((r for r in timeline(out) if r["task_id"] == victim), key=lambda r: r["start"])
    outcomes = [(r["worker"], r["outcome"]) for r in rows]
    assert (status["worker"], "crashed") in outcomes and outcomes[-1][1] == "done"


@IN_FLIGHT
def test_a_task_that_raises_is_retried_once_elsewhere_then_falls_back(data, tmp_path, k):
    out, bad = tmp_path / "run", "007bbfb7"
    done = run_arc25(run_args(data, out, extra=[f"run.tasks_per_worker={k}"]), fault=f"raise:{bad}")
    assert done.returncode == 0, done.stderr
    submission = check_submission(out, data["challenges"])
    given_up = claim(out, bad)
    assert given_up.state == claims.GIVEN_UP and given_up.attempt == 2 and given_up.crashes == 2
    assert sorted(given_up.failed_workers) == [0, 1]  # the retry ran on the other worker
    assert [r["outcome"] for r in timeline(out) if r["task_id"] == bad] == ["crashed", "gave_up"]
    task = load_tasks(data["challenges"])[bad]
    assert submission[bad][0]["attempt_1"] == task.test_inputs[0].tolist()  # the fallback
    for task_id in set(TASK_IDS) - {bad}:
        assert result(out, task_id)["status"] == "done" and claim(out, task_id).attempt == 1
    assert "1 given up" in done.stdout


@IN_FLIGHT
def test_the_deadline_with_tasks_unprocessed(data, tmp_path, k):
    out = tmp_path / "run"
    started = time.time()
    done = run_arc25(run_args(data, out, time_limit="14s", extra=[f"run.tasks_per_worker={k}"]), fault="hang:*")  # both workers stuck for good
    wall = time.time() - started
    assert done.returncode == 0, done.stderr
    check_submission(out, data["challenges"])
    run = json.loads((out / "run.json").read_text())
    limit = run["started_at"] + run["time_limit_s"]
    assert (out / "submission.json").stat().st_mtime <= limit
    assert wall < run["time_limit_s"] + 10  # the run stopped itself (start-up time is outside started_at)
    assert "deadline" in done.stdout
    claimed = [t for t in TASK_IDS if claims.read_claim(out, t) is not None]
    assert len(claimed) == 2  # one per worker; the third task was never started
    assert all(claim(out, t).state == claims.INTERRUPTED for t in claimed)  # stopped, not crashed
    assert {r["outcome"] for r in timeline(out)} == {"deadline"}


@IN_FLIGHT
def test_a_truncated_result_is_ignored_with_a_warning_and_redone(data, tmp_path, k):
    out, damaged = tmp_path / "run", ROTATED
    assert run_arc25(run_args(data, out, extra=[f"run.tasks_per_worker={k}"])).returncode == 0
    path = out / "tasks" / damaged / "result.json"
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    again = run_arc25(run_args(data, out, extra=[f"run.tasks_per_worker={k}"])[1:])  # without -q: the warning must show
    assert again.returncode == 0, again.stderr
    assert "unreadable result" in again.stderr and damaged in again.stderr
    assert result(out, damaged)["status"] == "done" and claim(out, damaged).attempt == 2
    check_submission(out, data["challenges"])


@pytest.fixture
def invalid_challenges(data, tmp_path) -> Path:
    challenges = json.loads(data["challenges"].read_text())
    challenges["badtask"] = {"train": [{"input": [[1, 2]]}], "test": [{"input": [[3, 4], [5, 6]]}]}  # no output
    path = tmp_path / "invalid.json"
    path.write_text(json.dumps(challenges))
    return path


def test_an_invalid_task_stops_the_run_before_any_worker_starts(data, invalid_challenges, tmp_path):
    out = tmp_path / "run"
    done = run_cli("run", "--challenges", str(invalid_challenges), "--model", str(data["completions"]), "--out",
                   str(out), "--workers", "2", "--set", "model.backend=scripted")
    assert done.returncode == 2
    assert "badtask" in done.stderr and "missing key 'output'" in done.stderr and "Traceback" not in done.stderr
    assert not (out / "workers").exists()


def test_skip_invalid_tasks_gives_them_the_fallback(data, invalid_challenges, tmp_path):
    out = tmp_path / "run"
    args = run_args(data, out)
    args[args.index("--challenges") + 1] = str(invalid_challenges)
    args.remove("--solutions")
    args.remove(str(data["solutions"]))
    done = run_arc25(args[1:] + ["--skip-invalid-tasks"])
    assert done.returncode == 0, done.stderr
    assert "skipping invalid task" in done.stderr and "badtask" in done.stderr
    submission = check_submission(out, invalid_challenges, skip_invalid=True)
    assert len(submission["badtask"]) == 1 and submission["badtask"][0]["attempt_1"] == [[3, 4], [5, 6]]
    assert "badtask" in json.loads((out / "run.json").read_text())["skipped_tasks"]


@pytest.mark.slow
def test_library_run_with_the_real_tiny_hf_model(data, tmp_path, tiny_model_dir):
    """The whole path for real: two worker processes each load the tiny HF model, sample, learn, merge."""
    config = Config()
    config.model.path = str(tiny_model_dir)
    config.model.backend = "hf"
    config.sampling.n_per_prompt, config.sampling.max_tokens = 2, 32
    config.search.predictions_per_epoch, config.search.max_epochs = 2, 2
    config.training.gradient_checkpointing = False
    config.execution.timeout_s, config.execution.workers = 1.0, 1
    config.run.reserve_s = 10
    out, challenges = tmp_path / "run", tmp_path / "small.json"
    small = ["3c9b0459", "00576224"]  # the two smallest prompts: CPU generation is slow
    everything = json.loads(data["challenges"].read_text())
    challenges.write_text(json.dumps({t: everything[t] for t in small}))
    summary = run_pipeline(challenges, config, out, n_workers=2, time_limit_s=150, progress=False)
    check_submission(out, challenges)
    assert summary.n_tasks == 2 and summary.worker_crashes == 0
    assert summary.done + len(summary.fallback) == 2
    rows = timeline(out)
    assert rows and all(r["epochs"] >= 1 for r in rows if r["outcome"] == "done")
    assert any(result(out, r["task_id"])["epochs"] for r in rows)


def test_a_worker_claims_no_more_than_its_fair_share_of_what_is_left(tmp_path, monkeypatch):
    """With K slots per worker, the first worker up must not take every task while the others load."""
    from arc25.workers import Flight, Worker

    scans = []
    monkeypatch.setattr(claims, "claim_next", lambda *a, **k: scans.append(1) or claims.ClaimScan(None, 0, 0))
    config = Config()
    config.run.tasks_per_worker = 4
    worker = Worker(tmp_path, 0, config, {}, ["a", "b", "c"], time.time() + 60, n_workers=2)
    worker.others_alive = lambda: True
    worker.unfinished = 3
    worker.flights = {"a": Flight(claims.Claim("a"), None, 0.0), "b": Flight(claims.Claim("b"), None, 0.0)}
    assert worker.refill("slot2") is None and scans == []  # 2 of 3 left is its share (ceil(3 / 2))
    worker.flights.pop("b")
    assert worker.refill("slot1") is None and scans == [1]  # under its share: it looks for a task
