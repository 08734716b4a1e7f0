"""Which devices a run's workers get: GPU indices from --gpus or the machine, else CPU workers.

The parent never imports torch (nothing it loads may touch CUDA before the workers set
CUDA_VISIBLE_DEVICES), so the machine's GPUs are read from CUDA_VISIBLE_DEVICES or `nvidia-smi -L`.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

from arc25.errors import UserError


def parse_gpus(text: str) -> list[str]:
    gpus = [g.strip() for g in text.split(",") if g.strip()]
    if not gpus or not all(g.isdigit() for g in gpus):
        raise UserError(f"--gpus {text!r}: expected GPU indices like 0,1,2,3")
    return gpus


def detect_gpus() -> list[str]:
    """GPU indices visible to this process, without importing torch (the parent must not touch CUDA)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(l for l in out.splitlines() if l.startswith("GPU "))]


@dataclass(frozen=True)
class GpuFacts:
    name: str
    capability: tuple[int, int]  # CUDA compute capability (an L4: 8.9, an H100: 9.0)
    memory_gib: float


def gpu_facts(index: str) -> GpuFacts | None:
    """Name, compute capability and memory of GPU `index` from nvidia-smi (None: it does not answer)."""
    try:
        out = subprocess.run(["nvidia-smi", "-i", index, "--query-gpu=name,compute_cap,memory.total",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=30)
        name, cap, mib = (field.strip() for field in out.stdout.strip().splitlines()[0].split(","))
        major, minor = cap.split(".")
        return GpuFacts(name, (int(major), int(minor)), float(mib) / 1024)
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def plan_devices(n_workers: int | None, gpus: list[str] | None) -> list[str]:
    """One device per worker: a GPU index, or "cpu"."""
    if gpus:
        return list(gpus)
    if n_workers:
        return ["cpu"] * n_workers
    return detect_gpus() or ["cpu"]
