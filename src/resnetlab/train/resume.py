"""What resuming a run checks: the keys that may change, the saved config, the data a checkpoint was trained on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..data.source import DataSource
from ..errors import ResNetLabError
from . import checkpoint as ckpt
from .config import ConfigError, TrainConfig

# Config keys that may differ when a run is resumed: where and how it computes, not what it computes (skip_bad:
# nothing changes while every file decodes). eval_precision is not among them: a run's recorded errors are all
# measured in one precision (fp32 unless set), which every evaluation row and the summary name.
RESUMABLE_CHANGES = {"device", "threads", "eval_batch_size", "cache_dir", "data", "compile", "precision",
                     "channels_last", "workers", "skip_bad", "tensorboard", "data_on_device",
                     "init"}  # read once, when the run starts: a resume continues from its checkpoint


def config_differences(a: TrainConfig, b: TrainConfig) -> list[str]:
    da, db = a.to_dict(), b.to_dict()
    return [f"{k}: {da[k]!r} (run) vs {db[k]!r} (now)" for k in sorted(da)
            if da[k] != db.get(k) and k not in RESUMABLE_CHANGES]


def resumed_config(saved: TrainConfig, cfg: TrainConfig | None, run_dir: Path) -> TrainConfig:
    """The one decision on resuming: the config a run continues with is its saved one, with the keys that may change
    (``RESUMABLE_CHANGES``) taken from ``cfg``; any other difference is refused before anything is touched."""
    if cfg is None:
        return saved
    diff = config_differences(saved, cfg)
    if diff:
        raise ConfigError(f"cannot resume {run_dir} with a different setup: {'; '.join(diff)}. Start a new run with "
                          "another --out")
    now = cfg.to_dict()
    return saved.updated({key: now[key] for key in sorted(RESUMABLE_CHANGES)})


def read_run_config(run_dir: Path) -> TrainConfig:
    path = run_dir / "config.json"
    if not path.is_file():
        raise ResNetLabError(f"{run_dir} is not a run directory (no config.json); start a run with "
                             "`resnetlab train --out DIR`, or give the folder of an existing run to --resume")
    try:
        return TrainConfig.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError, ConfigError) as exc:
        raise ResNetLabError(f"{path} is damaged ({exc}); it cannot be resumed") from None



def data_digest(data: DataSource) -> str | None:
    """SHA-256 of the data and its split, stored in every checkpoint: the images, labels and split of in-memory
    data; the class names and every split's file list and labels of a streamed folder (its images are not read)."""
    return data.split_digest


def check_same_data(path: Path, state: dict[str, Any], classes: list[str], data_name: str, digest: str | None) -> None:
    """Refuse to resume on other data: other classes, other images, labels or split (other files, when streamed)."""
    if list(state.get("classes", classes)) != classes:
        theirs = list(state["classes"])
        raise ckpt.CheckpointError(
            f"{path} was trained on {len(theirs)} classes ({', '.join(theirs[:5])}{', ...' if len(theirs) > 5 else ''})"
            f" but the data now has {len(classes)} ({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''}): "
            "resume with the run's data set (--data), or start a new run with --out")
    if state.get("data_digest") is not None and state["data_digest"] != digest:
        raise ckpt.CheckpointError(
            f"the data changed since {path} was written (other images, labels or split of {data_name}): "
            "resuming would train on other data. Restore the data the run started with, or start a new run with "
            "--out")


def has_run(run_dir: Path) -> bool:
    return (run_dir / "config.json").exists() or bool(ckpt.list_checkpoints(run_dir))

