"""Single-view evaluation of in-memory images: loss, top-1/top-5 error and the confusion matrix, all-reduced
over the ranks."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import normalize
from ..data.arrays import check_labels
from ..data.loader import rank_slice, tensor_batches
from .device import autocast
from .distributed import DistInfo, all_reduce_sum


@dataclass
class EvalResult:
    loss: float
    top1_error: float  # percent
    top5_error: float  # percent
    count: int
    confusion: Tensor | None = None  # [num_classes, num_classes] int64, rows = true class


class ErrorTally:
    """Running sums of an evaluation (loss, top-1 and top-5 mistakes, count, confusion matrix), all-reduced over
    the ranks into an EvalResult."""

    def __init__(self, device: torch.device, num_classes: int | None = None) -> None:
        self.sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss sum, top-1 wrong, top-5 wrong, count
        self.k = num_classes or 0
        self.confusion = torch.zeros(self.k * self.k, dtype=torch.int64, device=device)

    def add(self, scores: Tensor, y: Tensor, loss_sum: Tensor) -> None:
        """``scores`` [B, classes] (logits or probabilities), ``y`` [B], the batch's summed loss."""
        top = scores.topk(min(5, scores.shape[1]), dim=1).indices
        self.sums += torch.stack([loss_sum.double(), (top[:, 0] != y).sum().double(),
                                  (~(top == y[:, None]).any(1)).sum().double(),
                                  torch.tensor(float(y.numel()), dtype=torch.float64, device=y.device)])
        if self.k:
            self.confusion += torch.bincount(y * self.k + top[:, 0], minlength=self.k * self.k)

    def result(self, info: DistInfo) -> EvalResult:
        all_reduce_sum(self.sums, info)
        if self.k:
            all_reduce_sum(self.confusion, info)
        loss, top1, top5, count = self.sums.tolist()
        n = max(count, 1.0)
        return EvalResult(loss / n, 100 * top1 / n, 100 * top5 / n, int(count),
                          self.confusion.view(self.k, self.k).cpu() if self.k else None)


@torch.no_grad()
def evaluate_batches(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], mean: Tensor, std: Tensor | None,
                     *, device: torch.device | str = "cpu", precision: str = "fp32", channels_last: bool = True,
                     num_classes: int | None = None, info: DistInfo | None = None, progress: bool = False,
                     total: int | None = None) -> EvalResult:
    """Loss and top-1/top-5 error (%) of ``model`` over ``batches`` of (uint8 images [B, 3, H, W], labels): one
    view per image, unaugmented. With ``num_classes`` also the confusion matrix. Under DDP every rank passes its
    own share and the sums are all-reduced, so every rank returns the same result."""
    info = info or DistInfo()
    device = torch.device(device)
    was_training = model.training
    model.eval()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    tally = ErrorTally(device, num_classes)
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc="eval", unit="batch", total=total, leave=False, dynamic_ncols=True)
    try:
        for images, labels in batches:
            x = normalize(images.to(device, non_blocking=True), mean, std, memory_format=fmt)
            y = labels.to(device)
            with autocast(device, precision):
                logits = model(x)
            logits = logits.float()
            tally.add(logits, y, F.cross_entropy(logits, y, reduction="sum"))
    finally:
        model.train(was_training)
    return tally.result(info)


def evaluate(model: nn.Module, images: Tensor, labels: Tensor, mean: Tensor, std: Tensor | None, *,
             batch_size: int = 1000, device: torch.device | str = "cpu", precision: str = "fp32",
             channels_last: bool = True, num_classes: int | None = None, info: DistInfo | None = None,
             progress: bool = False) -> EvalResult:
    """Loss and top-1/top-5 error (%) of ``model`` on uint8 ``images`` [N, 3, H, W] (single view, unaugmented)."""
    check_labels(labels, num_classes, "evaluation labels")  # -100 would be left out of the loss silently
    info = info or DistInfo()
    share = rank_slice(int(images.shape[0]), info.rank, info.world_size)
    batches = tensor_batches(images, labels, batch_size, info.rank, info.world_size)
    return evaluate_batches(model, batches, mean, std, device=device,
                            precision=precision, channels_last=channels_last, num_classes=num_classes, info=info,
                            progress=progress, total=-(-(share.stop - share.start) // batch_size))

