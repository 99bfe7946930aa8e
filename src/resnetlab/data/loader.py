"""A reproducible, resumable, distributed-consistent mini-batch loader over in-memory uint8 tensors.

Every random choice is a pure function of ``(seed, epoch)`` (the shuffle) or ``(seed, epoch, batch index)``
(the augmentation), never of the global RNG or of what ran before. Hence

- resuming at ``(epoch, start)`` yields exactly the batches an uninterrupted run would have yielded from
  there;
- with ``world_size`` processes, rank ``r`` gets the ``r``-th contiguous slice of each *global* batch,
  augmented with the draws made for the global batch, so the ranks' slices concatenated equal the
  single-process batch (2 processes x 64 images == 1 process x 128 images, pixel for pixel).

Normalisation is not done here: the training step does it on the device (:func:`~resnetlab.data.normalize`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import torch

from .arrays import check_labels
from .augment import CropFlip, apply_crop_flip, draw_crop_flip
from .errors import DataError

__all__ = ["BatchLoader", "derive_seed", "rank_slice"]


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed that is a fixed hash of ``parts`` (same on every run, platform and Python version)."""
    canonical = tuple(p if isinstance(p, str) else int(p) for p in parts)  # numpy ints hash like ints
    digest = hashlib.blake2b(repr(canonical).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def rank_slice(size: int, rank: int, world_size: int) -> slice:
    """Rank ``rank``'s contiguous share of ``size`` items (shares differ by at most one)."""
    base, extra = divmod(size, world_size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


def tensor_batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int, rank: int = 0,
                   world_size: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Rank ``rank``'s share of in-memory ``images`` and ``labels``, ``batch_size`` at a time, in order (evaluation:
    unaugmented, each image once)."""
    share = rank_slice(int(images.shape[0]), rank, world_size)
    for s in range(share.start, share.stop, max(1, batch_size)):
        yield images[s:min(s + batch_size, share.stop)], labels[s:min(s + batch_size, share.stop)]


class BatchLoader:
    """Mini-batches of ``(images uint8 [b, 3, H, W], labels int64 [b])`` from in-memory tensors.

    Args:
        x: uint8 images ``[N, 3, H, W]`` (kept as given; batches are gathered from it).
        y: int64 labels ``[N]``.
        batch_size: the *global* batch size (over all ranks); must be divisible by ``world_size``.
        seed: run seed; the epoch's shuffle and each batch's augmentation are derived from it.
        train: shuffle every epoch and augment (random crop of the zero-padded image + horizontal flip);
            otherwise yield the images in order, unaugmented, including a final partial batch.
        pad: crop padding (4 in the paper); 0 disables cropping.
        drop_last: training only: drop the final partial batch (default, so every step has ``batch_size``).
        rank: this process's rank.
        world_size: number of processes sharing each global batch.
        flip: training only: random horizontal flips.

    ``len(loader)`` is the number of batches per epoch (the same on every rank). In evaluation with several
    ranks the final batch is split as evenly as possible, so a rank may get an empty batch; it is still
    yielded so that every rank takes the same number of steps.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        seed: int,
        train: bool,
        pad: int = 4,
        drop_last: bool = True,
        rank: int = 0,
        world_size: int = 1,
        flip: bool = True,
    ) -> None:
        if x.dim() != 4 or y.dim() != 1 or x.shape[0] != y.shape[0]:
            raise DataError(f"images [N, C, H, W] and labels [N] expected, got {tuple(x.shape)} and {tuple(y.shape)}")
        if batch_size <= 0:
            raise DataError(f"batch size must be positive, got {batch_size}")
        if world_size <= 0 or not 0 <= rank < world_size:
            raise DataError(f"rank {rank} is not valid for world size {world_size}")
        if batch_size % world_size:
            raise DataError(
                f"batch size {batch_size} is not divisible by the world size {world_size}; choose a global "
                "batch size that is a multiple of the number of processes"
            )
        if pad < 0:
            raise DataError(f"pad must be >= 0, got {pad}")
        check_labels(y, None)  # -100 would be skipped silently by cross-entropy
        self.x, self.y = x, y
        self.batch_size, self.seed, self.train = int(batch_size), int(seed), train
        self.pad, self.flip = pad, flip
        self.drop_last = drop_last and train
        self.rank, self.world_size = rank, world_size
        if len(self) == 0 and x.shape[0] > 0:
            raise DataError(
                f"{x.shape[0]} training images make no full batch of {batch_size}: lower the batch size to at most "
                f"{x.shape[0]} (--set batch_size=N; with several processes it is split between them)"
            )

    def __len__(self) -> int:
        n = int(self.x.shape[0])
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def local_batch_size(self) -> int:
        """Images per rank in a full batch."""
        return self.batch_size // self.world_size

    def order(self, epoch: int) -> torch.Tensor:
        """The sample order of ``epoch`` (a seeded permutation in training, ``0..N-1`` in evaluation)."""
        n = int(self.x.shape[0])
        if not self.train:
            return torch.arange(n)
        g = torch.Generator().manual_seed(derive_seed("shuffle", self.seed, epoch))
        return torch.randperm(n, generator=g)

    def augmentation_generator(self, epoch: int, index: int) -> torch.Generator:
        """The generator that draws the crops and flips of global batch ``index`` of ``epoch``."""
        return torch.Generator().manual_seed(derive_seed("augment", self.seed, epoch, index))

    def batches(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield this rank's batches of ``epoch`` from global batch index ``start`` on (for resuming)."""
        steps = len(self)
        if not 0 <= start <= steps:
            raise ValueError(f"start must be in [0, {steps}], got {start}")
        return self._batches(epoch, start, steps)

    def _batches(self, epoch: int, start: int, steps: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.order(epoch)
        n = int(order.shape[0])
        for k in range(start, steps):
            global_idx = order[k * self.batch_size : min((k + 1) * self.batch_size, n)]
            part = rank_slice(int(global_idx.shape[0]), self.rank, self.world_size)
            draws = None
            if self.train and (self.pad or self.flip):  # drawn for the global batch, this rank's slice applied
                draws = draw_crop_flip(
                    int(global_idx.shape[0]), self.pad, self.augmentation_generator(epoch, k), self.flip
                )[part]
            yield self.gather(global_idx[part], draws)

    def gather(self, idx: torch.Tensor, draws: CropFlip | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The images ``idx`` (augmented with ``draws`` if given) and their labels."""
        images, labels = self.x[idx], self.y[idx]
        if draws is not None:
            images = apply_crop_flip(images, self.pad, draws)
        return images, labels

    def __repr__(self) -> str:
        return (
            f"BatchLoader(n={self.x.shape[0]}, batch_size={self.batch_size}, train={self.train}, "
            f"pad={self.pad}, steps={len(self)}, rank={self.rank}/{self.world_size})"
        )
