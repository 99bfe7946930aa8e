"""`resnetlab eval`: a checkpoint on a test split: top-1/top-5 error, per-class accuracy, confusion matrix."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from torch import Tensor

from .. import io
from ..data import DataWarning, load_dataset
from ..data.datasets import content_digest
from ..data.known import known_data
from ..errors import ResNetLabError
from ..figures import save_figure
from .device import resolve_precision, select_device
from .evaluate import evaluate

DEFAULT_EVAL_BATCH = 1000  # `resnetlab eval`'s, and what released weights' cards are measured with


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
    return save_figure(fig, out)


def evaluate_checkpoint(path: str | Path, data: str | None = None, out_dir: str | Path | None = None, *,
                        cache_dir: str | None = None, batch_size: int = DEFAULT_EVAL_BATCH, device: str = "auto",
                        precision: str = "fp32", progress: bool = True, protocol: str = "center",
                        workers: int | None = None, skip_bad: bool = False) -> dict[str, Any]:
    """Evaluate a checkpoint (or a ``resnetlab convert`` weights file) on the test split of ``data`` (default: the
    data it was trained on) under a test ``protocol``: ``center``, ``10crop`` or ``multiscale`` (Sec. 3.4).

    In-memory data (CIFAR) is evaluated on its test set; a model trained on a streamed folder (ImageNet) on the
    folder's test/ (else val/) tree, decoded by ``workers`` DataLoader processes. ``batch_size`` counts views.
    Writes ``confusion.json`` and ``confusion.png`` to ``out_dir`` (default
    ``<checkpoint folder>/eval/<checkpoint>-<protocol>``) and returns the report (errors in %).
    """
    from ..data.stream import open_stream
    from ..inference import inference_copy
    from ..weights import load
    from .protocols import check_protocol, evaluate_stream, evaluate_tensors

    check_protocol(protocol)
    path = Path(path)
    loaded = load(path)
    cfg = loaded.run_config  # a training checkpoint's: the data it trained on, its loader workers
    trained_on = loaded.meta.get("data")  # the digest of the data the weights were trained on, as recorded
    data_digest = None
    spec = data or (cfg["data"] if cfg is not None else None)
    if spec is None:
        raise ResNetLabError(f"{path} holds weights without a run's config: give the data to evaluate on with --data")
    dev = select_device(device)
    precision = resolve_precision(precision, dev)  # "auto" made concrete once: the copy and the autocast share it
    # The inference path: BN folded into the convs, channels_last, and autocast at ``precision``.
    model = inference_copy(loaded.model, precision, device=dev)
    mean, std = loaded.mean, loaded.std
    per_image = {"center": 1, "10crop": 10, "multiscale": len(loaded.view.scale_sides)}[protocol]
    common = {"device": dev, "precision": precision, "chunk": batch_size, "progress": progress}
    if loaded.view.style == "imagenet":  # images of any size, streamed: the folder's held-out tree
        n_workers = workers if workers is not None else (int(cfg.get("workers", 8)) if cfg is not None else 8)
        stream = open_stream(spec, crop=loaded.view.crop, mean=mean, std=std, workers=n_workers, skip_bad=skip_bad,
                             progress=progress)
        classes = _check_classes(loaded.classes, stream.classes, loaded.num_classes)
        result = evaluate_stream(model, stream, "test", protocol, batch_size=max(1, batch_size // per_image),
                                 num_classes=len(classes), **common)
    else:
        arrays = load_dataset(spec, cache_dir=Path(cache_dir) if cache_dir else None, progress=progress,
                              skip_bad=skip_bad)
        classes = _check_classes(loaded.classes, arrays.classes, loaded.num_classes)
        data_digest = content_digest(arrays)
        if (note := other_data_note(trained_on, data_digest)) is not None:
            warnings.warn(note, DataWarning, stacklevel=2)
        if mean.dim() == 3 and mean.shape[-1] > 1 and tuple(arrays.test_x.shape[-2:]) != tuple(mean.shape[-2:]):
            raise ResNetLabError(f"the test images are {tuple(arrays.test_x.shape[-2:])} but the model was trained "
                                 f"on {tuple(mean.shape[-2:])} images")
        if protocol == "center":  # the single original image (Sec. 4.2)
            result = evaluate(model, arrays.test_x, arrays.test_y, mean.to(dev), None if std is None else std.to(dev),
                              batch_size=batch_size, device=dev, precision=precision, num_classes=len(classes),
                              progress=progress)
        else:
            result = evaluate_tensors(model, arrays.test_x, arrays.test_y, mean, std, protocol, loaded.view,
                                      batch_size=max(1, batch_size // per_image), num_classes=len(classes), **common)
    assert result.confusion is not None
    per_class = (result.confusion.diag().double() / result.confusion.sum(1).clamp(min=1) * 100).tolist()
    report = {
        "checkpoint": str(path),
        "model": loaded.name,
        "iteration": loaded.iteration,
        "data": str(spec),
        "data_digest": data_digest,  # the evaluated data's content (None for streamed folders)
        "trained_on_digest": trained_on,
        "protocol": protocol,
        "images": result.count,
        "top1_error": result.top1_error,
        "top5_error": result.top5_error,
        "loss": result.loss,
        "per_class_accuracy": dict(zip(classes, per_class, strict=True)),
        "classes": classes,
        "confusion": result.confusion.tolist(),
    }
    if out_dir:
        out = Path(out_dir)
    elif loaded.kind == "released":  # a weights name: the current folder
        out = Path("eval") / f"{path}-{protocol}"
    else:
        out = path.parent / "eval" / f"{path.stem}-{protocol}"  # one folder per result
    io.atomic_write(out / "confusion.json", lambda f: f.write(json.dumps(report, indent=2).encode()))
    at = f" @ {report['iteration']} it" if report["iteration"] is not None else ""
    plot_confusion(result.confusion, classes, out / "confusion.png",
                   f"{loaded.name}{at} ({protocol}): top-1 error {result.top1_error:.2f}%")
    report["out_dir"] = str(out)
    return report


def other_data_note(trained_on: str | None, evaluated: str | None) -> str | None:
    """One line when weights are scored on other data than they were trained on (say, JPEG-trained weights on the
    official pixels): the error is then not the card's and not comparable with it. None when the data is the same or
    either side is unknown."""
    if trained_on is None or evaluated is None or trained_on == evaluated:
        return None
    def title(digest: str) -> str:
        known = known_data(digest)
        return known.title if known else f"data with digest {digest[:12]}"
    return (f"these weights were trained on {title(trained_on)} and are scored on {title(evaluated)}: the error "
            "measures the transfer between the two, not the weights' own test error")


def _check_classes(model_classes: list[str] | None, data_classes: list[str], num_classes: int) -> list[str]:
    """The class names to report: the model's, which must be the data's (a converted model without names takes
    the data's sorted folder names, as torchvision's ImageNet indices are)."""
    if model_classes is not None and model_classes != list(data_classes):
        raise ResNetLabError(f"the data's classes {data_classes[:5]}... differ from the checkpoint's "
                             f"{model_classes[:5]}...: evaluate on the data set the model was trained on")
    if len(data_classes) != num_classes:
        raise ResNetLabError(f"the data has {len(data_classes)} classes but the model outputs {num_classes}")
    return list(data_classes)
