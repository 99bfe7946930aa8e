"""Resolving ``--data``, the train/validation split and the normalisation statistics.

The paper's CIFAR-10 protocol (Sec. 4.2): train on 45k images, hold out 5k for validation to choose the
schedule, report on the 10k test set; subtract the per-pixel mean of the training images. Statistics here are
in raw pixel units (0..255), the units of the uint8 tensors, so ``normalize(x, mean, std)`` needs no extra
scale factor.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import torch

from .arrays import SplitArrays, check_labels
from .cache import resolve_cache_dir, tensor_digest
from .cifar import download as download_release
from .cifar import get_release, is_official, load_official
from .errors import DATA_HINT, DataError
from .folder import load_image_folder
from .loader import BatchLoader, tensor_batches
from .resident import ResidentBatchLoader
from .source import DataSource

__all__ = [
    "DataBundle",
    "content_digest",
    "load_dataset",
    "make_bundle",
    "per_channel_stats",
    "per_pixel_mean",
    "split_train_val",
]

_NAMES = {"cifar10", "cifar-10", "cifar_10", "cifar100", "cifar-100", "cifar_100"}


def load_dataset(
    spec: str | Path,
    cache_dir: Path | None = None,
    download: bool = True,
    skip_bad: bool = False,
    *,
    size: int | None = None,
    url: str | None = None,
    md5: str | None = None,
    progress: bool = True,
) -> SplitArrays:
    """Load the dataset named or located by ``spec`` (the CLI's ``--data``).

    ``spec`` is resolved in this order:

    1. an existing path: an official CIFAR tarball (``*.tar.gz``), an extracted ``cifar-10-batches-py`` /
       ``cifar-100-python`` folder or a folder containing one (detected by ``data_batch_1``, ``batches.meta``,
       ``train`` + ``meta``, or the release folder's name), otherwise an image-folder root;
    2. a dataset name ``cifar10`` / ``cifar100``: the official tarball in ``cache_dir`` (checksum verified),
    or
       an extracted release folder there, or, if ``download`` is true, a fresh download into ``cache_dir``.

    Args:
        spec: path or dataset name.
        cache_dir: downloads, extracted archives and decoded image caches (default: the resnetlab cache).
        download: allow downloading a named dataset that is not in the cache.
        skip_bad: skip unreadable images of an image folder (with a warning) instead of failing.
        size: image-folder only: resize the shorter side and center-crop to ``size x size``.
        url: named datasets only: download from here instead of the official URL (a mirror, or tests).
        md5: named datasets only: the expected MD5 of the tarball (defaults to the official checksum).
        progress: show progress bars.

    Raises:
        DataError: anything wrong with the data; the message says what to pass instead.
    """
    text = str(spec)
    path = Path(text).expanduser()
    if path.exists():
        if is_official(path):
            return load_official(path, cache_dir)
        return load_image_folder(path, cache_dir, skip_bad=skip_bad, size=size, progress=progress)
    if text.lower() in _NAMES:
        release = get_release(text)
        root = resolve_cache_dir(cache_dir)
        tarball = root / release.archive
        if tarball.is_file():
            return load_official(tarball, root, md5=md5 or release.md5)
        if (root / release.folder).is_dir():
            return load_official(root / release.folder, root)
        if not download:
            raise DataError(
                f"{release.title} is not in the cache folder {root} and downloading is disabled; put "
                f"{release.archive} there, enable downloads, or {DATA_HINT}"
            )
        tarball = download_release(release.name, root, url=url, md5=md5, progress=progress)
        return load_official(tarball, root, md5=md5 or release.md5)
    raise DataError(f"data folder {path} does not exist; {DATA_HINT}")


# --------------------------------------------------------------------------------------------------- split


def _largest_remainder(counts: list[int], total: int) -> list[int]:
    """Split ``total`` over groups in proportion to ``counts`` (largest remainder, ties to lower index)."""
    n = sum(counts)
    quotas = [total * c // n for c in counts]
    remainders = [(total * c) % n for c in counts]
    for i in sorted(range(len(counts)), key=lambda i: (-remainders[i], i))[: total - sum(quotas)]:
        quotas[i] += 1
    return quotas


def split_train_val(labels: torch.Tensor | int, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded split of a training set into train and validation indices.

    Args:
        labels: int64 labels ``[N]`` for a stratified split, or just ``N`` for a plain random split.
        val_size: number of validation images (0: no validation split).
        seed: the split depends only on the seed (a private ``torch.Generator``), so it is the same every run.

    Returns:
        ``(train_idx, val_idx)``, disjoint sorted int64 index tensors covering ``0..N-1``.

    Stratified: every class gives ``val_size * n_class / N`` images (rounded by largest remainder), so a
    balanced dataset gives exactly ``val_size / num_classes`` per class, e.g. 500 per class for CIFAR-10's
    45k/5k split.
    """
    n = labels if isinstance(labels, int) else int(labels.shape[0])
    if not 0 <= val_size < n:
        raise DataError(f"val_size is {val_size}, but the data has {n} training images: hold out fewer (--set "
                        f"val_size=N with 0 <= N < {n}; 0 trains on every image)")
    g = torch.Generator().manual_seed(int(seed))
    in_val = torch.zeros(n, dtype=torch.bool)
    if isinstance(labels, int):
        in_val[torch.randperm(n, generator=g)[:val_size]] = True
    elif val_size:
        if labels.dim() != 1:
            raise DataError(f"labels must be a 1-D tensor, got shape {tuple(labels.shape)}")
        labels = labels.cpu()
        classes, counts = torch.unique(labels, sorted=True, return_counts=True)
        quotas = _largest_remainder(counts.tolist(), val_size)
        for c, quota in zip(classes.tolist(), quotas, strict=True):
            members = torch.nonzero(labels == c).flatten()
            in_val[members[torch.randperm(members.numel(), generator=g)[:quota]]] = True
    idx = torch.arange(n)
    return idx[~in_val], idx[in_val]


# ------------------------------------------------------------------------------------------------- statistics


def _check_images(x: torch.Tensor) -> None:
    if x.dim() != 4 or x.shape[0] == 0:
        raise DataError(f"expected a non-empty image batch [N, C, H, W], got shape {tuple(x.shape)}")


def per_pixel_mean(x: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """The mean image of ``x`` (``[N, C, H, W]``), float32 ``[C, H, W]``: the paper's per-pixel mean.

    Integer images are summed exactly in int64, floating images in float64, chunk by chunk.
    """
    _check_images(x)
    acc_dtype = torch.float64 if x.is_floating_point() else torch.int64
    total = torch.zeros(x.shape[1:], dtype=acc_dtype)
    for i in range(0, x.shape[0], chunk):
        total += x[i : i + chunk].sum(dim=0, dtype=acc_dtype).cpu()
    return (total.to(torch.float64) / x.shape[0]).to(torch.float32)


def per_channel_stats(x: torch.Tensor, chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (population) standard deviation of ``x`` over images and pixels, float32 ``[C]``.

    Two passes in float64 (the mean first, then squared deviations), chunk by chunk.
    """
    _check_images(x)
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = per_pixel_mean(x, chunk).to(torch.float64).mean(dim=(1, 2))
    sq = torch.zeros(x.shape[1], dtype=torch.float64)
    for i in range(0, x.shape[0], chunk):
        d = x[i : i + chunk].cpu().to(torch.float64) - mean.view(1, -1, 1, 1)
        sq += d.square().sum(dim=(0, 2, 3))
    return mean.to(torch.float32), (sq / count).sqrt().to(torch.float32)


# --------------------------------------------------------------------------------------------------- bundle


@dataclass
class DataBundle(DataSource):
    """Everything training needs: the split data and the normalisation statistics.

    Images are uint8 ``[N, 3, H, W]``, labels int64. ``mean`` (and ``std``) are float32 in raw pixel units
    (0..255), shaped to broadcast over ``[3, H, W]``: ``[3, H, W]`` for the per-pixel mean, ``[3, 1, 1]`` for
    per-channel statistics. ``std`` is ``None`` for the paper's per-pixel normalisation (mean subtraction
    only).
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    mean: torch.Tensor
    std: torch.Tensor | None
    # SHA-256 of the data set's content (images, labels and class names, before the split): what a run's key names
    # instead of the data's path, so a copy of the data in another folder finds the same runs
    digest: str | None = None

    def __post_init__(self) -> None:
        self.check()

    # The data-source interface (``source.DataSource``, shared with a streamed folder).
    can_reside: ClassVar[bool] = True
    scores_training_set: ClassVar[bool] = True  # summary.json's final_train_error: cheap for in-memory data

    @property
    def input_size(self) -> int:
        return int(self.train_x.shape[-1])

    def arrays(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 images, labels) of "train", "val" or "test"."""
        return {"train": (self.train_x, self.train_y), "val": (self.val_x, self.val_y),
                "test": (self.test_x, self.test_y)}[split]

    def split_size(self, split: str) -> int:
        return int(self.arrays(split)[0].shape[0])

    def check(self) -> None:
        """Every split's labels lie in [0, classes) (checked when made; again here, as they may have changed)."""
        for split, name in (("train", "training"), ("val", "validation"), ("test", "test")):
            check_labels(self.arrays(split)[1], self.num_classes, f"{name} labels")

    @property
    def split_digest(self) -> str:
        """SHA-256 of the images, labels and split as trained on: stored in every checkpoint, so that a resume on
        other data (or another split) is refused."""
        return tensor_digest((self.train_x, self.train_y, self.val_x, self.val_y, self.test_x, self.test_y),
                             "\n".join(self.classes).encode())

    def eval_batches(self, split: str, batch_size: int, *, rank: int = 0, world_size: int = 1,
                     pin_memory: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's share of a split as (uint8 images, labels) batches, each image once as it is. The evaluation
        copies each batch to the device: 15k CIFAR images are 46 MB, milliseconds on a GPU."""
        return tensor_batches(*self.arrays(split), batch_size, rank, world_size)

    def train_loader(self, batch_size: int, seed: int, *, rank: int = 0, world_size: int = 1,
                     device: torch.device | None = None, pad: int = 4, flip: bool = True,
                     pin_memory: bool = False) -> BatchLoader:
        """Augmented training batches (pad-crop-flip, Sec. 4.2) of this rank; with ``device`` they are cut from a
        copy of the set kept there (no host-to-device copy per step)."""
        args = {"x": self.train_x, "y": self.train_y, "batch_size": batch_size, "seed": seed, "train": True,
                "pad": pad, "flip": flip, "rank": rank, "world_size": world_size}
        return BatchLoader(**args) if device is None else ResidentBatchLoader(**args, device=device)


def make_bundle(
    arrays: SplitArrays, val_size: int, seed: int, normalize: Literal["pixel", "channel"] = "pixel"
) -> DataBundle:
    """Split off a stratified validation set and compute normalisation statistics on the remaining training
    set.

    Args:
        arrays: the loaded dataset.
        val_size: validation images taken from the training split (5000 in the paper); 0 for none (the val
            tensors are then empty).
        seed: split seed (see :func:`split_train_val`).
        normalize: ``"pixel"``: per-pixel mean, no std (the paper); ``"channel"``: per-channel mean and std.
    """
    if normalize not in ("pixel", "channel"):
        raise DataError(f"normalize must be 'pixel' or 'channel', got {normalize!r}")
    train_idx, val_idx = split_train_val(arrays.train_y, val_size, seed)
    if val_size:
        train_x, train_y = arrays.train_x[train_idx], arrays.train_y[train_idx]
    else:
        train_x, train_y = arrays.train_x, arrays.train_y
    std: torch.Tensor | None
    if normalize == "pixel":
        mean, std = per_pixel_mean(train_x), None
    else:
        m, s = per_channel_stats(train_x)
        mean, std = m.view(-1, 1, 1), s.view(-1, 1, 1)
    return DataBundle(
        train_x=train_x,
        train_y=train_y,
        val_x=arrays.train_x[val_idx],
        val_y=arrays.train_y[val_idx],
        test_x=arrays.test_x,
        test_y=arrays.test_y,
        classes=list(arrays.classes),
        mean=mean,
        std=std,
        digest=content_digest(arrays),
    )


def content_digest(arrays: SplitArrays) -> str:
    """SHA-256 of a data set's images, labels and class names (about 0.3 s for CIFAR's 184 MB)."""
    return tensor_digest((arrays.train_x, arrays.train_y, arrays.test_x, arrays.test_y),
                         "\n".join(arrays.classes).encode())
