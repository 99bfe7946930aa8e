"""A trained model back from a resnetlab training checkpoint (checksum verified where the file has one): the one
loader that ``interop.load_model_file``, ``eval`` and the benchmarks share."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from torch import nn

from ..io import checksum_path
from ..models import create_model
from ..models.weights import load_state_dict
from .checkpoint import load_checkpoint
from .config import TrainConfig


def model_from_checkpoint(state: dict[str, Any], source: str = "checkpoint") -> tuple[nn.Module, TrainConfig]:
    """The trained model of a resnetlab checkpoint (eval mode, CPU) and the config that made it."""
    cfg = TrainConfig.from_dict(state["config"])
    model = create_model(cfg.model, **{**cfg.model_kwargs, "num_classes": len(state["classes"])})
    load_state_dict(model, state["model"], source=source)
    return model.eval(), cfg


def load_trained(path: str | Path) -> tuple[nn.Module, TrainConfig, dict[str, Any]]:
    """Model, config and the full checkpoint dict; the checksum is verified where the file has one."""
    path = Path(path)
    if not checksum_path(path).exists():
        warnings.warn(f"{path} has no .sha256 file beside it: its integrity cannot be checked", stacklevel=2)
    state = load_checkpoint(path, require_checksum=False)
    model, cfg = model_from_checkpoint(state, source=str(path))
    return model, cfg, state
