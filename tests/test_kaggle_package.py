"""`arc25 package`: the code and wheels datasets staged with metadata and a manifest, and never a credential."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile

import pytest

from arc25.kaggle.dataset import credential_name
from kaggle_helpers import run_arc25, small_wheelhouse

SECRET = "s3cr3t-kaggle-key-value-0123456789"  # a fake KAGGLE_KEY for these tests
TOKEN = "KGAT" + "_0123456789abcdef0123456789abcdef"  # a fake access token, split as in the product
FOREIGN_KEY = "9f" * 16  # a legacy-format key (32 hex digits) that is not this machine's: found by its format


def clean_env(tmp_path, **extra):
    """No real credential of this machine may be read: HOME and the config dir point into tmp_path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    return env | {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "home" / ".config")} | extra


def manifest(folder):
    return json.loads((folder / "manifest.json").read_text())


def test_code_dataset_is_the_arc25_wheel_with_metadata_and_manifest(tmp_path):
    out = tmp_path / "code"
    proc = run_arc25("package", "--out", str(out), "--id", "alice/arc25-code", env=clean_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    files = sorted(p.name for p in out.iterdir())
    wheel = next(n for n in files if n.endswith(".whl"))
    assert files == sorted([wheel, "dataset-metadata.json", "manifest.json"]) and wheel.startswith("arc25-0.")
    meta = json.loads((out / "dataset-metadata.json").read_text())
    assert meta == {"title": "arc25-code", "id": "alice/arc25-code", "licenses": [{"name": "other"}]}
    (entry,) = manifest(out)["files"]
    assert entry["name"] == wheel and entry["size"] == (out / wheel).stat().st_size
    assert entry["sha256"] == hashlib.sha256((out / wheel).read_bytes()).hexdigest()
    assert manifest(out)["kind"] == "code" and "alice/arc25-code: 1 files" in proc.stdout
    with zipfile.ZipFile(out / wheel) as zf:  # the notebook imports these from the wheel before installing
        assert {"arc25/kaggle/notebook.py", "arc25/__main__.py", "arc25/dsl/common.py"} <= set(zf.namelist())


def test_wheels_dataset_leaves_arc25_to_the_code_dataset(tmp_path_factory, tmp_path):
    wheelhouse = small_wheelhouse(tmp_path_factory)
    out = tmp_path / "wheels"
    proc = run_arc25("package", "--out", str(out), "--wheels", str(wheelhouse), "--set", "kaggle.username=alice",
                     env=clean_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    names = {f["name"] for f in manifest(out)["files"]}
    expected = {p.name for p in wheelhouse.glob("*.whl") if not p.name.startswith("arc25-")}
    assert names == expected | {"requirements-kaggle.txt", "wheelhouse.json"}
    assert {p.name for p in out.iterdir()} == names | {"dataset-metadata.json", "manifest.json"}
    assert json.loads((out / "dataset-metadata.json").read_text())["id"] == "alice/arc25-wheels"
    # staging again over its own earlier output is fine
    assert run_arc25("package", "--out", str(out), "--wheels", str(wheelhouse), "--id", "alice/arc25-wheels",
                     env=clean_env(tmp_path)).returncode == 0


def _wheelhouse_copy(tmp_path_factory, tmp_path):
    copy = tmp_path / "wh"
    shutil.copytree(small_wheelhouse(tmp_path_factory), copy)
    return copy


@pytest.mark.parametrize("case", ["token_in_requirements", "key_value_in_wheel_info", "kaggle_json_in_wheel",
                                  "env_file_in_wheel", "foreign_key_json_in_wheel", "foreign_key_line_in_requirements"])
def test_credentials_are_refused_naming_the_file(tmp_path_factory, tmp_path, case):
    wheelhouse = _wheelhouse_copy(tmp_path_factory, tmp_path)
    culprit = wheelhouse / "requirements-kaggle.txt"
    if case == "token_in_requirements":
        culprit.write_text(culprit.read_text() + f"# {TOKEN}\n")
    elif case == "foreign_key_line_in_requirements":
        culprit.write_text(culprit.read_text() + f"# KAGGLE_KEY={FOREIGN_KEY}\n")
    elif case == "foreign_key_json_in_wheel":  # someone else's kaggle.json, under an innocent name
        culprit = next(wheelhouse.glob("tqdm-*.whl"))
        with zipfile.ZipFile(culprit, "a") as zf:
            zf.writestr("tqdm/settings.json", json.dumps({"username": "bob", "key": FOREIGN_KEY}, indent=1))
    elif case == "key_value_in_wheel_info":
        culprit = wheelhouse / "wheelhouse.json"
        culprit.write_text(culprit.read_text().replace('"folder"', f'"note": "{SECRET}", "folder"'))
    else:
        culprit = next(wheelhouse.glob("tqdm-*.whl"))
        member = ".kaggle/kaggle.json" if case == "kaggle_json_in_wheel" else "tqdm/.env"
        with zipfile.ZipFile(culprit, "a") as zf:
            zf.writestr(member, json.dumps({"username": "alice", "key": "x" * 32}))
    out = tmp_path / "staged"
    proc = run_arc25("package", "--out", str(out), "--wheels", str(wheelhouse), "--id", "alice/arc25-wheels",
                     env=clean_env(tmp_path, KAGGLE_KEY=SECRET, KAGGLE_USERNAME="alice"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert str(culprit) in line and ("credential" in line or "token or key" in line)
    assert all(s not in proc.stdout + proc.stderr for s in (SECRET, TOKEN, FOREIGN_KEY))
    assert not out.exists() or not any(out.iterdir())  # nothing staged


def test_credential_file_names():
    for name in ("kaggle.json", "home/.kaggle/anything", "access_token", "access_token.txt", "credentials.json",
                 ".env", ".env.local", ".netrc"):
        assert credential_name(name), name
    for name in ("arc25-0.1.0-py3-none-any.whl", "requirements-kaggle.txt", "kaggle/api/__init__.py"):
        assert not credential_name(name), name


@pytest.mark.parametrize("args,message", [
    (["--id", "alice"], "expected owner/slug"),
    (["--id", "alice/abc"], "6 to 50 lowercase"),
    (["--id", "alice/arc25-code", "--title", "arc"], "must be 6 to 50 characters"),
])
def test_bad_dataset_settings_are_one_line(tmp_path, args, message):
    proc = run_arc25("package", "--out", str(tmp_path / "out"), *args, env=clean_env(tmp_path))
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_refuses_a_folder_it_did_not_stage(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    proc = run_arc25("package", "--out", str(out), "--id", "alice/arc25-code", env=clean_env(tmp_path))
    assert proc.returncode == 2 and "not staged by `arc25 package`" in proc.stderr
    assert (out / "notes.txt").read_text() == "mine"


def test_key_formats_whoever_owns_the_key():
    from arc25.kaggle.dataset import KEY_FORMATS

    found = [json.dumps({"username": "bob", "key": FOREIGN_KEY}), json.dumps({"key": FOREIGN_KEY, "username": "b"}),
             json.dumps({"note": json.dumps({"username": "bob", "key": FOREIGN_KEY})}),  # escaped inside a string
             f"KAGGLE_KEY={FOREIGN_KEY}", f"export KAGGLE_KEY='{FOREIGN_KEY}'"]
    missed = [json.dumps({"key": FOREIGN_KEY}),  # a lone hex "key" is a checksum as often as not
              json.dumps({"username": "bob", "key": "not-hex-" * 4}), f"sha256: {FOREIGN_KEY}"]
    assert [bool(KEY_FORMATS.search(t.encode())) for t in found + missed] == [True] * len(found) + [False] * len(missed)
