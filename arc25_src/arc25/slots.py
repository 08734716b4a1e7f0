"""Adapter slots: the LoRA adapters a process creates once and lends to its tasks in turn.

A worker (or `solve_tasks`) keeps K tasks in flight; each holds one slot while it runs and
resets the slot's adapter before its first learn step, so a slot is created once per process,
never per task (creating one costs a model-side allocation; resetting it costs a copy).
The scheduler hands a finished task's slot to the next task (`arc25.scheduler`).
"""

from __future__ import annotations

from arc25.backends.base import Backend

ADAPTER_SLOT = "slot0"  # the first slot; the only one with one task in flight


def slot_names(k: int) -> list[str]:
    """The names of k slots."""
    return [ADAPTER_SLOT] + [f"slot{i}" for i in range(1, k)]


def adapter_slots(backend: Backend, k: int) -> list[str]:
    """Create k adapter slots once per process (the solvers reset them per task)."""
    names = slot_names(k)
    for name in names:
        try:
            backend.adapter_version(name)  # made by an earlier call in this process: reuse it
        except KeyError:
            backend.create_adapter(name)
    return names
