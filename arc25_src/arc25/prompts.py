"""BARC induction prompts and answers, exactly as the model was trained on them.

See the contract in the BARC induction format spec: system message, grid rendering
as colour names, two blank lines after every train output, `Input:` kept on the test
grid, and the answer wrapping the code in a ```python fence.
"""

from __future__ import annotations

import random
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from arc25.augment import Augmentation, shuffled_train
from arc25.tasks import Task

SYSTEM_MESSAGE = (
    "You are a world-class puzzle solver with exceptional pattern recognition skills and expertise in "
    "Python programming. Your task is to analyze puzzles and provide Python solutions."
)
COLOR_NAMES = ("Black", "Blue", "Red", "Green", "Yellow", "Gray", "Pink", "Orange", "Purple", "Brown")
USER_INTRO = (
    "Given input-output grid pairs as reference examples, carefully observe the patterns to predict the "
    "output grid for new test input. Each pair follows the same transformation rule. Grids are 2D arrays "
    "represented as strings, with cells (colors) separated by spaces and rows by newlines."
)
USER_OUTRO = (
    "\nWrite a Python function `transform` that can convert any given input grid to its corresponding "
    "output grid based on the pattern observed in the reference examples."
)
ANSWER_PREFIX = (
    "Let's solve this puzzle using Python code with the common library functions. We'll first reason about "
    "the problem and then write the code to solve it. The `transform` function will take the input grid and "
    "return the output grid. Here is the Python code with the comments describing how to solve the problem:\n"
)

_PYTHON_FENCE = re.compile(r"```python[ \t]*\n(.*?)```", re.DOTALL)
_ANY_FENCE = re.compile(r"```[ \t]*\n(.*?)```", re.DOTALL)

Messages = list[dict[str, str]]


def render_grid(grid: np.ndarray) -> str:
    """Row i of the text is row i of the JSON grid (axis 0), cells as colour names."""
    return "\n".join(" ".join(COLOR_NAMES[int(v)] for v in row) for row in np.asarray(grid))


def user_message(task: Task, test_index: int = 0) -> str:
    parts = [USER_INTRO, "\nHere are the input and output grids for the reference examples:\n"]
    for i, ex in enumerate(task.train, start=1):
        parts.append(f"Example {i}\nInput:\n{render_grid(ex.input)}\n\nOutput:\n{render_grid(ex.output)}\n\n\n")
    parts.append("Here is the input grid for the test example:\n")
    parts.append(f"Input:\n{render_grid(task.test_inputs[test_index])}\n")
    parts.append(USER_OUTRO)
    return "".join(parts)


@dataclass(frozen=True)
class PromptSpec:
    """What a prompt is made from: the task, one test input, an augmentation and a train order.

    Recorded with every prediction so the exact prompt can be rebuilt for relabeling.
    """

    test_index: int = 0
    augmentation: Augmentation = Augmentation()
    shuffle_seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"test_index": self.test_index, "augmentation": self.augmentation.to_dict(), "shuffle_seed": self.shuffle_seed}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PromptSpec:
        return cls(int(data.get("test_index", 0)), Augmentation.from_dict(data.get("augmentation")), data.get("shuffle_seed"))


def prompt_task(task: Task, spec: PromptSpec) -> Task:
    """The task as the model sees it under `spec`: augmented, train pairs possibly shuffled."""
    shown = spec.augmentation.apply_task(task)
    if spec.shuffle_seed is not None:
        shown = shuffled_train(shown, random.Random(spec.shuffle_seed))
    return shown


def build_messages(task: Task, spec: PromptSpec = PromptSpec()) -> Messages:
    """System and user messages for one test input of `task` under `spec`."""
    shown = prompt_task(task, spec)
    return [
        {"role": "system", "content": SYSTEM_MESSAGE},
        {"role": "user", "content": user_message(shown, spec.test_index)},
    ]


def render_chat(tokenizer: Any, messages: Messages) -> str:
    """The chat-template text with the assistant header, as the model sees it.

    For token ids use `tokenize_prompt`: tokenizing this text again with special
    tokens on would give a double BOS.
    """
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def tokenize_prompt(tokenizer: Any, messages: Messages) -> list[int]:
    """Token ids of the chat prompt: the template's own BOS, exactly once."""
    text = render_chat(tokenizer, messages)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


# The Llama 3 special tokens the engines and the trainer use, by name (ids from the tokenizer)
EOT_TOKEN = "<|eot_id|>"  # ends an answer: the trained stop token, labelled in training
PAD_TOKEN = "<|finetune_right_pad_id|>"  # training pad: never <|eot_id|>, which must stay labelled
STOP_TOKENS = ("<|eot_id|>", "<|end_of_text|>", "<|eom_id|>")  # generation ends at any of these


@dataclass(frozen=True)
class SpecialIds:
    pad: int
    eot: int
    stop: tuple[int, ...]

    @classmethod
    def of(cls, tokenizer: Any) -> SpecialIds:
        ids = tokenizer.convert_tokens_to_ids
        return cls(ids(PAD_TOKEN), ids(EOT_TOKEN), tuple(ids(t) for t in STOP_TOKENS))


class PromptIds:
    """`tokenize_prompt` with an LRU cache (a task's prompts recur across epochs), and answers' ids."""

    def __init__(self, tokenizer: Any, size: int = 512) -> None:
        self.tokenizer, self.size = tokenizer, size
        self._cache: OrderedDict[tuple, list[int]] = OrderedDict()

    def __call__(self, messages: Messages) -> list[int]:
        key = tuple((m["role"], m["content"]) for m in messages)
        ids = self._cache.get(key)
        if ids is None:
            ids = tokenize_prompt(self.tokenizer, messages)
            self._cache[key] = ids
            if len(self._cache) > self.size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return ids

    def answer(self, text: str) -> list[int]:
        """An answer's ids as training appends them to the prompt (no special tokens)."""
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]


def format_answer(code: str) -> str:
    """The training target for a program (without the final <|eot_id|>)."""
    return f"{ANSWER_PREFIX}```python\n{code.strip()}\n```"


def extract_code(completion: str) -> str | None:
    """The program in a completion: the first ```python fence, else the first untagged fence.

    A completion cut off before its closing fence has no code.
    """
    match = _PYTHON_FENCE.search(completion) or _ANY_FENCE.search(completion)
    if match is None:
        return None
    code = match.group(1).strip()
    return code or None
