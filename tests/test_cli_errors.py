"""Every command's bad paths: one line on stderr naming the path (or task) and the reason, exit 2, no traceback.

The table runs `arc25.cli.main` in this process (fast, the same code as the console script); the rows
that need a file the process cannot read run the real `arc25` in a subprocess, with the capabilities that
let root read anything dropped when the tests run as root. A few rows also go through the real CLI as
a subprocess, to check what a user sees end to end.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from arc25.cli import main
from arc25.config import Config
from arc25.errors import UserError
from arc25.model_check import check_model
from helpers import REPO, TRAIN_2025, TRAIN_2025_SOLUTIONS, run_cli

TASK_IDS = ["3c9b0459", "00576224"]


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> dict[str, Path]:
    """Good inputs, and the bad ones: missing, a folder, empty, a regular file where a folder is needed."""
    d = tmp_path_factory.mktemp("cli-errors")
    challenges, solutions = json.loads(TRAIN_2025.read_text()), json.loads(TRAIN_2025_SOLUTIONS.read_text())
    p = {name: d / name for name in ("ch.json", "sol.json", "sub.json", "comp.json", "preds.jsonl", "empty.json",
                                     "empty.jsonl", "unknown.jsonl", "missing", "missing.json", "adir", "afile")}
    p["ch.json"].write_text(json.dumps({t: challenges[t] for t in TASK_IDS}))
    p["sol.json"].write_text(json.dumps({t: solutions[t] for t in TASK_IDS}))
    attempt = {"attempt_1": [[0]], "attempt_2": [[0]]}
    p["sub.json"].write_text(json.dumps({t: [attempt] * len(solutions[t]) for t in TASK_IDS}))
    p["comp.json"].write_text(json.dumps({"completions": ["no code"]}))
    p["preds.jsonl"].write_text(json.dumps({"task_id": TASK_IDS[0], "code": "def transform(g):\n    return g"}) + "\n")
    p["unknown.jsonl"].write_text(json.dumps({"task_id": "nosuch", "code": "x"}) + "\n")
    p["empty.json"].write_text("{}")
    p["empty.jsonl"].write_text("")
    p["adir"].mkdir()
    p["afile"].write_text("a regular file")
    return p


SCRIPTED = ["--set", "model.backend=scripted"]

# (id, argv with {name} for a path of the fixture, the expected error after "arc25 CMD: error: " as a regex
# with {name} for the escaped path). Covers, per command: missing file, folder instead of file, empty
# challenges, a task id not in the file, unwritable output (a path under a regular file), bad model paths.
ROWS = [
    ("tasks-missing", "tasks {missing.json}", r"{missing.json}: cannot read file \(No such file or directory\)"),
    ("tasks-folder", "tasks {adir}", r"{adir}: cannot read file \(Is a directory\)"),
    ("tasks-empty", "tasks {empty.json}", r"{empty.json}: no tasks in file"),
    ("tasks-solutions-missing", "tasks {ch.json} --solutions {missing.json}",
     r"{missing.json}: cannot read file \(No such file or directory\)"),
    ("prompt-missing", "prompt {missing.json} 3c9b0459",
     r"{missing.json}: cannot read file \(No such file or directory\)"),
    ("prompt-task", "prompt {ch.json} nosuch", r"{ch.json}: no task 'nosuch'"),
    ("prompt-empty", "prompt {empty.json} 3c9b0459", r"{empty.json}: no tasks in file"),
    ("prompt-template-missing", "prompt {ch.json} 3c9b0459 --chat-template {missing}",
     r"{missing}: cannot load tokenizer \(no such folder\)"),
    ("prompt-template-file", "prompt {ch.json} 3c9b0459 --chat-template {afile}",
     r"{afile}: cannot load tokenizer \(not a folder\)"),
    ("evaluate-predictions-missing",
     "evaluate --challenges {ch.json} --predictions {missing.json} --out {adir}/r.jsonl",
     r"{missing.json}: cannot read predictions \(.*No such file or directory.*\)"),
    ("evaluate-predictions-folder", "evaluate --challenges {ch.json} --predictions {adir} --out {adir}/r.jsonl",
     r"{adir}: cannot read predictions \(.*Is a directory.*\)"),
    ("evaluate-predictions-empty", "evaluate --challenges {ch.json} --predictions {empty.jsonl} --out {adir}/r.jsonl",
     r"{empty.jsonl}: no predictions in file"),
    ("evaluate-task", "evaluate --challenges {ch.json} --predictions {unknown.jsonl} --out {adir}/r.jsonl",
     r"{unknown.jsonl}: line 1: unknown task id 'nosuch' \(not in the challenges file\)"),
    ("evaluate-challenges-empty", "evaluate --challenges {empty.json} --predictions {preds.jsonl} --out {adir}/r.jsonl",
     r"{empty.json}: no tasks in file"),
    ("evaluate-out-under-file", "evaluate --challenges {ch.json} --predictions {preds.jsonl} --out {afile}/r.jsonl",
     r"{afile}/r.jsonl: cannot write the results: {afile} is a file, not a folder"),
    ("evaluate-out-folder", "evaluate --challenges {ch.json} --predictions {preds.jsonl} --out {adir}",
     r"{adir}: cannot write the results: it is a folder"),
    ("solve-missing", "solve --challenges {missing.json} --model {comp.json} --out {adir}/s",
     r"{missing.json}: cannot read file \(No such file or directory\)"),
    ("solve-empty", "solve --challenges {empty.json} --model {comp.json} --out {adir}/s",
     r"{empty.json}: no tasks in file"),
    ("solve-task", "solve --challenges {ch.json} --task-ids nosuch --model {comp.json} --out {adir}/s",
     r"{ch.json}: no task 'nosuch'"),
    ("solve-model-missing", "solve --challenges {ch.json} --model {missing.json} --out {adir}/s",
     r"{missing.json}: scripted-completions file not found"),
    ("solve-model-folder", "solve --challenges {ch.json} --model {adir} --out {adir}/s",
     r"{adir}: not a file \(model.backend=scripted expects a JSON file of completions\)"),
    ("solve-out-under-file", "solve --challenges {ch.json} --model {comp.json} --out {afile}/s",
     r"{afile}/s: cannot write the output folder: {afile} is a file, not a folder"),
    ("run-missing", "run --challenges {missing.json} --model {comp.json} --out {adir}/r --workers 1",
     r"{missing.json}: cannot read file \(No such file or directory\)"),
    ("run-folder", "run --challenges {adir} --model {comp.json} --out {adir}/r --workers 1",
     r"{adir}: cannot read file \(Is a directory\)"),
    ("run-empty", "run --challenges {empty.json} --model {comp.json} --out {adir}/r --workers 1",
     r"{empty.json}: no tasks in file"),
    ("run-solutions-missing",
     "run --challenges {ch.json} --solutions {missing.json} --model {comp.json} --out {adir}/r --workers 1",
     r"{missing.json}: cannot read file \(No such file or directory\)"),
    ("run-model-missing", "run --challenges {ch.json} --model {missing.json} --out {adir}/r --workers 1",
     r"{missing.json}: scripted-completions file not found"),
    ("run-model-not-json", "run --challenges {ch.json} --model {ch.json} --out {adir}/r --workers 1",
     r"{ch.json}: expected a JSON object with a non-empty list \"completions\""),
    ("run-hf-model-missing", "run --challenges {ch.json} --model {missing} --out {adir}/r --workers 1 "
     "--set model.backend=hf", r"{missing}: no such model folder"),
    ("run-hf-model-file",
     "run --challenges {ch.json} --model {afile} --out {adir}/r --workers 1 --set model.backend=hf",
     r"{afile}: not a folder \(expected a model folder\)"),
    ("run-hf-model-empty-folder", "run --challenges {ch.json} --model {adir} --out {adir}/r --workers 1 "
     "--set model.backend=hf", r"{adir}: no config.json \(not a Hugging Face model folder\)"),
    ("run-out-under-file", "run --challenges {ch.json} --model {comp.json} --out {afile}/r --workers 1",
     r"{afile}/r: cannot write the run folder: {afile} is a file, not a folder"),
    ("run-out-is-file", "run --challenges {ch.json} --model {comp.json} --out {afile} --workers 1",
     r"{afile}: cannot write the run folder: it is a file, not a folder"),
    ("merge-run-is-file", "merge --run {afile} --challenges {ch.json}",
     r"{afile}: not a folder \(--run expects a run folder\)"),
    ("merge-no-run-json", "merge --run {missing}",
     r"{missing}/run.json: cannot tell the run's challenges; pass --challenges"),
    ("merge-challenges-missing", "merge --run {missing} --challenges {missing.json}",
     r"{missing.json}: cannot read file \(No such file or directory\)"),
    ("merge-challenges-empty", "merge --run {missing} --challenges {empty.json}",
     r"{empty.json}: no tasks in file"),
    ("merge-out-under-file", "merge --run {missing} --challenges {ch.json} --out {afile}/s.json",
     r"{afile}/s.json: cannot write the submission: {afile} is a file, not a folder"),
    ("validate-missing", "validate --submission {missing.json} --challenges {ch.json}",
     r"{missing.json}: cannot read submission \(No such file or directory\)"),
    ("validate-folder", "validate --submission {adir} --challenges {ch.json}",
     r"{adir}: cannot read submission \(Is a directory\)"),
    ("validate-challenges-empty", "validate --submission {sub.json} --challenges {empty.json}",
     r"{empty.json}: no tasks in file"),
    ("score-missing", "score --submission {missing.json} --solutions {sol.json}",
     r"{missing.json}: cannot read submission \(No such file or directory\)"),
    ("score-empty", "score --submission {empty.json} --solutions {sol.json}",
     r"{empty.json}: expected a non-empty object mapping task ids to attempts"),
    ("score-solutions-folder", "score --submission {sub.json} --solutions {adir}",
     r"{adir}: cannot read solutions file \(Is a directory\)"),
    ("score-solutions-empty", "score --submission {sub.json} --solutions {empty.json}",
     r"{empty.json}: expected a non-empty object mapping task ids to lists of grids"),
    ("dry-run-missing", "dry-run --challenges {missing.json} --out {adir}/d",
     r"{missing.json}: cannot read file \(No such file or directory\)"),
    ("dry-run-empty", "dry-run --challenges {empty.json} --out {adir}/d", r"{empty.json}: no tasks in file"),
    ("dry-run-out-under-file", "dry-run --challenges {ch.json} --out {afile}/d",
     r"{afile}/d: cannot write the run folder: {afile} is a file, not a folder"),
    ("dry-run-cache-under-file", "dry-run --challenges {ch.json} --out {adir}/d --cache-dir {afile}/c",
     r"{afile}/c: cannot write the model cache: {afile} is a file, not a folder"),
    ("dry-run-model-missing", "dry-run --challenges {ch.json} --out {adir}/d --model {missing}",
     r"{missing}: no such model folder"),
    ("config-missing", "config --config {missing.json}",
     r"{missing.json}: cannot read config file \(No such file or directory\)"),
    ("config-folder", "config --config {adir}", r"{adir}: cannot read config file \(Is a directory\)"),
    ("make-tiny-model-under-file", "make-tiny-model {afile}/m",
     r"{afile}/m: cannot write the model folder: {afile} is a file, "
     "not a folder"),
]

FIELD = re.compile(r"\{([\w.]+)\}")


def fill(text: str, paths: dict[str, Path], escape: bool = False) -> str:
    return FIELD.sub(lambda m: re.escape(str(paths[m.group(1)])) if escape else str(paths[m.group(1)]), text)


def argv(row_args: str, paths: dict[str, Path]) -> list[str]:
    args = fill(row_args, paths).split()
    if args[0] in ("solve", "run") and "model.backend=hf" not in args:
        args += SCRIPTED
    return args


@pytest.mark.parametrize("args, expected", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_bad_paths_give_one_line_and_exit_2(paths, capsys, args, expected):
    args = argv(args, paths)
    code = main(["-q", *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert re.fullmatch(f"arc25 {args[0]}: error: {fill(expected, paths, escape=True)}", lines[0]), lines[0]
    assert not (paths["adir"] / "r" / "workers").exists()  # nothing started


@pytest.mark.parametrize("row", ["run-out-under-file", "run-hf-model-empty-folder", "evaluate-task"])
def test_bad_paths_through_the_real_cli(paths, row):
    _, args, expected = next(r for r in ROWS if r[0] == row)
    done = run_cli("-q", *argv(args, paths), timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    line = done.stderr.strip()
    assert re.fullmatch(f"arc25 \\S+: error: {fill(expected, paths, escape=True)}", line), line


# -- unreadable files ---------------------------------------------------------------------------------------

DROP_READ_ANYTHING = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
                      "--bounding-set=-dac_override,-dac_read_search"]


def unreadable_runner(probe: Path) -> list[str]:
    """A command prefix under which `probe` (mode 000) cannot be read; skips when there is none here."""
    if os.geteuid() != 0:
        return []
    # root reads anything through CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH: drop them for the child
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: a mode-000 file stays readable, so no unreadable file here")
    check = subprocess.run([*DROP_READ_ANYTHING, "cat", str(probe)], capture_output=True)
    if check.returncode == 0:
        pytest.skip("running as root and setpriv could not drop the read-anything capabilities here")
    return DROP_READ_ANYTHING


UNREADABLE_ROWS = [
    ("tasks", "tasks {locked}", r"{locked}: cannot read file \(Permission denied\)"),
    ("run-challenges", "run --challenges {locked} --model {comp.json} --out {adir}/u --workers 1",
     r"{locked}: cannot read file \(Permission denied\)"),
    ("run-model", "run --challenges {ch.json} --model {locked} --out {adir}/u --workers 1",
     r"{locked}: cannot read the scripted-completions file \(Permission denied\)"),
    ("validate", "validate --submission {locked} --challenges {ch.json}",
     r"{locked}: cannot read submission \(Permission denied\)"),
    ("config", "config --config {locked}", r"{locked}: cannot read config file \(Permission denied\)"),
]


@pytest.mark.parametrize("args, expected", [r[1:] for r in UNREADABLE_ROWS], ids=[r[0] for r in UNREADABLE_ROWS])
def test_unreadable_files(paths, tmp_path, args, expected):
    locked = tmp_path / "locked.json"
    locked.write_text(paths["comp.json"].read_text())
    locked.chmod(0)
    prefix = unreadable_runner(locked)
    all_paths = {**paths, "locked": locked}
    done = subprocess.run([*prefix, sys.executable, "-m", "arc25", "-q", *argv(args, all_paths)], capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    line = done.stderr.strip()
    assert re.fullmatch(f"arc25 \\S+: error: {fill(expected, all_paths, escape=True)}", line), line


# -- the model folder check, before any worker starts ---------------------------------------------------------


def broken_copies(model: Path, root: Path) -> dict[str, tuple[Path, str]]:
    """Copies of a good model folder, each broken one way (weights linked, not copied), and the expected error."""
    cases: dict[str, tuple[Path, str]] = {}

    def copy(name: str, skip: tuple[str, ...] = ()) -> Path:
        folder = root / name
        folder.mkdir()
        for f in model.iterdir():
            if f.name in skip:
                continue
            if f.suffix == ".safetensors":
                (folder / f.name).symlink_to(f)
            else:
                shutil.copy(f, folder / f.name)
        return folder

    m = copy("no-config", skip=("config.json",))
    cases["no config.json"] = (m, f"{m}: no config.json (not a Hugging Face model folder)")
    m = copy("bad-config")
    (m / "config.json").write_text("{")
    cases["config.json not JSON"] = (m, f"{m / 'config.json'}: the model config is not valid JSON")
    m = copy("no-tokenizer", skip=("tokenizer.json", "tokenizer_config.json"))
    cases["no tokenizer files"] = (m, f"{m}: no tokenizer files (tokenizer.json or tokenizer.model)")
    m = copy("no-weights", skip=("model.safetensors",))
    cases["no weights"] = (m, f"{m}: no weights (*.safetensors or pytorch_model*.bin)")
    m = copy("lfs-pointer", skip=("model.safetensors",))
    (m / "model.safetensors").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 16\n")
    cases["Git LFS pointer"] = (m, f"{m / 'model.safetensors'}: not a complete safetensors file")
    m = copy("missing-shard")
    (m / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "model.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    cases["a shard missing"] = (m, f"{m / 'model-00002-of-00002.safetensors'}: weights file missing "
                                   "(listed in model.safetensors.index.json)")
    m = copy("bad-tokenizer")
    (m / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "BPE"}}')
    cases["tokenizer does not load"] = (m, f"{m}: the tokenizer does not load (")
    return cases


def test_a_broken_model_folder_is_named_with_its_reason(tiny_model_dir, tmp_path):
    config = Config()
    config.model.backend, config.model.path = "hf", str(tiny_model_dir)
    check_model(config)  # the good one passes, its tokenizer loaded
    failures = {}
    for case, (folder, expected) in broken_copies(tiny_model_dir, tmp_path).items():
        config.model.path = str(folder)
        with pytest.raises(UserError) as caught:
            check_model(config)
        message = str(caught.value)
        if not message.startswith(expected) or "\n" in message:
            failures[case] = message
    assert failures == {}


def test_a_broken_model_folder_stops_the_run_before_any_worker(tiny_model_dir, tmp_path, paths):
    folder = broken_copies(tiny_model_dir, tmp_path)["no weights"][0]
    out = tmp_path / "run"
    done = run_cli("-q", "run", "--challenges", str(paths["ch.json"]), "--model", str(folder), "--out", str(out),
                   "--workers", "2", "--set", "model.backend=hf", timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip() == f"arc25 run: error: {folder}: no weights (*.safetensors or pytorch_model*.bin)"
    assert not (out / "workers").exists()
