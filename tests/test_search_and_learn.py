"""The search-and-learn loop driven end to end on real ARC tasks.

The model is replaced by `ScriptedBackend` (a test double: it plays back known
programs), everything else is real: prompts, the sandboxed executor, relabeling,
attempt selection and result files.
"""

import json

import numpy as np
import pytest

from arc25.attempts import select_attempts
from arc25.backends.scripted import ScriptedBackend
from arc25.config import Config
from arc25.execution import TaskExecution
from arc25.grid import grid_to_json
from arc25.io import read_jsonl
from arc25.metrics import PredictionMetrics
from arc25.prediction import Prediction
from arc25.prompts import ANSWER_PREFIX, PromptSpec, render_grid
from arc25.search_and_learn import Phase, TaskSolver
from arc25.slots import ADAPTER_SLOT
from arc25.solve import solve_tasks
from arc25.tasks import load_tasks
from helpers import TRAIN_2025, TRAIN_2025_SOLUTIONS


def answer(body: str) -> str:
    return f"{ANSWER_PREFIX}```python\nfrom common import *\n\nimport numpy as np\n\ndef transform(input_grid):\n{body}\n```"


RIGHT = answer("    return np.rot90(input_grid, 2)")  # task 3c9b0459 is a half turn
RIGHT_LONGER = answer("    grid = np.flipud(input_grid)\n    grid = np.fliplr(grid)\n    return grid")
IDENTITY = answer("    return input_grid")
MIRROR = answer("    return np.fliplr(input_grid)")
HANG = answer("    while True:\n        pass")
CRASH = answer("    return input_grid[100]")
NO_CODE = "I think the answer is to rotate the grid."
SYNTAX = answer("    return (")


@pytest.fixture(scope="module")
def tasks():
    return load_tasks(TRAIN_2025, TRAIN_2025_SOLUTIONS)


def config(**search) -> Config:
    c = Config(seed=1)
    c.sampling.n_per_prompt = 4
    c.search.predictions_per_epoch = 8
    c.search.max_predictions = 64
    c.search.max_epochs = 4
    c.training.max_samples_per_epoch = 2
    for key, value in search.items():
        setattr(c.search, key, value)
    return c


def solver(task, completions, cfg, tmp_path=None, budget_s=60.0):
    backend = ScriptedBackend(completions)
    backend.create_adapter("a")
    return TaskSolver(task, backend, executor_ref[0], cfg, budget_s, tmp_path, adapter="a"), backend


executor_ref = []


@pytest.fixture(autouse=True)
def _executor_ref(executor):
    executor_ref[:] = [executor]


def test_wrong_programs_are_relabeled_deduplicated_and_ranked(tasks, tmp_path):
    task = tasks["3c9b0459"]
    completions = [IDENTITY, MIRROR, HANG, CRASH, NO_CODE, SYNTAX, IDENTITY, MIRROR]
    s, backend = solver(task, completions, config(max_epochs=3), tmp_path)
    result = s.run()

    # nothing is right: all three epochs ran, each search on a fresh set of prompts
    assert result.stop_reason == "max_epochs" and len(result.epochs) == 3
    assert result.predictions == 24 and not result.train_pass_at_n and not result.pass_at_n
    # the first search uses the base model, later ones the task's adapter, reset before first use
    assert [call[2] for call in backend.generate_calls] == [None, "a", "a"]
    assert backend.resets == ["a"]

    errors = [p.error for p in s.state.predictions[:8]]
    assert errors == [None, None, "timeout", "exception", "no_code", "syntax_error", None, None]

    # epoch 0: two distinct output sets (identity, mirror), duplicates dropped, best first
    adapter, samples = backend.train_calls[0]
    assert adapter == "a" and len(samples) == 2
    # a mirror under another augmentation is another transform of the original grids (a new
    # sample), the identity is the same one: no output set is ever trained on twice
    trained = [smp for _, call in backend.train_calls for smp in call]
    assert len(trained) == len(s.relabeler.trained) == len({str(smp.messages) for smp in trained})
    assert sum(smp.answer == IDENTITY for smp in trained) == 1
    first = s.state.predictions[0]
    epoch0 = [p for p in s.state.predictions[:8] if p.valid_outputs]
    distinct = {}
    for p in epoch0:
        distinct.setdefault(p.outputs_key(), p)  # identity twice: one output set
    assert len(epoch0) == 4 and len(distinct) == 3
    ranked = sorted(distinct.values(), key=lambda p: (-p.correct_grids, -p.pixel_similarity, p.index))
    assert ranked[0].correct_grids >= ranked[1].correct_grids >= ranked[2].correct_grids
    assert [smp.answer for smp in samples] == [p.completion for p in ranked[:2]]
    # the relabeled prompt shows the program's own outputs, under the augmentation it was sampled with
    identity_sample = next(smp for smp in trained if smp.answer == IDENTITY)  # from prediction 0, the earliest
    shown = first.prompt.augmentation.apply(task.train[0].input)
    assert f"Input:\n{render_grid(shown)}\n\nOutput:\n{render_grid(shown)}\n\n\n" in identity_sample.messages[1]["content"]
    assert [e.train_samples for e in result.epochs[:2]] == [len(call) for _, call in backend.train_calls]

    # files: the result (atomic JSON) and every prediction
    on_disk = json.loads((tmp_path / task.task_id / "result.json").read_text())
    assert on_disk["status"] == "done" and on_disk["attempts"] == result.attempts
    rows = list(read_jsonl(tmp_path / task.task_id / "predictions.jsonl.gz"))
    assert len(rows) == 24 and rows[2]["kind"] == "timeout" and "0.5 s" in rows[2]["error_message"]
    assert PromptSpec.from_dict(rows[0]["prompt"]) == first.prompt
    assert set(result.timings) == {"generate", "execute", "relabel", "train", "reset", "other"}


def test_copies_of_one_program_are_one_vote(tasks):
    """After training the model resamples what it learned: 8 copies of one program do not make 8 votes."""
    task = tasks["3c9b0459"]
    s, backend = solver(task, [RIGHT] * 8, config(stop_agreeing_programs=2, stop_distinct_outputs=2, max_epochs=2))
    result = s.run()
    assert result.stop_reason == "max_epochs" and not result.solved and result.pass_at_n == 1.0


def test_stops_when_programs_agree_and_selects_the_right_attempt(tasks):
    task = tasks["3c9b0459"]
    cfg = config(stop_agreeing_programs=2, stop_distinct_outputs=2)  # RIGHT and RIGHT_LONGER: two programs agree
    s, backend = solver(task, [IDENTITY, RIGHT, RIGHT_LONGER, MIRROR, RIGHT, IDENTITY, NO_CODE, RIGHT], cfg)
    result = s.run()
    assert result.stop_reason == "solved" and len(result.epochs) == 1 and backend.train_calls == []
    assert result.pass_at_n and result.train_pass_at_n
    (attempt_1, attempt_2), = result.attempts
    assert attempt_1 == grid_to_json(task.test_outputs[0])
    assert attempt_2 != attempt_1


def test_two_distinct_train_perfect_outputs_stop(tasks):
    task = tasks["3c9b0459"]
    # right on every train pair, but only the test input has two colours of equal count
    # (invariant under augmentation), where it changes one cell: a second, distinct answer
    odd = answer("    out = np.rot90(input_grid, 2).copy()\n"
                 "    counts = np.unique(input_grid, return_counts=True)[1]\n"
                 "    if len(counts) != len(set(counts)):\n"
                 "        out[0, 0] = (out[0, 0] + 1) % 10\n"
                 "    return out")
    s, backend = solver(task, [RIGHT, odd], config(stop_agreeing_programs=99, stop_distinct_outputs=2))
    result = s.run()
    assert result.stop_reason == "solved" and len(result.epochs) == 1
    (a1, a2), = result.attempts
    assert grid_to_json(task.test_outputs[0]) in (a1, a2) and a1 != a2


def test_a_program_right_on_train_but_failing_on_test_is_no_answer(tasks):
    task = tasks["3c9b0459"]
    fails_on_test = answer("    counts = np.unique(input_grid, return_counts=True)[1]\n"
                           "    assert len(counts) == len(set(counts))\n"
                           "    return np.rot90(input_grid, 2)")
    s, _ = solver(task, [fails_on_test], config(stop_agreeing_programs=1, max_epochs=2))
    result = s.run()
    assert s.state.predictions[0].train_pass and not s.state.predictions[0].valid_outputs
    assert result.stop_reason == "max_epochs" and not result.solved
    (a1, a2), = result.attempts  # nothing ran on the test input: the fallbacks
    assert a1 == grid_to_json(task.test_inputs[0]) and a2 == [[0]]


def test_pure_sampling_never_trains(tasks):
    task = tasks["3c9b0459"]
    s, backend = solver(task, [IDENTITY, MIRROR], config(learn=False, max_epochs=3))
    result = s.run()
    assert len(result.epochs) == 3 and backend.train_calls == [] and backend.resets == []
    assert all(call[2] is None for call in backend.generate_calls)


def test_the_adapter_serves_only_after_it_was_trained(tasks):
    # epoch 0 writes nothing that runs: no sample, so epoch 1 samples the base model again (an
    # untrained adapter equals it, and serving it costs vLLM's LoRA kernels); epoch 1's programs run
    task = tasks["3c9b0459"]
    s, backend = solver(task, [CRASH] * 8 + [IDENTITY, MIRROR] * 4, config(max_epochs=3))
    result = s.run()
    assert [e.train_samples for e in result.epochs] == [0, 2, 0]
    assert [call[2] for call in backend.generate_calls] == [None, None, "a"]
    assert backend.resets == ["a"] and len(backend.train_calls) == 1


def test_nothing_to_learn_never_resets_nor_serves_the_adapter(tasks):
    s, backend = solver(tasks["3c9b0459"], [CRASH, NO_CODE], config(max_epochs=3))
    result = s.run()
    assert len(result.epochs) == 3 and backend.resets == [] and backend.train_calls == []
    assert all(call[2] is None for call in backend.generate_calls) and result.timings["reset"] == 0


def test_budget_stops_before_an_epoch_that_cannot_finish(tasks):
    task = tasks["3c9b0459"]
    t = [0.0]

    def clock():
        t[0] += 1.0  # every look at the clock costs a second
        return t[0]

    backend = ScriptedBackend([IDENTITY])
    backend.create_adapter("a")
    s = TaskSolver(task, backend, executor_ref[0], config(max_epochs=50), 10.0, adapter="a", clock=clock)
    result = s.run()
    assert result.stop_reason == "budget" and len(result.epochs) < 50


def test_the_budget_holds_inside_an_epoch(tasks, tmp_path):
    """One search phase that would take 32 s alone is cut at the 3 s budget; what came before it is kept.

    The scripted engine decodes 100 characters a second, like a slow model: 8 completions of
    ~400 characters. The deadline is in the request, so no backend can run past it.
    """
    task = tasks["3c9b0459"]
    backend = ScriptedBackend([RIGHT_LONGER], tokens_per_s=100.0)
    backend.create_adapter("a")
    s = TaskSolver(task, backend, executor_ref[0], config(max_epochs=8), 3.0, tmp_path, adapter="a")
    result = s.run()
    assert result.stop_reason == "budget"
    # nothing ran past the budget, said without a clock: the engine decodes 100 characters a second, one
    # completion after another, so all it decoded fits in the 3 s budget (32 s of text was asked for)
    decoded = sum(p.completion_tokens for p in s.state.predictions)
    assert 0 < decoded <= 3.0 * 100.0, decoded
    assert 0 < result.predictions < 8  # the completions finished in time were executed, scored and saved
    assert result.epochs[0].truncated >= 1  # the one in progress was cut: counted, never a wrong program
    cut = [p for p in s.state.predictions if p.finish_reason == "deadline"]
    assert cut and all(p.code is None and p.truncated for p in cut)
    on_disk = json.loads((tmp_path / task.task_id / "result.json").read_text())
    assert on_disk["predictions"] == result.predictions and on_disk["status"] == "done"


def test_same_seed_same_predictions(tasks):
    task = tasks["3c9b0459"]
    runs = []
    for _ in range(2):
        s, _ = solver(task, [IDENTITY, MIRROR, RIGHT_LONGER], config(max_epochs=2, stop_agreeing_programs=99))
        s.run()
        runs.append([(p.prompt, p.completion, p.outputs_key()) for p in s.state.predictions])
    assert runs[0] == runs[1]


def test_solve_tasks_reuses_one_adapter_slot(tasks, tmp_path):
    backend = ScriptedBackend([IDENTITY, MIRROR, RIGHT])
    chosen = [tasks["3c9b0459"], tasks["6150a2bd"]]
    results = solve_tasks(chosen, backend, executor_ref[0], config(max_epochs=2, stop_agreeing_programs=99), 60.0, tmp_path)
    assert [r.task_id for r in results] == ["3c9b0459", "6150a2bd"]
    assert list(backend.adapters) == [ADAPTER_SLOT] and backend.resets == [ADAPTER_SLOT, ADAPTER_SLOT]
    assert all((tmp_path / t.task_id / "result.json").exists() for t in chosen)


# -- attempt selection, on hand-made predictions -------------------------------------------
def pred(index, test_output, correct, code="x", task_id="t"):
    test = [None if test_output is None else np.array(test_output)]
    ex = TaskExecution([np.zeros((1, 1), int)], test, [None], [None])
    valid = test_output is not None
    metrics = PredictionMetrics(task_id, True, valid, correct, correct, correct == 1.0, None)
    return Prediction(task_id, 0, index, PromptSpec(), "", code, ex, metrics)


def test_attempts_rank_by_level_then_votes_then_shorter_code(tasks):
    task = tasks["3c9b0459"]
    preds = [pred(0, [[1]], 1.0, "long code"), pred(1, [[2]], 1.0, "short"), pred(2, [[3]], 1.0),
             pred(3, [[3]], 1.0), pred(4, [[4]], 0.5), pred(5, [[4]], 0.5), pred(6, [[4]], 0.5)]
    (a1, a2), = select_attempts(task, preds)
    assert a1.tolist() == [[3]]  # two votes at the top level
    assert a2.tolist() == [[2]]  # one vote each: the shorter program wins
    (a1, a2), = select_attempts(task, preds[:1] + preds[4:])
    assert a1.tolist() == [[1]] and a2.tolist() == [[4]]  # second attempt from the next level


def test_attempts_fall_back_when_nothing_ran(tasks):
    task = tasks["3c9b0459"]
    (a1, a2), = select_attempts(task, [])
    assert np.array_equal(a1, task.test_inputs[0]) and a2.tolist() == [[0]]
    broken = pred(0, None, 0.0)
    (a1, a2), = select_attempts(task, [broken, pred(1, [[5]], 0.0)])
    assert a1.tolist() == [[5]] and np.array_equal(a2, task.test_inputs[0])


# -- the real tiny model on CPU --------------------------------------------------------------
@pytest.mark.slow
def test_solve_cli_with_tiny_model_on_two_real_tasks(tiny_model_dir, tmp_path):
    from helpers import run_cli

    out = tmp_path / "solve"
    result = run_cli("solve", "--challenges", str(TRAIN_2025), "--task-ids", "3c9b0459", "6150a2bd",
                     "--model", str(tiny_model_dir), "--out", str(out), "--budget-s", "60",
                     "--set", "sampling.max_tokens=24", "--set", "sampling.n_per_prompt=2",
                     "--set", "search.predictions_per_epoch=4", "--set", "search.max_epochs=2",
                     "--set", "execution.workers=1")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0].split()[:4] == ["task", "stop", "epochs", "preds"]
    for task_id in ("3c9b0459", "6150a2bd"):
        saved = json.loads((out / task_id / "result.json").read_text())
        assert saved["status"] == "done" and saved["predictions"] == 8 and len(saved["epochs"]) == 2
        assert saved["timings"]["generate"] > 0 and len(saved["attempts"]) == 1
        rows = list(read_jsonl(out / task_id / "predictions.jsonl.gz"))
        assert len(rows) == 8 and all(r["completion"] is not None for r in rows)


@pytest.mark.slow
def test_same_seed_same_predictions_with_the_tiny_model(hf_backend, tasks, executor):
    cfg = config(max_epochs=1)
    cfg.sampling.max_tokens = 16
    runs = []
    for _ in range(2):
        s = TaskSolver(tasks["3c9b0459"], hf_backend, executor, cfg, 60.0)
        s.run()
        runs.append([(p.prompt, p.completion) for p in s.state.predictions])
    assert runs[0] == runs[1] and len({c for _, c in runs[0]}) > 1


def test_a_redone_task_resumes_from_its_earlier_predictions(tasks, tmp_path):
    task = tasks["3c9b0459"]
    cfg = config(stop_agreeing_programs=99, stop_distinct_outputs=99, max_epochs=4)
    first, _ = solver(task, [RIGHT, IDENTITY, MIRROR, HANG], cfg, tmp_path)
    first.step()  # epoch 0 searched and saved; then the worker "crashes"
    assert json.loads((tmp_path / task.task_id / "result.json").read_text())["predictions"] == 8

    # the redo samples only wrong programs, yet keeps the right answer found before the crash
    again, backend = solver(task, [IDENTITY, MIRROR], cfg, tmp_path)
    assert len(again.state.predictions) == 8 and again.state.epoch == 1
    result = again.run()
    assert result.predictions == 32 and [e.epoch for e in result.epochs] == [0, 1, 2, 3]
    assert result.attempts[0][0] == grid_to_json(task.test_outputs[0]) and result.pass_at_n
    # the new adapter learns from the earlier programs too (the right one ranks first)
    assert backend.train_calls[0][1][0].answer == RIGHT
    rows = list(read_jsonl(tmp_path / task.task_id / "predictions.jsonl.gz"))
    assert [r["index"] for r in rows] == list(range(32))


def test_unreadable_earlier_predictions_start_the_task_afresh(tasks, tmp_path, caplog):
    task = tasks["3c9b0459"]
    folder = tmp_path / task.task_id
    folder.mkdir()
    (folder / "predictions.jsonl.gz").write_bytes(b"not gzip at all")
    s, _ = solver(task, [IDENTITY], config(max_epochs=1), tmp_path)
    assert s.state.predictions == [] and "truncated or corrupt after 0 rows" in caplog.text
    assert s.run().predictions == 8


def test_the_solver_owns_its_phase_a_driver_asks_and_tells(tasks, tmp_path):
    """Issue 20 item 3: the phase is the solver's (`Phase`); a driver tells it `fail(exc)` or `stop(reason)`
    and reads `phase`, `done` and `error`. The first ending stands; a step out of its phase is refused with
    the task named (not an `assert`, which `python -O` drops)."""
    failing, _ = solver(tasks["3c9b0459"], [IDENTITY], config(), tmp_path / "failing")
    assert failing.phase == Phase.SEARCH and not failing.done and failing.error is None
    with pytest.raises(RuntimeError, match="3c9b0459: learn step in phase search"):
        failing.learn()
    boom = OSError("disk gone")
    failing.fail(boom)
    assert failing.phase == Phase.FAILED and failing.done and failing.error is boom
    failing.stop("deadline")  # too late: it failed
    assert failing.phase == Phase.FAILED and failing.state.stop_reason is None
    assert failing.out_dir.is_dir() and not (failing.out_dir / "result.json").exists()  # fail writes nothing
    stopped, _ = solver(tasks["3c9b0459"], [IDENTITY], config(), tmp_path / "stopped")
    stopped.step()  # one search: the epoch's result is written
    stopped.stop("deadline")
    stopped.fail(OSError("late"))  # too late: it was stopped, its result stands
    assert stopped.phase == Phase.DONE and stopped.error is None and stopped.result().status == "interrupted"
    row = json.loads(json.dumps({"phase": stopped.phase}))  # the workers' status files show it as text
    assert row == {"phase": "done"}
