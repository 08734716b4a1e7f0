"""`arc25 upload / push / submit` drive the kaggle CLI: exact command lines, streamed output, exit status, and no
credential in the staged folders or the output.

The kaggle CLI needs the network and a Kaggle account, so a fake `kaggle` executable is put
first on PATH (kaggle_helpers.FAKE_KAGGLE): it records its argv, its environment and the
files of the folder it was given, prints the credentials it received (as a careless tool
might) and exits with $FAKE_KAGGLE_EXIT.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from helpers import REPO
from kaggle_helpers import fake_kaggle, recorded, run_arc25

SECRET = "s3cr3t-kaggle-key-value-0123456789"
TOKEN = "KGAT" + "_0123456789abcdef0123456789abcdef"


@pytest.fixture
def kaggle_env(tmp_path):
    """PATH with the fake kaggle first, an empty HOME, a token and a key in the environment."""
    bin_dir = tmp_path / "bin"
    fake_kaggle(bin_dir)
    log = tmp_path / "kaggle-calls.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    env |= {"PATH": f"{bin_dir}{os.pathsep}{env['PATH']}", "HOME": str(tmp_path / "home"),
            "XDG_CONFIG_HOME": str(tmp_path / "home" / ".config"), "FAKE_KAGGLE_LOG": str(log),
            "KAGGLE_USERNAME": "alice", "KAGGLE_KEY": SECRET, "KAGGLE_API_TOKEN": TOKEN}
    return env, log


@pytest.fixture(scope="module")
def staged_code(tmp_path_factory):
    out = tmp_path_factory.mktemp("staged") / "arc25-code"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    proc = run_arc25("package", "--out", str(out), "--id", "alice/arc25-code", env=env)
    assert proc.returncode == 0, proc.stderr
    return out


def no_secret_anywhere(proc, *folders: Path):
    text = proc.stdout + proc.stderr
    assert SECRET not in text and TOKEN not in text, text
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert SECRET.encode() not in data and b"KGAT" + b"_" not in data, path


def test_upload_new_and_version_exact_command_lines(kaggle_env, staged_code):
    env, log = kaggle_env
    new = run_arc25("upload", str(staged_code), "--new", env=env)
    version = run_arc25("upload", str(staged_code), "-m", "faster merge", env=env)
    assert new.returncode == 0 and version.returncode == 0, new.stderr + version.stderr
    calls = recorded(log)
    assert [c["argv"] for c in calls] == [
        ["datasets", "create", "-p", str(staged_code), "-r", "zip"],
        ["datasets", "version", "-p", str(staged_code), "-r", "zip", "-m", "faster merge"],
    ]
    assert f"$ kaggle datasets create -p {staged_code} -r zip" in new.stdout and "Done." in new.stdout
    assert "Uploading as alice with *** ***" in new.stdout  # streamed, the key and the token masked
    assert calls[0]["env"]["KAGGLE_KEY"] == SECRET  # the CLI itself still gets its credentials
    assert set(calls[0]["files"]) == {p.name for p in staged_code.iterdir()}
    no_secret_anywhere(new, staged_code)
    no_secret_anywhere(version)


def test_upload_passes_the_cli_exit_status(kaggle_env, staged_code):
    env, log = kaggle_env
    proc = run_arc25("upload", str(staged_code), "-m", "x", env=env | {"FAKE_KAGGLE_EXIT": "3"})
    assert proc.returncode == 3 and "kaggle exited with status 3" in proc.stderr
    no_secret_anywhere(proc)


def test_upload_refuses_a_folder_changed_after_staging(kaggle_env, staged_code, tmp_path):
    env, log = kaggle_env
    changed = tmp_path / "changed"
    changed.mkdir()
    for path in staged_code.iterdir():
        (changed / path.name).write_bytes(path.read_bytes())
    (changed / ".env").write_text(f"KAGGLE_KEY={SECRET}\n")
    proc = run_arc25("upload", str(changed), "--new", env=env)
    assert proc.returncode == 2 and ".env is not in the manifest" in proc.stderr
    assert not log.exists()  # the CLI never ran
    no_secret_anywhere(proc)


def test_missing_cli_and_missing_credentials_are_one_clear_line(kaggle_env, staged_code):
    env, log = kaggle_env
    no_cli = run_arc25("upload", str(staged_code), "--new", env=env | {"PATH": os.path.dirname(sys.executable)})
    assert no_cli.returncode == 2
    assert no_cli.stderr.strip() == ('arc25 upload: error: the kaggle CLI is not installed: '
                                     'pip install -e ".[kaggle]" (or pip install kaggle)')
    bare = {k: v for k, v in env.items() if k not in ("KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_USERNAME")}
    no_creds = run_arc25("upload", str(staged_code), "--new", env=bare)
    assert no_creds.returncode == 2 and len(no_creds.stderr.strip().splitlines()) == 1
    assert "no Kaggle credentials found" in no_creds.stderr and "KAGGLE_API_TOKEN" in no_creds.stderr
    # a token file in ~/.kaggle is enough for the check (the CLI reads it itself)
    token_file = Path(env["HOME"]) / ".kaggle" / "access_token"
    token_file.parent.mkdir(parents=True)
    token_file.write_text(TOKEN)
    with_file = run_arc25("upload", str(staged_code), "-m", "m", env=bare)
    assert with_file.returncode == 0 and "Uploading as ? with - -" in with_file.stdout
    assert len(recorded(log)) == 1


def test_push_stages_the_notebook_with_metadata_from_the_config(kaggle_env, tmp_path):
    env, log = kaggle_env
    out = tmp_path / "kernel"
    refused = run_arc25("push", "--out", str(out), "--set", "kaggle.username=alice", env=env, cwd=REPO)
    assert refused.returncode == 2 and "kaggle.model_sources still names the placeholder owner" in refused.stderr
    proc = run_arc25("push", "--out", str(out), "--set", "kaggle.username=alice", "--set",
                     "kaggle.competition=arc-prize-2026-arc-agi-2", "--set",
                     "kaggle.model_sources=bob/barc-induction-8b/transformers/default/2,alice/barc-weights", env=env,
                     cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    (call,) = recorded(log)
    assert call["argv"] == ["kernels", "push", "-p", str(out)]
    assert set(call["files"]) == {"kaggle_notebook.ipynb", "kernel-metadata.json"}
    meta = json.loads(call["files"]["kernel-metadata.json"])
    assert meta["id"] == "alice/arc25" and meta["code_file"] == "kaggle_notebook.ipynb"
    assert meta["kernel_type"] == "notebook" and meta["enable_gpu"] is True and meta["enable_internet"] is False
    assert meta["machine_shape"] == "NvidiaL4" and meta["docker_image_pinning_type"] == "original"
    assert meta["competition_sources"] == ["arc-prize-2026-arc-agi-2"]
    assert meta["dataset_sources"] == ["alice/arc25-code", "alice/arc25-wheels", "alice/barc-weights"]
    assert meta["model_sources"] == ["bob/barc-induction-8b/transformers/default/2"]
    notebook = json.loads(call["files"]["kaggle_notebook.ipynb"])
    assert all(not c.get("outputs") for c in notebook["cells"] if c["cell_type"] == "code")
    no_secret_anywhere(proc, out)


def test_submit_exact_command_line(kaggle_env):
    env, log = kaggle_env
    proc = run_arc25("submit", "--version", "7", "-m", "search and learn", "--set", "kaggle.username=alice", env=env)
    assert proc.returncode == 0, proc.stderr
    assert [c["argv"] for c in recorded(log)] == [
        ["competitions", "submit", "arc-prize-2025", "-k", "alice/arc25", "-v", "7", "-f", "submission.json", "-m",
         "search and learn"]]
    no_secret_anywhere(proc)


def test_placeholder_username_is_refused_before_the_cli_runs(kaggle_env):
    env, log = kaggle_env
    proc = run_arc25("submit", "--version", "1", env=env)
    assert proc.returncode == 2 and "kaggle.username is not set" in proc.stderr
    assert not log.exists()


def test_committed_kernel_metadata_is_the_kaggle_shape():
    meta = json.loads((REPO / "kernel-metadata.json").read_text())
    assert meta["code_file"] == "kaggle_notebook.ipynb" and meta["kernel_type"] == "notebook"
    assert meta["enable_gpu"] is True and meta["enable_internet"] is False and meta["machine_shape"] == "NvidiaL4"
    assert meta["docker_image_pinning_type"] in ("original", "latest")
    assert meta["competition_sources"] and len(meta["dataset_sources"]) == 2 and meta["model_sources"]
