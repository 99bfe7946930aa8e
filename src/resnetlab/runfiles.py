"""The files of a run folder, by name: what training writes and every reader of runs (evaluation, weights, the
experiments, the tools) looks for.

    RUN_DIR/config.json            the resolved config
    RUN_DIR/metrics.jsonl          one row per log and evaluation
    RUN_DIR/checkpoint-NNNNNNN.pt  resumable state (with its .sha256), newest kept
    RUN_DIR/summary.json           a finished run's errors and costs
    RUN_DIR/model.safetensors      a finished run's final weights (with its .sha256)
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["WEIGHTS_NAME", "checkpoint_iteration", "checkpoint_name", "list_checkpoints"]

WEIGHTS_NAME = "model.safetensors"  # a finished run's final weights (weights/files.py): what experiments reuse
_CHECKPOINT = re.compile(r"checkpoint-(\d{7,})\.pt")


def checkpoint_name(iteration: int) -> str:
    return f"checkpoint-{iteration:07d}.pt"


def checkpoint_iteration(name: str) -> int | None:
    """The iteration in a checkpoint's file name (``checkpoint_name``'s inverse); None for any other file."""
    m = _CHECKPOINT.fullmatch(name)
    return int(m.group(1)) if m else None


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(iteration, path) of every checkpoint file in ``run_dir``, oldest first (valid or not)."""
    if not run_dir.is_dir():
        return []
    return sorted((it, p) for p in run_dir.iterdir() if (it := checkpoint_iteration(p.name)) is not None)
