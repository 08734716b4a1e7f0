"""Checks of the model before any worker starts: one line naming the path and the reason, in a second.

A model folder must hold config.json, tokenizer files, every weights file (the shards its index
lists: a missing shard, a Git LFS pointer or a truncated safetensors download is caught from the
header, without reading GBs) and a tokenizer that loads with a chat template; the scripted backend's
completions file must be a JSON object with a non-empty list "completions". Used by `arc25 run`,
`arc25 solve` and the Kaggle dataset upload.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from arc25.config import Config
from arc25.errors import UserError, existing_dir, one_line

MODEL_FOLDER_BACKENDS = ("auto", "hf", "vllm", "unsloth")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
SAFETENSORS_HEADER_MAX = 100 << 20  # the format's own limit on its JSON header


def check_model(config: Config) -> None:
    """Fail once, in a second, with one line naming the path and the reason, rather than in every worker
    after it has started: the model folder (config, tokenizer files, weights, the tokenizer loads with its chat
    template) or, for
    the scripted backend, its completions file."""
    backend, path = config.model.backend, Path(config.model.path)
    if backend == "scripted":
        check_scripted_file(path)
    elif backend in MODEL_FOLDER_BACKENDS:
        check_model_folder(path, backend)


def check_scripted_file(path: Path) -> None:
    if not path.is_file():
        raise UserError(f"{path}: scripted-completions file not found" if not path.exists() else
                        f"{path}: not a file (model.backend=scripted expects a JSON file of completions)")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the scripted-completions file ({_reason(exc)})") from None
    except ValueError as exc:
        raise UserError(f"{path}: the scripted-completions file is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("completions"), list) or not data["completions"]:
        raise UserError(f"{path}: expected a JSON object with a non-empty list \"completions\"")


def check_model_folder(path: Path, backend: str) -> None:
    existing_dir(path, "model folder")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise UserError(f"{path}: no config.json (not a Hugging Face model folder)")
    _read_json_file(config_file, "the model config")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise UserError(f"{path}: no tokenizer files ({' or '.join(TOKENIZER_FILES)})")
    for weights in _weight_files(path):
        if weights.suffix == ".safetensors":
            _check_safetensors(weights)
    _check_tokenizer_loads(path)


def _read_json_file(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read {what} ({_reason(exc)})") from None
    except ValueError as exc:
        raise UserError(f"{path}: {what} is not valid JSON ({exc})") from None


def _reason(exc: Exception) -> str:
    """Why a read failed, without repeating the path the message already names."""
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else one_line(exc)


def _weight_files(path: Path) -> list[Path]:
    """Every weights file the model needs: the shards its index lists, else the single files present."""
    for name in WEIGHT_INDEXES:
        index = path / name
        if index.is_file():
            weight_map = _read_json_file(index, "the weights index").get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise UserError(f"{index}: no weight_map")
            files = [path / f for f in sorted(set(weight_map.values()))]
            for f in files:
                if not f.is_file():
                    raise UserError(f"{f}: weights file missing (listed in {name})")
            return files
    files = sorted(path.glob("*.safetensors")) + sorted(path.glob("pytorch_model*.bin"))
    if not files:
        raise UserError(f"{path}: no weights (*.safetensors or pytorch_model*.bin)")
    return files


def _check_safetensors(path: Path) -> None:
    """The file is as long as its header says: catches Git LFS pointers and downloads cut short (in the
    header or in the tensors) without reading GBs."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            header = int.from_bytes(head, "little") if len(head) == 8 else -1
            text = f.read(header) if 0 < header <= SAFETENSORS_HEADER_MAX and 8 + header <= size else b""
    except OSError as exc:
        raise UserError(f"{path}: cannot read the weights ({exc.strerror or one_line(exc)})") from None
    try:
        entries = json.loads(text) if text else None
        end = max((int(e["data_offsets"][1]) for k, e in entries.items() if k != "__metadata__"), default=0)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        end = None
    if end is None or 8 + header + end != size:
        expected = f" of {8 + header + end}" if end is not None else ""
        raise UserError(f"{path}: not a complete safetensors file ({size} bytes{expected}; a Git LFS pointer or a "
                        f"truncated download?)")


def _check_tokenizer_loads(path: Path) -> None:
    from transformers import AutoTokenizer  # lazy and torch-free use: the parent never touches CUDA

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except Exception as exc:  # transformers raises many kinds (OSError, ValueError, JSON errors...)
        raise UserError(f"{path}: the tokenizer does not load ({one_line(exc)})") from None
    if not getattr(tokenizer, "chat_template", None):  # arc25.prompts renders every prompt through it
        raise UserError(f"{path}: the tokenizer has no chat template (tokenizer_config.json's chat_template or "
                        "chat_template.jinja)")
