"""Training: typed config and the paper's recipes, the trainer (one step, one epoch), evaluation, ``fit`` (a run),
checkpoints that survive crashes, metrics and curves."""

from .checkpoint import CheckpointError, RunLock, latest_checkpoint, load_checkpoint, save_checkpoint
from .config import RECIPES, ConfigError, TrainConfig, apply_scale, recipe_config, resolve_config
from .engine import RunResult, fit, load_data
from .evaluate import EvalResult, evaluate
from .metrics import plot_curves, read_metrics
from .schedule import LRSchedule, step_lr
from .trainer import NonFiniteLossError, Trainer

__all__ = [
    "RECIPES",
    "CheckpointError",
    "ConfigError",
    "EvalResult",
    "LRSchedule",
    "NonFiniteLossError",
    "RunLock",
    "RunResult",
    "TrainConfig",
    "Trainer",
    "apply_scale",
    "evaluate",
    "fit",
    "latest_checkpoint",
    "load_checkpoint",
    "load_data",
    "plot_curves",
    "read_metrics",
    "recipe_config",
    "resolve_config",
    "save_checkpoint",
    "step_lr",
]
