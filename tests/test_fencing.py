"""No double writer: an owner that lost its claim (frozen past stale_after_s, then taken over) must not
overwrite the new owner's files when it wakes. Real processes, a real flock, real SIGSTOP/SIGCONT.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from arc25 import claims
from arc25.io import atomic_write_json
from helpers import REPO

# A contender: claims task "a" over and over (stale_after_s=0: every claim is instantly stale, so the two
# processes keep taking it from each other) and writes the task's result inside the fence, checking that
# nobody else wrote while it held it. Prints its counts as JSON.
CONTENDER = textwrap.dedent("""
    import json, os, random, sys, time
    from pathlib import Path
    from arc25 import claims
    from arc25.io import atomic_write_json

    run_dir, worker, until = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    log = run_dir / "writes.log"
    counts = {"written": 0, "lost": 0, "claimed": 0}
    # past `until`, go on (at most 30 s) until this one has both written and lost: under CPU load one
    # process can be outpaced for seconds (seen in CI: 0 written, 88 lost in 3 s)
    while time.time() < until or (not (counts["written"] and counts["lost"]) and time.time() < until + 30):
        claim = claims.claim_next(run_dir, ["a"], worker, max_crashes=10**9, stale_after_s=0.0,
                                  others_alive=False).claim
        if claim is None:
            continue
        counts["claimed"] += 1
        time.sleep(random.uniform(0.0, 0.03))  # the other one takes it over meanwhile, now and then
        try:
            with claims.fenced(run_dir, claim):
                mine = {"worker": worker, "generation": claim.generation}
                atomic_write_json(claims.result_path(run_dir, "a"), mine)
                with open(log, "a") as f:
                    f.write(json.dumps(mine) + "\\n")
                time.sleep(0.001)
                assert json.loads(claims.result_path(run_dir, "a").read_text()) == mine, "overwritten in the fence"
            counts["written"] += 1
        except claims.ClaimLost:
            counts["lost"] += 1
    print(json.dumps(counts))
""")


def python(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "arc25_src"),
                                                                      os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)


def test_every_claim_and_takeover_increments_the_generation(tmp_path):
    first = claims.claim_next(tmp_path, ["a"], 0, max_crashes=5, stale_after_s=60).claim
    assert first.generation == 1
    first.heartbeat -= 120  # its owner froze
    claims.write_claim(tmp_path, first)
    taken = claims.claim_next(tmp_path, ["a"], 1, max_crashes=5, stale_after_s=60).claim
    assert taken.generation == 3  # +1 for the takeover (the old claim marked failed), +1 for the new claim
    assert claims.read_claim(tmp_path, "a").generation == 3


def test_fenced_refuses_a_claim_taken_over_or_ended(tmp_path):
    first = claims.claim_next(tmp_path, ["a", "b"], 0, max_crashes=5, stale_after_s=60).claim
    with claims.fenced(tmp_path, first) as current:
        assert current.generation == first.generation
        assert claims.refresh(tmp_path, first)  # other claims calls inside the fence: no self-deadlock
    first.heartbeat -= 120
    claims.write_claim(tmp_path, first)
    taken = claims.claim_next(tmp_path, ["a"], 1, max_crashes=5, stale_after_s=60).claim
    with pytest.raises(claims.ClaimLost, match=r"task a: lost the claim \(generation 1, worker 0.*now active, "
                                               r"generation 3, worker 1"):
        with claims.fenced(tmp_path, first):
            raise AssertionError("the body must not run")
    with claims.fenced(tmp_path, taken):
        pass
    claims.release(tmp_path, taken, claims.DONE, max_crashes=5)
    with pytest.raises(claims.ClaimLost, match="now done"):
        with claims.fenced(tmp_path, taken):
            pass
    second = claims.claim_next(tmp_path, ["b"], 0, max_crashes=5, stale_after_s=60).claim
    claims.interrupt_claims_of(tmp_path, os.getpid())  # the run stopped this worker
    with pytest.raises(claims.ClaimLost, match="now interrupted"):
        with claims.fenced(tmp_path, second):
            pass


def test_two_processes_taking_a_task_from_each_other_never_write_over_each_other(tmp_path):
    until = time.time() + 3.0
    procs = [python("-c", CONTENDER, str(tmp_path), str(k), str(until)) for k in (0, 1)]
    counts = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        counts.append(json.loads(out))
    for c in counts:  # both really contended: each wrote, and each was refused after a takeover
        assert c["written"] > 0 and c["lost"] > 0, counts
    writes = [json.loads(line) for line in (tmp_path / "writes.log").read_text().splitlines()]
    assert len(writes) == sum(c["written"] for c in counts)
    generations = [w["generation"] for w in writes]
    assert generations == sorted(generations) and len(set(generations)) == len(generations)  # never an older one
    assert json.loads(claims.result_path(tmp_path, "a").read_text()) == writes[-1]


# The old owner: claims the task, writes its first result, says so, then (after being frozen and woken) tries
# to write again and reports whether the fence let it.
OLD_OWNER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from arc25 import claims
    from arc25.io import atomic_write_json

    run_dir = Path(sys.argv[1])
    claim = claims.claim_next(run_dir, ["a"], 0, max_crashes=5, stale_after_s=1.0).claim
    with claims.fenced(run_dir, claim):
        atomic_write_json(claims.result_path(run_dir, "a"), {"owner": "old", "epoch": 1})
    print("wrote", flush=True)
    sys.stdin.readline()  # frozen here by SIGSTOP; the test sends a line after SIGCONT
    try:
        with claims.fenced(run_dir, claim):
            atomic_write_json(claims.result_path(run_dir, "a"), {"owner": "old", "epoch": 2})
        print("overwrote", flush=True)
    except claims.ClaimLost as exc:
        print("refused:", exc, flush=True)
""")


def test_a_frozen_owner_woken_after_a_takeover_is_refused(tmp_path):
    old = python("-c", OLD_OWNER, str(tmp_path), stdin=subprocess.PIPE)
    try:
        assert old.stdout.readline().strip() == "wrote"
        os.kill(old.pid, signal.SIGSTOP)
        time.sleep(1.2)  # past stale_after_s: its heartbeat is old, although its pid is alive
        new = claims.claim_next(tmp_path, ["a"], 1, max_crashes=5, stale_after_s=1.0).claim
        assert new is not None and new.worker == 1 and new.attempt == 2
        with claims.fenced(tmp_path, new):
            atomic_write_json(claims.result_path(tmp_path, "a"), {"owner": "new", "epoch": 1})
        os.kill(old.pid, signal.SIGCONT)
        old.stdin.write("go\n")
        old.stdin.flush()
        line = old.stdout.readline().strip()
        assert line.startswith("refused: task a: lost the claim"), line
        assert old.wait(timeout=30) == 0
    finally:
        os.kill(old.pid, signal.SIGCONT) if old.poll() is None else None
        old.kill()
    assert json.loads(claims.result_path(tmp_path, "a").read_text()) == {"owner": "new", "epoch": 1}


# -- end to end: a real worker frozen mid-task, taken over, woken --------------------------------------------


def start_worker(run_dir: Path, index: int) -> subprocess.Popen:
    """`python -m arc25.workers` by hand, without the run's parent: the parent would SIGKILL a frozen worker,
    while a worker on another host, or one the parent could not see freeze, would wake up."""
    log = open(run_dir / "workers" / f"worker-{index}.log", "a")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "arc25_src"),
                                                                      os.environ.get("PYTHONPATH")]))}
    env.pop("ARC25_FAULT_INJECT", None)
    return subprocess.Popen([sys.executable, "-m", "arc25.workers", "--run-dir", str(run_dir), "--index", str(index)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)


def wait_for(condition, timeout: float, what: str) -> None:
    limit = time.time() + timeout
    while time.time() < limit:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_frozen_worker_woken_after_a_takeover_leaves_the_new_result_alone(tmp_path):
    from arc25.config import load_config
    from arc25.run import prepare_run_dir, write_run_file
    from helpers import TRAIN_2025, TRAIN_2025_SOLUTIONS

    task_id = "3c9b0459"
    challenges, solutions = tmp_path / "challenges.json", tmp_path / "solutions.json"
    challenges.write_text(json.dumps({task_id: json.loads(TRAIN_2025.read_text())[task_id]}))
    solutions.write_text(json.dumps({task_id: json.loads(TRAIN_2025_SOLUTIONS.read_text())[task_id]}))
    # A slow heartbeat: when the old owner wakes, only the fence can stop its write at the end of the epoch in
    # flight (a heartbeat would notice the takeover first, now and then, and drop the task before it writes).
    # Wrong programs decoded slowly (one character = one token at 400/s): every epoch takes seconds, none solves it.
    program = ("```python\nfrom common import *\n\nimport numpy as np\n\n"
               "def transform(input_grid):\n    return input_grid\n```")
    completions = tmp_path / "completions.json"
    completions.write_text(json.dumps({"completions": [program], "tokens_per_s": 400}))
    config = load_config(None, ["model.backend=scripted", f"model.path={completions}", "sampling.n_per_prompt=2",
                                "search.predictions_per_epoch=8", "search.max_epochs=3", "execution.workers=1",
                                "execution.timeout_s=1", "run.heartbeat_s=60", "run.stale_after_s=2",
                                "run.tasks_per_worker=1"])
    run_dir = prepare_run_dir(tmp_path / "run")
    now = time.time()
    write_run_file(run_dir, str(challenges), str(solutions), [task_id], ["cpu", "cpu"], now, now + 300, config, {})

    old = start_worker(run_dir, 0)
    new = None
    result = claims.result_path(run_dir, task_id)
    try:
        wait_for(result.exists, 120, "the first worker's first epoch")
        os.kill(old.pid, signal.SIGSTOP)  # frozen mid-task: its heartbeat stops too
        time.sleep(3.0)  # past stale_after_s
        new = start_worker(run_dir, 1)
        # The result is written before the claim is released: wait for both (CI once read the claim in between).
        wait_for(lambda: claims.result_done(run_dir, task_id, warn=False)
                 and claims.read_claim(run_dir, task_id).state == claims.DONE, 120, "the new owner to finish the task")
        taken = claims.read_claim(run_dir, task_id)
        assert taken.worker == 1 and taken.attempt == 2 and taken.state == claims.DONE
        assert new.wait(timeout=60) == 0  # nothing left: it exits
        files = {p.name: p.read_bytes() for p in result.parent.iterdir()}
        os.kill(old.pid, signal.SIGCONT)
        assert old.wait(timeout=60) == 0  # wakes, learns it lost the task, finds nothing left, exits
    finally:
        for proc in (old, new):
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                proc.kill()
    assert {p.name: p.read_bytes() for p in result.parent.iterdir()} == files  # not one byte from the old owner
    assert claims.read_claim(run_dir, task_id).generation == taken.generation
    assert "lost" in (run_dir / "workers" / "worker-0.log").read_text()
