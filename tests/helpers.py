"""Shared test helpers: where the real ARC data lives, relative to the repository."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ARC25_DATA", REPO.parent / "shared" / "data"))
EVAL_2025 = DATA / "arc-prize-2025" / "arc-agi_evaluation_challenges.json"
EVAL_2025_SOLUTIONS = DATA / "arc-prize-2025" / "arc-agi_evaluation_solutions.json"
TRAIN_2025 = DATA / "arc-prize-2025" / "arc-agi_training_challenges.json"
TRAIN_2025_SOLUTIONS = DATA / "arc-prize-2025" / "arc-agi_training_solutions.json"
TEST_2025 = DATA / "arc-prize-2025" / "arc-agi_test_challenges.json"
EVAL_2024 = DATA / "arc-prize-2024" / "arc-agi_evaluation_challenges.json"
EVAL_2024_SOLUTIONS = DATA / "arc-prize-2024" / "arc-agi_evaluation_solutions.json"


def run_cli(*args: str, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m arc25 ARGS` in a subprocess, as a user would run it."""
    return subprocess.run([sys.executable, "-m", "arc25", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or REPO)
