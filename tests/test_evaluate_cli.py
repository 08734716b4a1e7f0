"""`arc25 evaluate` end to end, as a subprocess, on a real ARC task."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from arc25.augment import Augmentation
from arc25.prompts import PromptSpec, format_answer
from helpers import TRAIN_2025, TRAIN_2025_SOLUTIONS

REPO = Path(__file__).resolve().parents[1]
TASK_ID = "007bbfb7"  # 3x3 -> 9x9 fractal, in the ARC Prize 2025 training set

FRACTAL = """from common import *

import numpy as np
from typing import *

# concepts:
# fractal
# description:
# Every coloured cell becomes a copy of the input.

def transform(input_grid):
    n, m = input_grid.shape
    output_grid = np.zeros((n * n, m * m), dtype=int)
    for x in range(n):
        for y in range(m):
            if input_grid[x, y] != Color.BLACK:
                blit_sprite(output_grid, input_grid, x * n, y * m)
    return output_grid
"""


@pytest.fixture(scope="module")
def task_files(tmp_path_factory) -> tuple[Path, Path]:
    challenges = json.loads(TRAIN_2025.read_text())
    solutions = json.loads(TRAIN_2025_SOLUTIONS.read_text())
    folder = tmp_path_factory.mktemp("task")
    c, s = folder / "tiny_challenges.json", folder / "tiny_solutions.json"
    c.write_text(json.dumps({TASK_ID: challenges[TASK_ID]}))
    s.write_text(json.dumps({TASK_ID: solutions[TASK_ID]}))
    return c, s


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "arc25_src"), env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-m", "arc25", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=120)


def write_jsonl(path: Path, rows: list, gz: bool = False) -> Path:
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
    if gz:
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


def test_evaluate_scores_predictions(task_files, tmp_path):
    challenges, solutions = task_files
    flip_spec = PromptSpec(0, Augmentation(True, 1, (0, 3, 1, 2, 4, 5, 6, 7, 8, 9)), 1)
    predictions = write_jsonl(tmp_path / "p.jsonl.gz", [
        {"task_id": TASK_ID, "code": FRACTAL},
        # the fractal rule commutes with every dihedral transform and colour permutation
        {"task_id": TASK_ID, "completion": format_answer(FRACTAL), "prompt": flip_spec.to_dict()},
        {"task_id": TASK_ID, "completion": "I think the answer is blue.",
         "augmentation": Augmentation(False, 2).to_dict()},
        {"task_id": TASK_ID, "code": "def transform(g):\n    return g\n"},
        {"task_id": TASK_ID, "code": "def transform(g):\n    while True:\n        pass\n"},
    ], gz=True)
    out = tmp_path / "results.jsonl"
    proc = run_cli("-q", "evaluate", "--challenges", str(challenges), "--solutions", str(solutions),
                   "--predictions", str(predictions), "--out", str(out), "--timeout", "1", "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in results] == [1, 2, 3, 4, 5]
    assert [r["train_pass"] for r in results] == [True, True, False, False, False]
    assert [r["test_pass"] for r in results] == [True, True, False, False, False]
    assert [r["kind"] for r in results] == [None, None, "no_code", None, "timeout"]
    assert results[2]["valid_code"] is False and results[3]["valid_outputs"] is True
    assert results[0]["test_outputs"] == json.loads(solutions.read_text())[TASK_ID]
    table = {line[:16].strip(): line[16:].split() for line in proc.stdout.splitlines() if line.strip()}
    assert table["train pass"] == ["40.0%", "2/5", "predictions"]
    assert table["pass@n"] == ["100.0%", "1/1", "tasks"]
    assert table["pass@2"][0] == "100.0%"
    assert any(line.split()[:2] == ["timeout", "1"] for line in proc.stdout.splitlines())
    assert any(line.split()[:2] == ["no_code", "1"] for line in proc.stdout.splitlines())


@pytest.mark.parametrize("bad_line, fragment", [
    ("{not json", "invalid JSON"),
    ('{"task_id": "007bbfb7"}', "'completion' or 'code'"),
    ('{"task_id": "nope", "code": "x"}', "unknown task id"),
    ('{"task_id": "007bbfb7", "code": "x", "augmentation": {"flip": true}}', "augmentation"),
    ('[1, 2]', "expected a JSON object"),
])
def test_malformed_line_is_a_clear_error(task_files, tmp_path, bad_line, fragment):
    challenges, solutions = task_files
    predictions = write_jsonl(tmp_path / "p.jsonl", [{"task_id": TASK_ID, "code": FRACTAL}, bad_line])
    proc = run_cli("evaluate", "--challenges", str(challenges), "--solutions", str(solutions),
                   "--predictions", str(predictions), "--out", str(tmp_path / "r.jsonl"))
    assert proc.returncode == 2
    assert "line 2" in proc.stderr and fragment in proc.stderr and str(predictions) in proc.stderr
    assert "Traceback" not in proc.stderr
