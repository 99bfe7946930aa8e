"""CIFAR data that lives on the training device: no batch crosses from the host on a step.

On a GPU the paper's whole CIFAR schedule is minutes, but only if the input pipeline keeps up; a host-side gather
and a copy per step become the bottleneck. :class:`ResidentBatchLoader` keeps the decoded uint8 images on the
device, zero-padded once for the whole data set, and forms each augmented batch with one gather there: the sample
index, crop offset and flip of every output pixel combined in a single advanced index.

The random draws are the host loader's, made on the CPU from the same seeds (``BatchLoader.order``,
``augmentation_generator``), and the gather is exact integer indexing, so the batches equal
:class:`~resnetlab.data.BatchLoader`'s bit for bit, on any device (``tests/test_data_resident.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .augment import CropFlip
from .loader import BatchLoader

__all__ = ["ResidentBatchLoader", "gather_crop_flip"]


def gather_crop_flip(padded: torch.Tensor, idx: torch.Tensor, pad: int, draws: CropFlip) -> torch.Tensor:
    """Images ``idx`` of the pre-padded store ``padded`` (``[N, C, H + 2 pad, W + 2 pad]``), each cropped at
    ``(dy, dx)`` to ``H x W`` and mirrored where ``flip`` is set: one gather, no intermediate copy."""
    device = padded.device
    c, h, w = padded.shape[1], padded.shape[2] - 2 * pad, padded.shape[3] - 2 * pad
    dy, dx, flips = draws.dy.to(device), draws.dx.to(device), draws.flip.to(device)
    b = int(idx.shape[0])
    rows = dy.view(b, 1) + torch.arange(h, device=device)  # [B, H]
    cols = torch.arange(w, device=device).expand(b, w)
    cols = torch.where(flips.view(b, 1), (w - 1) - cols, cols) + dx.view(b, 1)  # [B, W]
    return padded[idx.view(b, 1, 1, 1), torch.arange(c, device=device).view(1, c, 1, 1),
                  rows.view(b, 1, h, 1), cols.view(b, 1, 1, w)]


class ResidentBatchLoader(BatchLoader):
    """:class:`BatchLoader`'s batches, gathered from tensors on ``device`` (same arguments, plus ``device``).

    Training data is stored zero-padded by ``pad`` (the crop's padding, Sec. 4.2) once, so a step does no padding;
    evaluation data is stored as it is. Yields ``(uint8 images, int64 labels)`` on ``device``.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int, train: bool, pad: int = 4,
                 drop_last: bool = True, rank: int = 0, world_size: int = 1, flip: bool = True,
                 device: torch.device | str = "cpu") -> None:
        super().__init__(x, y, batch_size, seed, train, pad, drop_last, rank, world_size, flip)
        self.device = torch.device(device)
        store = F.pad(x, (pad,) * 4) if train and pad else x  # padded once: training batches crop from it
        self.store = store.to(self.device).contiguous()
        self.labels = y.to(self.device)

    def gather(self, idx: torch.Tensor, draws: CropFlip | None) -> tuple[torch.Tensor, torch.Tensor]:
        idx = idx.to(self.device)
        if draws is None:
            return self.store[idx], self.labels[idx]
        return gather_crop_flip(self.store, idx, self.pad, draws), self.labels[idx]

    def __repr__(self) -> str:
        return super().__repr__().replace("BatchLoader(", f"ResidentBatchLoader(device={self.device}, ", 1)
