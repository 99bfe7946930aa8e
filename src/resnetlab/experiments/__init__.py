"""The paper's experiments, one module per figure or table, each one command: ``resnetlab reproduce NAME``.

Each takes a budget (``smoke``, ``quick``, ``paper``), writes PNG figures, ``results.md`` and ``results.json`` to its
output folder, and keeps its training runs under a shared runs folder, so experiments reuse each other's runs and an
interrupted one continues where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import ResNetLabError
from . import degradation, imagenet, responses, shortcuts, table6
from .runner import BUDGETS, Budget, Context, RunRecord, RunSpec, get_budget

EXPERIMENTS: dict[str, tuple[Callable[..., Path], str]] = {
    "degradation": (degradation.run, "Fig. 1/6: plain vs residual nets, training and test error vs iterations"),
    "table6": (table6.run, "Table 6: CIFAR-10 test error of ResNet-20..110, several seeds"),
    "responses": (responses.run, "Fig. 7: std of every 3x3 layer's response, plain vs ResNets"),
    "shortcuts": (shortcuts.run, "shortcut options A/B/C on a CIFAR ResNet (the CIFAR analogue of Table 3)"),
    "imagenet-table2": (imagenet.run_table2, "Table 2 / Fig. 4: ImageNet plain-18/34 vs ResNet-18/34 (--data ROOT)"),
    "imagenet-table3": (imagenet.run_table3, "Table 3: ImageNet ResNet-34 A/B/C, ResNet-50/101/152 (--data ROOT)"),
}


def default_runs_dir() -> Path:
    """``./runs`` where it exists, else the runs committed in the clone resnetlab is installed from (so a command run
    from another folder still finds them), else ``./runs``."""
    from ..weights.hub import REPO_ROOT

    here = Path("runs")
    clone = REPO_ROOT / "runs"
    return here if here.is_dir() or not clone.is_dir() else clone


def reproduce(name: str, budget: str = "smoke", data: str = "cifar10", out: str | Path | None = None,
              runs_dir: str | Path | None = None, cache_dir: str | None = None, overrides: Sequence[str] = (),
              progress: bool = True, argv: Sequence[str] | None = None, train: bool = True,
              only: Sequence[str] = (), **options: Any) -> Path:
    """Run experiment ``name`` and return its output folder (default ``results/<data name>/<name>-<budget>``, the data
    named by :func:`~resnetlab.data.known.data_name`: ``cifar10`` for the official pixels).

    With ``train=False`` only finished runs are used (the committed ones, for instance); the results list the rest.
    ``only`` names the nets to train (labels such as ``resnet20`` or ``resnet20-shortcutB``); others are used if
    finished and listed as missing if not.
    """
    if name not in EXPERIMENTS:
        raise ResNetLabError(f"unknown experiment {name!r}; choose from {', '.join(EXPERIMENTS)}")
    runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    ctx = Context(name, get_budget(budget), str(data), Path(out) if out else None, runs_dir, cache_dir,
                  list(overrides), progress,
                  argv, train_missing=train, only=tuple(only))
    return EXPERIMENTS[name][0](ctx, **options)


__all__ = ["BUDGETS", "EXPERIMENTS", "Budget", "Context", "RunRecord", "RunSpec",
           "reproduce"]
