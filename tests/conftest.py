"""Session fixtures shared by the model tests: the tiny model folder and an HF backend on it.

torch is imported only by tests that ask for these fixtures.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama-3.1-style model, built once per session.

    Built through `tiny_model_path`, so `tiny_model_dir.parent` is a cache dir in which
    `tiny_model_path` (and `--cache-dir` commands) find it already made.
    """
    import torch

    from arc25.tiny_model import tiny_model_path

    # The test machines are small and shared: with intra-op threads the tiny model's many
    # small ops spend more time in OpenMP barriers than computing (5-10x slower under load).
    torch.set_num_threads(1)
    return tiny_model_path(tmp_path_factory.mktemp("tiny-cache"))


@pytest.fixture(scope="session")
def hf_backend(tiny_model_dir: Path):
    """One HFBackend on the tiny model for the session. Tests create uniquely named adapters and drop them.

    Learning rate 2e-3: the tiny random model needs more than the 8B's 1e-4 to overfit within
    a few dozen steps, and still descends smoothly at this rsLoRA scale (alpha/sqrt(rank) = 11.3).
    """
    from arc25.backends.hf import HFBackend
    from arc25.config import LoraConfig, ModelConfig, TrainingConfig

    backend = HFBackend(ModelConfig(path=str(tiny_model_dir), max_seq_len=4096), LoraConfig(),
                        TrainingConfig(learning_rate=2e-3, warmup_steps=2, gradient_checkpointing=True), seed=0)
    yield backend
    backend.close()
