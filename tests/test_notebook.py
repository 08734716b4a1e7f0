"""The Kaggle notebook, executed for real through nbclient (its CPU branch: tiny model, two tasks)."""

import json

import nbformat
import pytest
from nbclient import NotebookClient

from arc25.submission import validate_submission
from arc25.tasks import load_tasks
from helpers import REPO, TRAIN_2025


@pytest.mark.slow
def test_notebook_writes_a_valid_submission(tmp_path, monkeypatch):
    data = json.loads(TRAIN_2025.read_text())
    challenges = tmp_path / "challenges.json"
    challenges.write_text(json.dumps({t: data[t] for t in ("3c9b0459", "6150a2bd")}))
    monkeypatch.setenv("ARC25_CHALLENGES", str(challenges))
    monkeypatch.setenv("ARC25_WORK", str(tmp_path / "work"))
    notebook = nbformat.read(REPO / "kaggle_notebook.ipynb", as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    submission = json.loads((tmp_path / "work" / "submission.json").read_text())
    assert validate_submission(submission, load_tasks(challenges)) == []
    outputs = "".join(o.get("text", "") for cell in notebook.cells for o in cell.get("outputs", []))
    assert "run exit code 0" in outputs
