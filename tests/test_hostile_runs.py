"""The run's invariant under a hostile environment (issue 18): whatever the disk, the engine or a signal does,
`arc25 run` exits within a bounded time after its deadline with a valid, complete submission.json (fallback
attempts where nothing better exists), or says in one line why it could not write one.

Real `arc25 run` processes (2 CPU workers, the scripted backend as the model, real sandboxed programs):
- log files on a full device: the timelines and engine logs are symlinks to /dev/full (every write fails with
  the kernel's ENOSPC), and, where this machine lets a user namespace mount one, RUN_DIR/workers/ is a full
  tmpfs (logs, status files and worker logs all fail) or the whole RUN_DIR is a tmpfs with 40 KB free
  (the final merge writes into the space the parent held for it);
- a hung engine: the scripted backend's `hang_marker` blocks one generate call for ever, in a worker;
- a stop signal while programs run, and the deadline while programs run (played-back programs that sleep).
The bound is the run's own: submission.json is written before started_at + time_limit_s (the deadline plus the
reserve), and the process exits then (the subprocess timeout is only the test's guard against a hang).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from arc25 import claims
from arc25.workers import FAULT_ENV
from helpers import REPO
from test_workers import (ROTATED, TASK_IDS, answer, check_submission, claim, data, result, run_args,  # noqa: F401
                          timeline)

HUNG = "00576224"
# A played-back program that runs until the executor's timeout (execution.timeout_s=60 below): every task's first
# epoch is still executing its programs when the deadline (or the signal) comes. (A task's later epochs are
# never started when they would not fit in its budget, so only a first epoch can be caught this surely.)
SLEEPS = answer("    import time\n    time.sleep(600)\n    return input_grid")


def command(data: dict[str, Path], out: Path, time_limit: str, extra: list[str] = ()) -> list[str]:
    return [sys.executable, "-m", "arc25", *run_args(data, out, time_limit=time_limit, extra=list(extra))]


def start(cmd: list[str], fault: str | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != FAULT_ENV}
    if fault:
        env[FAULT_ENV] = fault
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 150) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    finally:
        proc.kill()


def completions_file(folder: Path, completions: list[str], **extra: object) -> Path:
    path = folder / "completions.json"
    path.write_text(json.dumps({"completions": completions, **extra}))
    return path


def check_invariant(out: Path, data: dict[str, Path], stderr: str) -> dict:
    """A valid, complete submission written within the run's time limit, no traceback, no claim left active."""
    assert "Traceback" not in stderr, stderr
    submission = check_submission(out, data["challenges"])
    run = json.loads((out / "run.json").read_text())
    assert (out / "submission.json").stat().st_mtime <= run["started_at"] + run["time_limit_s"]
    left = [t for t in TASK_IDS if (c := claims.read_claim(out, t)) is not None and c.state == claims.ACTIVE]
    assert left == []
    return submission


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 90) -> None:
    limit = time.time() + timeout
    while time.time() < limit:
        assert proc.poll() is None, proc.communicate()
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("the run never reached the state the test waits for")


def user_namespace_tmpfs_works() -> bool:
    """Whether `unshare -rm` can mount a tmpfs here (unprivileged user namespaces, or root)."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=4k tmpfs /mnt"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


TMPFS = pytest.mark.skipif(not user_namespace_tmpfs_works(),
                           reason="no user namespace with mount here: the /dev/full test covers the log writes")


def on_full_tmpfs(mount: Path, cmd: list[str], free_kb: int = 0, size_kb: int = 1024) -> list[str]:
    """`cmd` inside a mount namespace where `mount` is a tmpfs of `size_kb` filled to `free_kb` free (a real
    ENOSPC for every write past that). The mount is gone when the command ends; what it wrote is copied to
    `mount`.saved for the test to read."""
    script = ('set -e; m="$1"; size="$2"; free="$3"; shift 3; mount -t tmpfs -o size="${size}k" tmpfs "$m"; '
              'dd if=/dev/zero of="$m/.filler" bs=1k count=$((size - free)) 2>/dev/null || true; '
              'set +e; "$@"; rc=$?; rm -f "$m/.filler"; cp -a "$m" "$m.saved"; exit $rc')
    return ["unshare", "-rm", "sh", "-c", script, "sh", str(mount), str(size_kb), str(free_kb), *cmd]


# -- defect 4: a log write that fails costs the log line, never the run -------------------------------


def test_log_files_linked_to_a_full_device_cost_no_run(data, tmp_path):
    """Every log file a symlink to /dev/full (each write: ENOSPC). The run's appends open with O_NOFOLLOW
    (`io.open_regular`), so each link is replaced by a new file with one warning line and the logs go on;
    a real ENOSPC under the logs is `test_a_full_disk_under_the_logs_costs_only_the_logs` (tmpfs)."""
    out = tmp_path / "run"
    (out / "workers").mkdir(parents=True)
    logs = [out / "workers" / f"worker-{k}.{kind}.jsonl" for k in (0, 1) for kind in ("timeline", "engine")]
    for path in logs:
        path.symlink_to("/dev/full")  # every write: ENOSPC from the kernel
    proc = start(command(data, out, "90"))
    stdout, stderr = finish(proc)
    assert proc.returncode == 0, stderr
    submission = check_invariant(out, data, stderr)
    truth = json.loads(data["solutions"].read_text())[ROTATED][0]
    assert submission[ROTATED][0]["attempt_1"] == truth
    assert all(result(out, t)["status"] == "done" and claim(out, t).state == claims.DONE for t in TASK_IDS)
    worker_logs = "".join((out / "workers" / f"worker-{k}.log").read_text() for k in (0, 1))
    for path in logs:  # one line per link, in the worker that met it first; never a dropped line after it
        assert worker_logs.count(f"{path}: not a regular file") == 1 and f"{path}: cannot write" not in worker_logs
        assert path.is_file() and not path.is_symlink() and path.read_text().strip()
    assert "Traceback" not in worker_logs


@TMPFS
def test_a_full_disk_under_the_logs_costs_only_the_logs(data, tmp_path):
    """RUN_DIR/workers/ (logs, status files, timelines, engine logs) on a tmpfs with no space left."""
    out = tmp_path / "run"
    (out / "workers").mkdir(parents=True)
    proc = start(on_full_tmpfs(out / "workers", command(data, out, "90"), free_kb=0, size_kb=64))
    stdout, stderr = finish(proc)
    assert proc.returncode == 0, stderr
    check_invariant(out, data, stderr)
    assert all(result(out, t)["status"] == "done" for t in TASK_IDS)
    logs = list((out / "workers.saved").glob("worker-*"))
    assert logs and all(p.stat().st_size == 0 for p in logs)  # created, but not one byte of them fitted
    assert "cannot write" in stderr and "No space left on device" in stderr  # said, once per file
    assert stderr.count("worker-0.status.json: cannot write") == 1


@TMPFS
def test_a_full_run_folder_still_gets_its_submission(data, tmp_path):
    """The whole RUN_DIR on a tmpfs with 40 KB free: the workers' results fill it (they are not logs: the
    workers fail), and the final merge still lands, in the space the parent held for it."""
    out = tmp_path / "run"
    out.mkdir()
    proc = start(on_full_tmpfs(out, command(data, out, "40"), free_kb=40, size_kb=1024))
    stdout, stderr = finish(proc)
    assert "Traceback" not in stderr, stderr
    assert proc.returncode in (0, 1), stderr  # 1: every worker failed (a setup problem), said in stdout
    assert "merging into the space held for it" in stderr
    check_submission(out.parent / "run.saved", data["challenges"])
    assert not (out.parent / "run.saved" / ".merge-space").exists()


# -- defect 6: a hung engine gives its tasks up ---------------------------------------------------------


def test_a_hung_engine_gives_its_tasks_to_the_other_worker(data, tmp_path):
    """K = 3 tasks in flight; the first engine call of the run never returns. The stuck worker's heartbeat
    would keep its claims fresh until the deadline; its watchdog releases them instead."""
    model = completions_file(tmp_path, json.loads(data["completions"].read_text())["completions"],
                             hang_marker=str(tmp_path / "hung"))
    out = tmp_path / "run"
    cmd = command({**data, "completions": model}, out, "60",
                  ["run.tasks_per_worker=3", "run.engine_stall_s=8", "run.heartbeat_s=0.5"])
    proc = start(cmd)
    stdout, stderr = finish(proc)
    assert proc.returncode == 0, stderr
    check_invariant(out, data, stderr)
    assert (tmp_path / "hung").exists()  # one call did hang
    assert "its engine stalled" in stderr
    # every task finished before the deadline: the stuck worker's tasks were redone by the other one
    assert all(result(out, t)["status"] == "done" and claim(out, t).state == claims.DONE for t in TASK_IDS)
    crashed = {r["task_id"] for r in timeline(out) if r["outcome"] == "crashed"}
    assert crashed and all(claim(out, t).attempt == 2 and claim(out, t).crashes == 1 for t in crashed)
    assert "the deadline arrived" not in stdout


# -- the invariant across hostile cases ------------------------------------------------------------------


def test_invariant_hung_engine_through_the_deadline(data, tmp_path):
    """The watchdog off: the stuck worker is stopped at the deadline (SIGTERM, then SIGKILL)."""
    model = completions_file(tmp_path, json.loads(data["completions"].read_text())["completions"],
                             hang_marker=str(tmp_path / "hung"))
    out = tmp_path / "run"
    proc = start(command({**data, "completions": model}, out, "14", ["run.engine_stall_s=0"]))
    stdout, stderr = finish(proc)
    assert proc.returncode == 0, stderr
    check_invariant(out, data, stderr)
    assert "deadline" in stdout
    stuck = [t for t in TASK_IDS if claim(out, t).state == claims.INTERRUPTED]
    assert stuck and all(claim(out, t).crashes == 0 for t in TASK_IDS)  # cut off by the run, not crashed


def test_invariant_logs_on_a_full_device_at_the_deadline(data, tmp_path):
    """/dev/full logs and a task that hangs until the deadline: the parent's own timeline rows fail too."""
    out = tmp_path / "run"
    (out / "workers").mkdir(parents=True)
    for k in (0, 1):
        for kind in ("timeline", "engine"):
            (out / "workers" / f"worker-{k}.{kind}.jsonl").symlink_to("/dev/full")
    proc = start(command(data, out, "14"), fault=f"hang:{HUNG}")
    stdout, stderr = finish(proc)
    assert proc.returncode == 0, stderr
    check_invariant(out, data, stderr)
    assert claim(out, HUNG).state == claims.INTERRUPTED
    assert stderr.count("worker-0.timeline.jsonl: cannot write") <= 1


def slow_programs(data: dict[str, Path], tmp_path: Path) -> dict[str, Path]:
    return {**data, "completions": completions_file(tmp_path, [SLEEPS])}


SLOW = ["run.tasks_per_worker=3", "execution.timeout_s=60"]


def test_invariant_deadline_while_programs_run(data, tmp_path):
    """Every task is still executing programs when the deadline comes: stopped, not crashed (defect 7)."""
    out = tmp_path / "run"
    proc = start(command(slow_programs(data, tmp_path), out, "16", SLOW))
    stdout, stderr = finish(proc)
    assert proc.returncode == 0, stderr
    check_invariant(out, data, stderr)
    assert sorted(r["outcome"] for r in timeline(out)) == ["deadline"] * len(TASK_IDS)
    for task_id in TASK_IDS:
        taken = claim(out, task_id)
        assert taken.state == claims.INTERRUPTED and taken.crashes == 0  # a resumed run redoes them
    worker_logs = "".join(p.read_text() for p in (out / "workers").glob("worker-*.log"))
    assert "crashed" not in worker_logs and "AssertionError" not in worker_logs


def test_invariant_sigterm_while_programs_run(data, tmp_path):
    out = tmp_path / "run"
    proc = start(command(slow_programs(data, tmp_path), out, "300", SLOW))

    def executing() -> bool:
        for path in (out / "workers").glob("worker-*.status.json"):
            try:
                status = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if any(t.get("phase") == "execute" for t in status.get("tasks") or []):
                return True
        return False

    try:
        wait_for(executing, proc)
        proc.send_signal(signal.SIGTERM)
    finally:
        stdout, stderr = finish(proc, timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    check_invariant(out, data, stderr)
    assert all(c.crashes == 0 for t in TASK_IDS if (c := claims.read_claim(out, t)) is not None)
