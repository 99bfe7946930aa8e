"""`resnetlab eval`: a checkpoint on a test split: top-1/top-5 error, per-class accuracy, confusion matrix."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..data import load_dataset
from ..data.cache import atomic_write
from ..errors import ResNetLabError
from ..models import create_model
from ..models.weights import load_state_dict
from .checkpoint import checksum_path, load_checkpoint
from .config import TrainConfig
from .engine import EvalResult, evaluate, select_device


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


def plot_confusion(confusion: Tensor, classes: list[str], out: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(classes)
    rates = confusion.double() / confusion.sum(1, keepdim=True).clamp(min=1)
    size = max(4.0, 0.45 * k + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    if k <= 30:
        ax.set_xticks(range(k), classes, rotation=90, fontsize=7)
        ax.set_yticks(range(k), classes, fontsize=7)
        for i in range(k):
            for j in range(k):
                if confusion[i, j]:
                    ax.text(j, i, int(confusion[i, j]), ha="center", va="center", fontsize=6,
                            color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    atomic_write(out, lambda f: fig.savefig(f, format="png", dpi=120))
    plt.close(fig)
    return out


def evaluate_checkpoint(path: str | Path, data: str | None = None, out_dir: str | Path | None = None, *,
                        cache_dir: str | None = None, batch_size: int = 1000, device: str = "auto",
                        precision: str = "fp32", progress: bool = True) -> dict[str, Any]:
    """Evaluate a checkpoint on the test split of ``data`` (default: the data it was trained on).

    Writes ``confusion.json`` and ``confusion.png`` to ``out_dir`` (default ``<checkpoint folder>/eval``) and returns
    the report (errors in %).
    """
    path = Path(path)
    model, cfg, state = load_trained(path)
    classes = list(state["classes"])
    arrays = load_dataset(data or cfg.data, cache_dir=Path(cache_dir) if cache_dir else None, progress=progress)
    if arrays.classes != classes:
        raise ResNetLabError(f"the data's classes {arrays.classes[:5]}... differ from the checkpoint's "
                             f"{classes[:5]}...: evaluate on the data set the model was trained on")
    if tuple(arrays.test_x.shape[-2:]) != tuple(state["mean"].shape[-2:]) and state["mean"].dim() == 3:
        raise ResNetLabError(f"the test images are {tuple(arrays.test_x.shape[-2:])} but the model was trained on "
                             f"{tuple(state['mean'].shape[-2:])} images")
    dev = select_device(device)
    model = model.to(dev, memory_format=torch.channels_last)
    result: EvalResult = evaluate(model, arrays.test_x, arrays.test_y, state["mean"].to(dev),
                                  None if state["std"] is None else state["std"].to(dev), batch_size=batch_size,
                                  device=dev, precision=precision, num_classes=len(classes), progress=progress)
    assert result.confusion is not None
    per_class = (result.confusion.diag().double() / result.confusion.sum(1).clamp(min=1) * 100).tolist()
    report = {
        "checkpoint": str(path),
        "model": cfg.model,
        "iteration": int(state["iteration"]),
        "data": str(data or cfg.data),
        "images": result.count,
        "top1_error": result.top1_error,
        "top5_error": result.top5_error,
        "loss": result.loss,
        "per_class_accuracy": dict(zip(classes, per_class, strict=True)),
        "classes": classes,
        "confusion": result.confusion.tolist(),
    }
    out = Path(out_dir) if out_dir else path.parent / "eval"
    atomic_write(out / "confusion.json", lambda f: f.write(json.dumps(report, indent=2).encode()))
    plot_confusion(result.confusion, classes, out / "confusion.png",
                   f"{cfg.model} @ {report['iteration']} it: top-1 error {result.top1_error:.2f}%")
    report["out_dir"] = str(out)
    return report
