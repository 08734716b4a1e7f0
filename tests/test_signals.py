"""Stopping a run from outside: SIGTERM and SIGHUP stop it as Ctrl-C does (workers stopped, submission merged,
exit 128 + signal), and SIGKILL of the parent takes its workers and their program executors along.

Real `arc25 run` processes with the scripted backend; one task hangs (the workers' ARC25_FAULT_INJECT test hook)
so the run is certainly mid-way when the signal comes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from arc25 import claims
from arc25.workers import FAULT_ENV
from helpers import REPO
from test_workers import ROTATED, TASK_IDS, check_submission, data, run_args, timeline  # noqa: F401 (data: fixture)

HUNG = "00576224"  # its first attempt never ends: the run is mid-way until stopped


def start_run(data: dict[str, Path], out: Path, extra: tuple[str, ...] = (), command: str = "run",
              **popen) -> subprocess.Popen:
    env = {**os.environ, FAULT_ENV: f"hang:{HUNG}@1"}
    args = run_args(data, out, time_limit="300", extra=extra)
    args[args.index("run")] = command  # dry-run takes the same options
    cmd = [sys.executable, "-m", "arc25", *args]
    # SIGHUP at its default in the run, whatever the test runner inherited (pytest under nohup ignores it)
    popen.setdefault("preexec_fn", lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **popen)


def wait_until_mid_run(out: Path, proc: subprocess.Popen, timeout: float = 90) -> list[psutil.Process]:
    """Until the hung task is being worked on and the others are done; returns the run's whole process tree."""
    limit = time.time() + timeout
    while time.time() < limit:
        assert proc.poll() is None, proc.communicate()
        claim = claims.read_claim(out, HUNG)
        busy = claim is not None and claim.state == claims.ACTIVE
        if busy and all(claims.result_done(out, t, warn=False) for t in TASK_IDS if t != HUNG):
            tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
            # 2 workers, each with 1 program executor (execution.workers=1)
            assert len(tree) >= 5, [p.cmdline() for p in tree]
            return tree
        time.sleep(0.2)
    raise AssertionError("the run never reached the hung task with the others done")


def alive(tree: list[psutil.Process]) -> list[str]:
    """The processes of `tree` still running (zombies waiting for a reaper count as gone)."""
    left = []
    for p in tree:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:  # is_running also checks the create time
                left.append(f"{p.pid} {' '.join(p.cmdline())[:120]}")
        except psutil.NoSuchProcess:
            pass
    return left


def wait_all_gone(tree: list[psutil.Process], within_s: float = 10.0) -> list[str]:
    limit = time.time() + within_s
    while alive(tree) and time.time() < limit:
        time.sleep(0.2)
    return alive(tree)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_stop_signal_merges_a_complete_submission_and_leaves_no_process(data, tmp_path, sig):
    out = tmp_path / "run"
    proc = start_run(data, out)
    try:
        tree = wait_until_mid_run(out, proc)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    name = signal.Signals(sig).name
    assert proc.returncode == 128 + sig, stderr
    assert f"received {name}: stopping workers, merging" in stderr and "Traceback" not in stderr
    assert f"stopped by {name}" in stdout
    submission = check_submission(out, data["challenges"])  # every task, two valid attempts each
    truth = json.loads(data["solutions"].read_text())[ROTATED][0]
    assert submission[ROTATED][0]["attempt_1"] == truth  # what the workers found before the stop is in it
    assert claims.read_claim(out, HUNG).state == claims.INTERRUPTED  # stopped, not the task's fault: redone later
    assert any(r["task_id"] == HUNG and r["outcome"] == "stopped" for r in timeline(out))
    assert wait_all_gone(tree) == []


def test_sigkill_of_the_parent_takes_the_workers_along_and_the_run_resumes(data, tmp_path):
    out = tmp_path / "run"
    # A slow heartbeat: the workers' own check for a dead parent (every heartbeat) cannot act within the 10 s
    proc = start_run(data, out, extra=("run.heartbeat_s=60",))
    try:
        tree = wait_until_mid_run(out, proc)
        proc.kill()  # no handler can run: only PR_SET_PDEATHSIG (and the executors' closed pipes) act
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert wait_all_gone(tree) == []
    # nothing could merge at the end, but the submission written when the run started stands (all fallbacks)
    check_submission(out, data["challenges"])
    resumed = start_run(data, out)  # the hang was for attempt 1 only
    stdout, stderr = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, stderr
    check_submission(out, data["challenges"])
    taken = claims.read_claim(out, HUNG)
    assert taken.state == claims.DONE and taken.attempt == 2
    assert taken.crashes == 0  # the run's end cut the first attempt off, not the task: no crash counted


def test_sigterm_to_a_dry_run(data, tmp_path):
    out = tmp_path / "dry"
    proc = start_run(data, out, command="dry-run")
    try:
        tree = wait_until_mid_run(out, proc)
        proc.terminate()
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "received SIGTERM: stopping workers, merging" in stderr and "Traceback" not in stderr
    assert "stopped by SIGTERM" in stdout and f"{out / 'submission.json'}: valid" in stdout
    check_submission(out, data["challenges"])
    assert wait_all_gone(tree) == []


def test_an_ignored_sighup_stays_ignored(data, tmp_path):
    """`nohup arc25 run ...`: closing the terminal must not stop the run."""
    out = tmp_path / "run"
    proc = start_run(data, out, preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    try:
        wait_until_mid_run(out, proc)
        proc.send_signal(signal.SIGHUP)
        time.sleep(2.0)
        assert proc.poll() is None  # still running
        proc.terminate()
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "SIGHUP" not in stderr and "received SIGTERM" in stderr
    check_submission(out, data["challenges"])


def test_claims_left_by_a_killed_run_are_interrupted_not_crashed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = claims.socket.gethostname()
    now = time.time()
    orphan = claims.Claim("a", claims.ACTIVE, worker=0, pid=dead.pid, host=host, attempt=1, heartbeat=now)
    live = claims.Claim("b", claims.ACTIVE, worker=1, pid=os.getpid(), pid_started=claims.process_started(os.getpid()),
                        host=host, attempt=1, heartbeat=now)
    remote = claims.Claim("c", claims.ACTIVE, worker=2, pid=dead.pid, host="elsewhere", attempt=1, heartbeat=now)
    for c in (orphan, live, remote):
        claims.write_claim(tmp_path, c)
    assert [c.task_id for c in claims.interrupt_orphaned(tmp_path)] == ["a"]
    assert claims.read_claim(tmp_path, "a").state == claims.INTERRUPTED and claims.read_claim(tmp_path, "a").crashes == 0
    assert claims.read_claim(tmp_path, "b").state == claims.ACTIVE  # alive: not ours to judge
    assert claims.read_claim(tmp_path, "c").state == claims.ACTIVE  # another host: only its heartbeat tells
    taken = claims.claim_next(tmp_path, ["a"], 0, max_crashes=2, stale_after_s=60).claim
    assert taken.attempt == 2 and taken.crashes == 0
