import numpy as np
import pytest

from arc25.augment import Augmentation
from arc25.prompts import (ANSWER_PREFIX, SYSTEM_MESSAGE, PromptSpec, build_messages, extract_code, format_answer,
                           render_grid)
from arc25.tasks import Example, Task, load_tasks
from helpers import EVAL_2025, run_cli

# The spec's rendered example, byte for byte.
GOLDEN_USER = 'Given input-output grid pairs as reference examples, carefully observe the patterns to predict the output grid for new test input. Each pair follows the same transformation rule. Grids are 2D arrays represented as strings, with cells (colors) separated by spaces and rows by newlines.\nHere are the input and output grids for the reference examples:\nExample 1\nInput:\nBlack Blue\nRed Black\n\nOutput:\nBlue\n\n\nExample 2\nInput:\nGreen Green Green\n\nOutput:\nPurple\nBrown\n\n\nHere is the input grid for the test example:\nInput:\nGray Black\nBlack Gray\n\nWrite a Python function `transform` that can convert any given input grid to its corresponding output grid based on the pattern observed in the reference examples.'
GOLDEN_SYSTEM = "You are a world-class puzzle solver with exceptional pattern recognition skills and expertise in Python programming. Your task is to analyze puzzles and provide Python solutions."

SPEC_TASK = Task("spec", [Example(np.array([[0, 1], [2, 0]]), np.array([[1]])),
                          Example(np.array([[3, 3, 3]]), np.array([[8], [9]]))], [np.array([[5, 0], [0, 5]])])


def test_golden_prompt_from_spec():
    messages = build_messages(SPEC_TASK)
    assert messages == [{"role": "system", "content": GOLDEN_SYSTEM}, {"role": "user", "content": GOLDEN_USER}]
    assert SYSTEM_MESSAGE == GOLDEN_SYSTEM


def test_rows_are_axis_zero():
    assert render_grid(np.array([[1, 2, 3], [4, 5, 6]])) == "Blue Red Green\nYellow Gray Pink"


def test_test_index_picks_the_test_input():
    task = Task("t", SPEC_TASK.train, [np.array([[1]]), np.array([[2]])])
    assert build_messages(task, PromptSpec(1))[1]["content"].endswith("Input:\nRed\n\nWrite a Python function `transform` that can convert any given input grid to its corresponding output grid based on the pattern observed in the reference examples.")


def test_augmented_prompt_changes_grids_not_wording():
    spec = PromptSpec(0, Augmentation(True, 1, (0, 2, 1, 3, 4, 5, 6, 7, 8, 9)), shuffle_seed=3)
    user = build_messages(SPEC_TASK, spec)[1]["content"]
    assert user != GOLDEN_USER
    assert user.startswith(GOLDEN_USER[:300]) and user.endswith(GOLDEN_USER[-150:])
    assert PromptSpec.from_dict(spec.to_dict()) == spec
    assert build_messages(SPEC_TASK, spec) == build_messages(SPEC_TASK, spec)


CODE = "from common import *\n\nimport numpy as np\n\ndef transform(input_grid):\n    return input_grid"


@pytest.mark.parametrize("completion,expected", [
    (format_answer(CODE), CODE),
    (f"text\n```python\n{CODE}\n```\nmore\n```python\nsecond\n```", CODE),
    (f"```\n{CODE}\n```", CODE),
    (f"```\nuntagged\n```\n```python\n{CODE}\n```", CODE),  # a python-tagged fence wins
    (f"{ANSWER_PREFIX}```python\n{CODE}\n", None),  # truncated before the closing fence
    ("no code at all", None),
    ("```python\n\n```", None),
])
def test_extract_code(completion, expected):
    assert extract_code(completion) == expected


def test_format_answer_matches_spec():
    answer = format_answer(CODE)
    assert answer.startswith("Let's solve this puzzle using Python code with the common library functions.")
    assert answer.endswith(f"solve the problem:\n```python\n{CODE}\n```")


def test_real_task_prompt_shape():
    task = load_tasks(EVAL_2025)["0934a4d8"]
    user = build_messages(task)[1]["content"]
    assert user.count("Example ") == len(task.train)
    assert user.count("\n\n\nExample") == len(task.train) - 1


def test_cli_prompt():
    result = run_cli("prompt", str(EVAL_2025), "0934a4d8", "--augment", "3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"### system\n{GOLDEN_SYSTEM}\n")
    bad = run_cli("prompt", str(EVAL_2025), "0934a4d8", "--test-index", "5")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "task 0934a4d8: --test-index 5 out of range" in bad.stderr


def test_cli_prompt_through_a_chat_template(tiny_model_dir):
    result = run_cli("prompt", str(EVAL_2025), "0934a4d8", "--chat-template", str(tiny_model_dir))
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: "
                           f"December 2023\nToday Date: 26 Jul 2024\n\n{GOLDEN_SYSTEM}<|eot_id|>")
    assert text.endswith("observed in the reference examples.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    assert text.count("<|begin_of_text|>") == 1
    bad = run_cli("prompt", str(EVAL_2025), "0934a4d8", "--chat-template", str(tiny_model_dir / "nope"))
    assert bad.returncode == 2 and "cannot load tokenizer" in bad.stderr and "Traceback" not in bad.stderr
