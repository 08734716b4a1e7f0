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


# -- the model as a dataset (issue 21 item 6) ------------------------------------------------------------------


def _model_copy(model, root, name="Llama-3.1-ARC-Potpourri-Induction-8B"):
    """A downloaded model folder: a copy of the generated tiny model (weights hard-linked), as the hub lays it out."""
    folder = root / name
    folder.mkdir(parents=True)
    for f in model.iterdir():
        if f.is_file():
            os.link(f, folder / f.name)
    (folder / ".cache" / "huggingface").mkdir(parents=True)  # what a hub download leaves: not staged
    (folder / ".cache" / "huggingface" / ".gitignore").write_text("*\n")
    return folder


def test_a_model_folder_is_staged_as_the_run_checks_it(tiny_model_dir, tmp_path):
    from arc25.kaggle.notebook import is_model_dir
    from arc25.model_check import check_model_folder

    model = _model_copy(tiny_model_dir, tmp_path / "dl")
    out = tmp_path / "model-ds"
    proc = run_arc25("package", "--out", str(out), "--model", str(model), "--set", "kaggle.username=alice",
                     env=clean_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    files = {p.name for p in tiny_model_dir.iterdir() if p.is_file()}
    assert {f["name"] for f in manifest(out)["files"]} == files and manifest(out)["kind"] == "model"
    assert json.loads((out / "dataset-metadata.json").read_text())["id"] == \
        "alice/llama-3-1-arc-potpourri-induction-8b"
    size = sum((tiny_model_dir / f).stat().st_size for f in files)
    assert f"model dataset alice/llama-3-1-arc-potpourri-induction-8b: {len(files)} files" in proc.stdout
    assert sum(f["size"] for f in manifest(out)["files"]) == size
    assert ".cache" in proc.stderr and not (out / ".cache").exists()
    check_model_folder(out, "hf")  # the staged folder passes the run's checks, and the notebook finds it
    assert is_model_dir(out)


def package_in_process(monkeypatch, capsys, tmp_path, *args):
    """`arc25 package ARGS` in this process (the tiny model's libraries are loaded already), with no
    credential of this machine in reach: HOME and the config dir point into tmp_path."""
    from arc25.cli import main

    for key in [k for k in os.environ if k.startswith("KAGGLE_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    code = main(["package", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_broken_model_folder_is_refused_with_the_runs_reason(tiny_model_dir, tmp_path, monkeypatch, capsys):
    model = _model_copy(tiny_model_dir, tmp_path / "dl", "broken-model")
    weights = model / "model.safetensors"
    weights.unlink()
    with open(tiny_model_dir / "model.safetensors", "rb") as f:  # a download cut short in the tensors
        weights.write_bytes(f.read(1 << 16))
    code, _, err = package_in_process(monkeypatch, capsys, tmp_path, "--out", str(tmp_path / "out"),
                                      "--model", str(model), "--id", "alice/broken-model")
    assert code == 2 and f"{weights}: not a complete safetensors file (65536 bytes of " in err
    assert not (tmp_path / "out").exists()


def test_a_model_folder_without_a_chat_template_is_refused(tiny_model_dir, tmp_path, monkeypatch, capsys):
    model = _model_copy(tiny_model_dir, tmp_path / "dl", "no-template")
    config = model / "tokenizer_config.json"
    data = json.loads(config.read_text())
    data.pop("chat_template")
    config.unlink()  # a hard link to the fixture's file: replace it, never write through it
    config.write_text(json.dumps(data))
    code, _, err = package_in_process(monkeypatch, capsys, tmp_path, "--out", str(tmp_path / "out"),
                                      "--model", str(model), "--id", "alice/no-template")
    assert code == 2 and f"{model}: the tokenizer has no chat template" in err


def test_a_key_in_a_model_folder_is_refused(tiny_model_dir, tmp_path, monkeypatch, capsys):
    model = _model_copy(tiny_model_dir, tmp_path / "dl", "keyed-model")
    notes = model / "notes.json"
    notes.write_text(json.dumps({"username": "bob", "key": FOREIGN_KEY}))
    code, out, err = package_in_process(monkeypatch, capsys, tmp_path, "--out", str(tmp_path / "out"),
                                        "--model", str(model), "--id", "alice/keyed-model")
    assert code == 2 and f"{notes}: contains a Kaggle token or key" in err
    assert FOREIGN_KEY not in out + err and not (tmp_path / "out").exists()
