"""Task ids are data and the run folder is not trusted: hostile ids, special files, a second run, bad task files.

Real `arc25 run` / `dry-run` / `merge` / `validate` processes with the scripted backend (as in test_workers),
real FIFOs (os.mkfifo) and a real SIGTERM. Each test failed on the code before issue 18's fixes: the run wrote
outside RUN_DIR and crashed on a NUL or 300-character id; it hung for ever on a FIFO and ignored SIGTERM; a
refused dry run overwrote the running run's task files; validate refused a merged submission because of one
invalid task; a duplicated task id went unsaid.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from arc25 import claims
from arc25.rundir import claim_path, predictions_path, result_path, task_dir_name
from arc25.run import hold_run_dir, prepare_run_dir
from arc25.submission import validate_submission
from arc25.tasks import load_tasks, load_tasks_tolerant
from arc25.workers import FAULT_ENV
from helpers import REPO, TRAIN_2025, TRAIN_2025_SOLUTIONS, run_cli
from test_signals import HUNG
from test_workers import ROTATED, TASK_IDS, check_submission, data, run_args  # noqa: F401 (data: fixture)

HANG_GUARD_S = 120  # far beyond what these small runs need: only a hung run gets here
HOSTILE_IDS = ["../escape", "", ".", "..", "a\x00b", "x" * 300, "UPPER case/with space", "-rf", "\ud800"]


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    """The run's exit code and output; a run still going after the hang guard gets a SIGTERM, then is killed
    with its process group, and the test fails saying which of the two it needed."""
    try:
        out, err = proc.communicate(timeout=HANG_GUARD_S)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=30)
            pytest.fail(f"the run hung until SIGTERM: {err[-2000:]}")
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            pytest.fail("the run hung, and SIGTERM had no effect")


# -- defect 1: task ids are used as paths ------------------------------------------------------


def test_task_dir_name_is_safe_bounded_distinct_and_keeps_plain_ids():
    ids = HOSTILE_IDS + ["/etc/passwd", ROTATED, "ABC", "abc", task_dir_name("../escape")]
    names = [task_dir_name(t) for t in ids]
    assert len(set(names)) == len(ids)  # an id crafted as another's name still gets its own
    for name in names:
        assert name not in ("", ".", "..") and len(name) <= 64 and name[0] not in ".-"
        assert all(c.isascii() and (c.isalnum() or c in "_-") for c in name), name
    assert task_dir_name(ROTATED) == ROTATED and task_dir_name("abc") == "abc"  # ARC ids read as themselves
    assert task_dir_name("../escape") == "escape-1ba7343c47dc442d"  # a hash, no salt: stable across processes


def test_hostile_task_ids_stay_inside_the_run_folder_and_keep_their_raw_ids(data, tmp_path):
    """Every id becomes a task of a real run: `../`, absolute, NUL, 300 characters, "", ".", "..", a lone surrogate.
    Each is solved, the submission has the raw ids, and nothing is written outside RUN_DIR (an absolute id named a
    folder with a result.json in it, which an earlier version overwrote)."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "result.json").write_text("precious")
    ids = HOSTILE_IDS + [str(victim), ROTATED]
    task = json.loads(TRAIN_2025.read_text())[ROTATED]
    truth = json.loads(TRAIN_2025_SOLUTIONS.read_text())[ROTATED]
    challenges, solutions = tmp_path / "challenges.json", tmp_path / "solutions.json"
    challenges.write_text(json.dumps({t: task for t in ids}))
    solutions.write_text(json.dumps({t: truth for t in ids}))
    out = tmp_path / "work" / "run"
    before = sorted(tmp_path.rglob("*"))
    args = run_args({**data, "challenges": challenges, "solutions": solutions}, out)
    proc = subprocess.Popen([sys.executable, "-m", "arc25", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    code, _, err = finish(proc)
    assert code == 0, err[-3000:]
    assert (victim / "result.json").read_text() == "precious"
    outside = [p for p in sorted(tmp_path.rglob("*")) if p not in before and out not in (p, *p.parents)]
    assert outside == [tmp_path / "work"]  # the run folder's parent, nothing else
    submission = check_submission(out, challenges)
    assert set(submission) == set(ids) and all(submission[t][0]["attempt_1"] == truth[0] for t in ids)
    names = {task_dir_name(t): t for t in ids}
    assert sorted(p.name for p in (out / "tasks").iterdir()) == sorted(names)
    assert sorted(p.name for p in (out / "claims").glob("*.json")) == sorted(f"{n}.json" for n in names)
    for task_id in ids:
        assert json.loads(result_path(out, task_id).read_text())["task_id"] == task_id
        assert claims.read_claim(out, task_id).state == claims.DONE
        assert predictions_path(out, task_id).is_file()


# -- defect 3: special files where the run keeps its own ----------------------------------------


def test_fifos_in_the_run_folder_neither_hang_the_run_nor_block_sigterm(data, tmp_path):
    """A program of an earlier run left FIFOs where the run keeps its claims, a result, predictions, a worker's log
    and timeline, run.json and the submission. The run opens none of them blocking: it says which it ignores and
    works (the hung task keeps it mid-way), and a real SIGTERM stops it with a valid submission."""
    out = prepare_run_dir(tmp_path / "run")
    fifos = [claim_path(out, t) for t in TASK_IDS] + [result_path(out, ROTATED), predictions_path(out, ROTATED),
             out / "workers" / "worker-0.log", out / "workers" / "worker-0.timeline.jsonl", out / "run.json",
             out / "submission.json"]
    for path in fifos:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)
    args = run_args(data, out, time_limit="300")[1:]  # without -q: the warnings must show
    proc = subprocess.Popen([sys.executable, "-m", "arc25", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, FAULT_ENV: f"hang:{HUNG}@1"})
    try:
        reached = wait_until_working_on_the_hung_task(out, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=HANG_GUARD_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            pytest.fail("the run hung on a FIFO, and SIGTERM had no effect")
    assert reached and proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "not a regular file" in err and "unreadable claim" in err and "replaced by a new file" in err
    check_submission(out, data["challenges"])
    assert json.loads(result_path(out, ROTATED).read_text())["status"] == "done"


def wait_until_working_on_the_hung_task(out: Path, proc: subprocess.Popen) -> bool:
    """Until a worker works on the hung task and the others are done (read here without opening any FIFO); False
    when the run does not get there within the hang guard."""
    limit = time.time() + HANG_GUARD_S
    while time.time() < limit and proc.poll() is None:
        statuses = [json.loads(p.read_text()) for p in (out / "workers").glob("worker-*.status.json") if p.is_file()]
        busy = any(t.get("task_id") == HUNG for s in statuses for t in s.get("tasks", []))
        if busy and all(done(out, t) for t in TASK_IDS if t != HUNG):
            return True
        time.sleep(0.2)
    return False


def done(out: Path, task_id: str) -> bool:
    path = out / "tasks" / task_id / "result.json"  # a plain ARC id is its own name
    return path.is_file() and json.loads(path.read_text()).get("status") == "done"


# -- defect 5: a refused dry run writes nothing -------------------------------------------------


def test_a_refused_dry_run_leaves_the_running_runs_files_alone(data, tmp_path):
    """This test process holds the run lock, as a running `arc25 run` does; a real `arc25 dry-run --out SAME` is
    refused (exit 2, one line) and the running run's challenges.json and solutions.json stay as they were."""
    out = prepare_run_dir(tmp_path / "run")
    mine = {name: f'{{"{name}": "the running run\'s"}}' for name in ("challenges.json", "solutions.json")}
    for name, text in mine.items():
        (out / name).write_text(text)
    with hold_run_dir(out):
        done = run_cli("dry-run", "--challenges", str(data["challenges"]), "--solutions", str(data["solutions"]),
                       "--model", str(data["completions"]), "--set", "model.backend=scripted", "--workers", "1",
                       "--tasks", "1", "--out", str(out), "--no-progress")
    assert done.returncode == 2 and "another run is using this folder" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert {name: (out / name).read_text() for name in mine} == mine


# -- defect 8: one invalid task must not fail the notebook's validation ----------------------------


def test_validate_agrees_with_merge_on_a_test_file_with_an_invalid_task(tmp_path):
    """The notebook's merge then validate on a test file with one invalid task: merge writes fallback attempts for
    it (two per test input its file shows), validate warns about the task and accepts the submission (exit 0)."""
    test = json.loads(TRAIN_2025.read_text())
    challenges = {t: test[t] for t in TASK_IDS}
    challenges["badtask"] = {"train": [{"input": [[1, 2]]}], "test": [{"input": [[3, 4]]}, {"input": [[5]]}]}
    path = tmp_path / "arc-agi_test_challenges.json"
    path.write_text(json.dumps(challenges))
    submission = tmp_path / "submission.json"
    merged = run_cli("merge", "--run", str(tmp_path / "run"), "--challenges", str(path), "--out", str(submission))
    assert merged.returncode == 0, merged.stdout + merged.stderr
    valid = run_cli("validate", "--submission", str(submission), "--challenges", str(path))
    assert valid.returncode == 0, valid.stdout + valid.stderr
    assert "warning: invalid task" in valid.stdout and "badtask" in valid.stdout and "OK" in valid.stdout
    entry = json.loads(submission.read_text())["badtask"]
    assert [e["attempt_1"] for e in entry] == [[[3, 4]], [[5]]]
    # and a submission that lacks the invalid task's entry is still refused
    broken = {t: v for t, v in json.loads(submission.read_text()).items() if t != "badtask"}
    submission.write_text(json.dumps(broken))
    refused = run_cli("validate", "--submission", str(submission), "--challenges", str(path))
    assert refused.returncode == 1 and "missing 1 task(s): badtask" in refused.stdout


# -- defect 9: a duplicated task id is said ---------------------------------------------------------


def test_a_duplicated_task_id_is_warned_about_and_the_last_kept(tmp_path):
    """Kaggle's hidden file with one id twice: the run must go on (warn, keep the last, as json.load does)."""
    test = json.loads(TRAIN_2025.read_text())
    first, second, third = (json.dumps(test[t]) for t in TASK_IDS)
    path = tmp_path / "arc-agi_test_challenges.json"
    path.write_text(f'{{"{ROTATED}": {first}, "{ROTATED}": {second}, "{TASK_IDS[2]}": {third}}}')
    submission = tmp_path / "submission.json"
    merged = run_cli("merge", "--run", str(tmp_path / "run"), "--challenges", str(path), "--out", str(submission))
    assert merged.returncode == 0, merged.stderr
    assert f"{path}: task id '{ROTATED}' appears more than once; keeping the last one" in merged.stderr
    tasks = load_tasks(path)
    assert list(tasks) == [ROTATED, TASK_IDS[2]] and len(tasks[ROTATED].train) == len(test[TASK_IDS[1]]["train"])
    assert validate_submission(json.loads(submission.read_text()), load_tasks_tolerant(path).everything) == []
