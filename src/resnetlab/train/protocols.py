"""The paper's test protocols (Sec. 3.4) for every model and every data source.

- ``center``: one center crop (ImageNet: of the image resized to shorter side 256; CIFAR: the image itself);
- ``10crop``: the four corner crops and the center crop, and their horizontal flips (Tables 2-3);
- ``multiscale``: fully convolutional on the whole image at shorter sides {224, 256, 384, 480, 640} (Table 4).

The softmax scores of an image's views are averaged; the loss is ``-log`` of the averaged probability of the true
class (for one view: the cross-entropy). Views are built by :mod:`resnetlab.data.views`, relative to the model's
training crop, so a CIFAR checkpoint gets 32x32 crops of its 40x40 padded image and scales 32, 37, 55, 69, 91.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import normalize
from ..data.loader import rank_slice
from ..data.stream import StreamData
from ..data.views import PROTOCOLS, ViewSpec, make_views
from ..errors import ResNetLabError
from .device import autocast
from .distributed import DistInfo
from .evaluate import ErrorTally, EvalResult

__all__ = ["PROTOCOLS", "evaluate_stream", "evaluate_tensors", "evaluate_views", "score_views", "tensor_views"]


def check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise ResNetLabError(f"unknown test protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    return protocol


def _mean_for(mean: Tensor, shape: tuple[int, int], cache: dict[tuple[int, int], Tensor]) -> Tensor:
    """The mean image at a view's size: a per-pixel mean of the crop size is resized for the larger
    multi-scale views (a per-channel mean broadcasts as it is)."""
    if mean.dim() != 3 or mean.shape[-1] == 1 or tuple(mean.shape[-2:]) == shape:
        return mean
    if shape not in cache:
        cache[shape] = F.interpolate(mean[None].float(), size=shape, mode="bilinear", align_corners=False)[0]
    return cache[shape]


@torch.no_grad()
def score_views(model: nn.Module, views: list[list[Tensor]], mean: Tensor, std: Tensor | None, *,
                device: torch.device | str = "cpu", precision: str = "fp32", channels_last: bool = True,
                chunk: int = 256) -> Tensor:
    """Averaged softmax probabilities ``[B, K]`` (float64) of ``B`` images given as lists of uint8 views ``[3, h, w]``.

    Views of equal size are batched together (``chunk`` at a time), whatever image they belong to. ``model`` must be
    in eval mode and on ``device``.
    """
    device = torch.device(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    mean, std = mean.to(device), None if std is None else std.to(device)
    groups: dict[tuple[int, int], list[tuple[int, Tensor]]] = {}
    for i, image_views in enumerate(views):
        for v in image_views:
            groups.setdefault((int(v.shape[-2]), int(v.shape[-1])), []).append((i, v))
    counts = torch.tensor([len(v) for v in views], dtype=torch.float64, device=device)
    total: Tensor | None = None
    means: dict[tuple[int, int], Tensor] = {}
    for shape, items in groups.items():
        m = _mean_for(mean, shape, means)
        for s in range(0, len(items), chunk):
            part = items[s:s + chunk]
            x = normalize(torch.stack([v for _, v in part]).to(device, non_blocking=True), m, std,
                          memory_format=fmt)
            with autocast(device, precision):
                logits = model(x)
            p = logits.float().softmax(1).double()
            if total is None:
                total = torch.zeros(len(views), p.shape[1], dtype=torch.float64, device=device)
            total.index_add_(0, torch.tensor([i for i, _ in part], device=device), p)
    if total is None:
        return torch.zeros(0, 0, dtype=torch.float64)
    return total / counts.clamp(min=1).view(-1, 1)


@torch.no_grad()
def evaluate_views(model: nn.Module, batches: Iterable[tuple[list[list[Tensor]], Tensor]], mean: Tensor,
                   std: Tensor | None, *, device: torch.device | str = "cpu", precision: str = "fp32",
                   channels_last: bool = True, num_classes: int | None = None, info: DistInfo | None = None,
                   chunk: int = 256, progress: bool = False, total: int | None = None) -> EvalResult:
    """Loss and top-1/top-5 error (%) over ``batches`` of (views per image, labels), the views' scores averaged.

    Under DDP each rank passes its own share and the sums are all-reduced: every rank returns the same result.
    """
    info = info or DistInfo()
    device = torch.device(device)
    was_training = model.training
    model.eval()
    tally = ErrorTally(torch.device(device), num_classes)
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc="eval", unit="batch", total=total, leave=False, dynamic_ncols=True)
    try:
        for views, labels in batches:
            if not views:
                continue
            probs = score_views(model, views, mean, std, device=device, precision=precision,
                                channels_last=channels_last, chunk=chunk)
            y = labels.to(device)
            tally.add(probs, y, -probs.gather(1, y.view(-1, 1)).clamp(min=1e-300).log().sum())
    finally:
        model.train(was_training)
    return tally.result(info)


def tensor_views(images: Tensor, labels: Tensor, protocol: str, spec: ViewSpec, batch_size: int,
                 info: DistInfo | None = None) -> Iterator[tuple[list[list[Tensor]], Tensor]]:
    """This rank's share of in-memory uint8 images ``[N, 3, H, W]``, as (views per image, labels) batches."""
    info = info or DistInfo()
    share = rank_slice(int(images.shape[0]), info.rank, info.world_size)
    for s in range(share.start, share.stop, max(1, batch_size)):
        e = min(s + batch_size, share.stop)
        yield [make_views(img, protocol, spec) for img in images[s:e]], labels[s:e]


def evaluate_tensors(model: nn.Module, images: Tensor, labels: Tensor, mean: Tensor, std: Tensor | None,
                     protocol: str, spec: ViewSpec, *, batch_size: int = 100, **kwargs: object) -> EvalResult:
    """A protocol on in-memory uint8 images (CIFAR): ``spec`` is usually ``ViewSpec.fixed(32, pad=4)``."""
    check_protocol(protocol)
    batches = tensor_views(images, labels, protocol, spec, batch_size, kwargs.get("info"))  # type: ignore[arg-type]
    return evaluate_views(model, batches, mean, std, **kwargs)  # type: ignore[arg-type]


def evaluate_stream(model: nn.Module, data: StreamData, split: str, protocol: str = "center", *,
                    batch_size: int = 100, device: torch.device | str = "cpu", info: DistInfo | None = None,
                    **kwargs: object) -> EvalResult:
    """A protocol on a split of a streamed image folder (views decoded by the DataLoader workers)."""
    check_protocol(protocol)
    info = info or DistInfo()
    pin = torch.device(device).type == "cuda"
    batches = data.views(split, protocol, batch_size, rank=info.rank, world_size=info.world_size, pin_memory=pin)
    share = -(-data.split_size(split) // info.world_size)
    n = -(-share // max(1, batch_size))  # batches, for the progress bar
    return evaluate_views(model, batches, data.mean, data.std, device=device, info=info, total=n,
                          **kwargs)  # type: ignore[arg-type]
