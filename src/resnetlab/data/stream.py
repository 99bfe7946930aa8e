"""Streaming image-folder data for ImageNet-scale trees: files are decoded on the fly by DataLoader workers.

Layout (ImageNet's, after the usual reorganisation of val/ into class folders)::

    root/train/<class>/<image>     training images (any size, any format Pillow reads)
    root/val/<class>/<image>       validation images (and/or root/test/<class>/<image>)

Training batches follow the paper's ImageNet augmentation (Sec. 3.4): the shorter side resized to a random size in
``[256, 480]``, a random 224x224 crop, a random horizontal flip, AlexNet's PCA lighting noise (std 0.1); mean
subtraction happens on the device (``normalize``), as for the in-memory data.

Determinism: the epoch's order is a seeded permutation (seed, epoch); every image's draws come from its own
generator keyed on (seed, epoch, position in the epoch), never from the global RNG or from which worker decoded it.
Global batch ``k`` is the same on any number of processes: rank ``r`` decodes the ``r``-th contiguous slice of it.
Resuming at batch ``k`` starts the sampler there: the skipped batches are never read or decoded.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from .. import io
from .cache import resolve_cache_dir
from .datasets import split_train_val
from .errors import DataError, DataWarning
from .folder import visible_dirs, walk_files
from .loader import derive_seed, rank_slice
from .source import DataSource
from .views import ViewSpec, make_views, resize_shorter

__all__ = [
    "IMAGENET_EIGVAL", "IMAGENET_EIGVEC", "FileList", "StreamData", "StreamLoader", "decode_rgb",
    "image_statistics", "iterate_views", "lighting_offset", "open_stream", "scan_stream_folder",
]

# AlexNet's "standard color augmentation": principal components of ImageNet's RGB pixel covariance (pixels in
# 0..1). Column j of the eigenvector matrix is component j; the noise is eigvec @ (alpha * eigval), alpha ~ N(0, 0.1).
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
_MAX_LISTED = 10
_HINT = "expected root/train/<class>/<image> and root/val/<class>/<image> (or test/ instead of val/)"


# --- the file lists -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FileList:
    """Relative paths and labels of one split.

    Stored as numpy arrays, not Python lists: ImageNet's 1.28M paths take ~50 MB, and forked DataLoader workers
    share them as they are (a list's per-object refcounts would be copied page by page into every worker).
    """

    paths: np.ndarray  # bytes ("S"), UTF-8 relative paths
    labels: np.ndarray  # int64

    @classmethod
    def from_items(cls, items: Sequence[tuple[str, int]]) -> FileList:
        paths = np.array([p.encode() for p, _ in items], dtype=np.bytes_)
        return cls(paths, np.array([y for _, y in items], dtype=np.int64))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def path(self, i: int) -> str:
        return bytes(self.paths[i]).decode()

    def subset(self, index: np.ndarray | torch.Tensor) -> FileList:
        index = np.asarray(index, dtype=np.int64)
        return FileList(self.paths[index], self.labels[index])


def _list_files(root: Path, rel_dir: str) -> list[str]:
    """Non-hidden files under ``root/rel_dir`` (recursively), sorted; no stat calls (dirent types suffice)."""
    return sorted(rel for rel, _ in walk_files(root, rel_dir))


@dataclass(frozen=True)
class StreamLayout:
    root: Path
    classes: list[str]
    splits: dict[str, FileList]  # "train" and whichever of "val", "test" exist


def scan_stream_folder(root: str | Path) -> StreamLayout:
    """List ``root/train`` and ``root/val`` / ``root/test`` (class folders must match); problems raise DataError."""
    root = Path(root).expanduser()
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise DataError(f"data folder {root} {what}; {_HINT}. Pass --data <root> (the imagenet recipes have no "
                        "download: ImageNet must be on disk)")
    if not (root / "train").is_dir():
        raise DataError(f"{root} has no train/ folder; {_HINT}")
    held = [s for s in ("val", "test") if (root / s).is_dir()]
    if not held:
        raise DataError(f"{root} has no val/ or test/ folder; {_HINT}")
    try:
        classes = visible_dirs(root / "train")
        if not classes:
            raise DataError(f"{root}/train has no class folders; {_HINT}")
        splits: dict[str, FileList] = {}
        for split in ["train", *held]:
            if split != "train" and visible_dirs(root / split) != classes:
                theirs = set(visible_dirs(root / split))
                missing = sorted(set(classes) - theirs)[:_MAX_LISTED]
                extra = sorted(theirs - set(classes))[:_MAX_LISTED]
                raise DataError(
                    f"{root}/{split} must have the same class folders as {root}/train: missing {missing}, extra "
                    f"{extra} (ImageNet's val/ comes flat: move each image into its class folder first)"
                )
            items: list[tuple[str, int]] = []
            for label, name in enumerate(classes):
                files = _list_files(root, f"{split}/{name}")
                if not files:
                    raise DataError(f"class folder {root / split / name} holds no images; every class needs images "
                                    f"in train/ and {split}/")
                items += [(f, label) for f in files]
            splits[split] = FileList.from_items(items)
    except OSError as e:
        raise DataError(f"cannot list {root}: {e.strerror or e}; check the folder's permissions") from e
    return StreamLayout(root, classes, splits)


# --- decoding and the training augmentation -------------------------------------------------------------------------
def decode_rgb(path: str | Path, min_side: int | None = None) -> torch.Tensor:
    """Decode an image file to RGB uint8 ``[3, H, W]``; raises on unreadable files.

    With ``min_side``, a JPEG is decoded at the smallest DCT scale (1/2, 1/4, 1/8) whose shorter side is still
    >= ``min_side``: a large photo is then never decoded at full size only to be shrunk.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "palette images with transparency": harmless for RGB output
        with Image.open(path) as im:
            if min_side is not None and im.format == "JPEG":
                w, h = im.size
                scale = min_side / min(w, h)
                if scale < 1:
                    im.draft("RGB", (math.ceil(w * scale), math.ceil(h * scale)))
            rgb = im.convert("RGB")
            arr = np.array(rgb, dtype=np.uint8)
    return torch.from_numpy(arr).permute(2, 0, 1)


def lighting_offset(alpha: torch.Tensor) -> torch.Tensor:
    """AlexNet's PCA colour noise for component weights ``alpha`` [3], as an RGB offset in 0..255 pixel units."""
    vec = torch.tensor(IMAGENET_EIGVEC, dtype=torch.float32)
    val = torch.tensor(IMAGENET_EIGVAL, dtype=torch.float32)
    return 255.0 * (vec @ (alpha.float() * val))


@dataclass(frozen=True)
class Augment:
    crop: int = 224
    scale_range: tuple[int, int] = (256, 480)
    flip: bool = True
    lighting: float = 0.1


# --- unreadable files ---------------------------------------------------------------------------------------------
class _BadFiles:
    """Unreadable files seen by this process: an error (default) or, with skip_bad, one warning per file."""

    def __init__(self, skip_bad: bool) -> None:
        self.skip_bad, self.seen = skip_bad, set()

    def check(self, bad: list[tuple[str, str]]) -> None:
        if not bad:
            return
        listed = "\n  ".join(f"{p}: {r}" for p, r in bad[:_MAX_LISTED])
        if not self.skip_bad:
            raise DataError(f"cannot decode {len(bad)} image file(s):\n  {listed}\nremove or replace them, or pass "
                            "--set skip_bad=true to skip unreadable images (each is reported)")
        new = [(p, r) for p, r in bad if p not in self.seen]
        if new:
            self.seen.update(p for p, _ in new)
            warnings.warn("skipped unreadable image file(s):\n  " + "\n  ".join(f"{p}: {r}" for p, r in new),
                          DataWarning, stacklevel=3)


_STATS_FORMAT = "resnetlab.streamstats"


# --- decoding and the training augmentation -------------------------------------------------------------------------
def augment_image(path: str, aug: Augment, g: torch.Generator) -> torch.Tensor:
    """One training sample (float32 ``[3, crop, crop]``, 0..255 units plus lighting noise); draws from ``g`` only,
    in a fixed order: side, top, left, flip, lighting."""
    lo, hi = aug.scale_range
    side = int(torch.randint(lo, hi + 1, (1,), generator=g))
    img = resize_shorter(decode_rgb(path, min_side=side), side, to_uint8=False)
    h, w = int(img.shape[-2]), int(img.shape[-1])
    top = int(torch.randint(0, h - aug.crop + 1, (1,), generator=g))
    left = int(torch.randint(0, w - aug.crop + 1, (1,), generator=g))
    out = img[:, top:top + aug.crop, left:left + aug.crop]
    if aug.flip and bool(torch.randint(0, 2, (1,), generator=g)):
        out = out.flip(-1)
    if aug.lighting:
        out = out + lighting_offset(torch.randn(3, generator=g) * aug.lighting).view(3, 1, 1)
    return out.contiguous()


# --- datasets (run in the DataLoader workers) --------------------------------------------------------------------
class _TrainSet(Dataset):
    """Item ``(index, epoch, position)`` -> ``(image, label, bad files)``; the draws are keyed on (seed, epoch,
    position). With ``skip_bad`` an unreadable file is replaced by the next readable one in file order (the batch
    keeps its size, so every rank and micro-batch keeps its share); without, the image is None and the main
    process raises."""

    def __init__(self, root: Path, files: FileList, aug: Augment, seed: int, skip_bad: bool) -> None:
        self.root, self.files, self.aug, self.seed, self.skip_bad = str(root), files, aug, seed, skip_bad

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, item: tuple[int, int, int]) -> tuple[torch.Tensor | None, int, list[tuple[str, str]]]:
        index, epoch, position = item
        bad: list[tuple[str, str]] = []
        n = len(self.files)
        for k in range(min(n, 100)):
            i = (index + k) % n
            path = os.path.join(self.root, self.files.path(i))
            g = torch.Generator().manual_seed(derive_seed("stream-augment", self.seed, epoch, position))
            try:
                return augment_image(path, self.aug, g), int(self.files.labels[i]), bad
            except Exception as e:  # Pillow raises many types for bad files (OSError, SyntaxError, ValueError, ...)
                bad.append((path, f"{type(e).__name__}: {e}"))
                if not self.skip_bad:
                    break
        return None, -1, bad


class _ViewSet(Dataset):
    """Item ``index`` -> ``(views, label, bad files)``; views are the uint8 test views of ``make_views``."""

    def __init__(self, root: Path, files: FileList, protocol: str, spec: ViewSpec) -> None:
        self.root, self.files, self.protocol, self.spec = str(root), files, protocol, spec

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[list[torch.Tensor] | None, int, list[tuple[str, str]]]:
        path = os.path.join(self.root, self.files.path(index))
        # Decode just large enough for the largest view (a JPEG at a reduced DCT scale where possible).
        min_side = max(self.spec.scale_sides) if self.protocol == "multiscale" else self.spec.resize
        try:
            img = decode_rgb(path, min_side=min_side)
            return make_views(img, self.protocol, self.spec), int(self.files.labels[index]), []
        except Exception as e:
            return None, int(self.files.labels[index]), [(path, f"{type(e).__name__}: {e}")]


def _collate_train(items: list[tuple[torch.Tensor | None, int, list[tuple[str, str]]]]) -> tuple[Any, Any, list]:
    bad = [b for _, _, bs in items for b in bs]
    if any(x is None for x, _, _ in items):
        return None, None, bad
    return torch.stack([x for x, _, _ in items]), torch.tensor([y for _, y, _ in items], dtype=torch.int64), bad


def _collate_views(items: list[tuple[list[torch.Tensor] | None, int, list[tuple[str, str]]]]) -> tuple[Any, ...]:
    """Views stay a list per image (multi-scale views differ in size); unreadable images are left out."""
    kept = [(v, y) for v, y, _ in items if v is not None]
    bad = [b for _, _, bs in items for b in bs]
    return [v for v, _ in kept], torch.tensor([y for _, y in kept], dtype=torch.int64), bad


def _loader(dataset: Dataset, sampler: Sampler, collate: Any, workers: int, pin_memory: bool) -> DataLoader:
    # A private generator: DataLoader draws its workers' base seed from it, which would otherwise advance the
    # global RNG every epoch (and make the checkpointed RNG state depend on how many loaders were created).
    # Two batches in flight per worker: a float32 batch of 256 crops of 224 is 154 MB of shared memory.
    return DataLoader(dataset, batch_sampler=sampler, num_workers=workers, collate_fn=collate,
                      pin_memory=pin_memory, generator=torch.Generator().manual_seed(0),
                      prefetch_factor=2 if workers else None)


# --- the training loader ------------------------------------------------------------------------------------------
class _EpochPlan(Sampler[list[tuple[int, int, int]]]):
    """This rank's items of global batches ``start..steps-1`` of ``epoch``: ``(index, epoch, position)``."""

    def __init__(self, order: torch.Tensor, epoch: int, start: int, steps: int, batch_size: int, rank: int,
                 world_size: int) -> None:
        self.order, self.epoch, self.start, self.steps = order, epoch, start, steps
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size

    def __len__(self) -> int:
        return self.steps - self.start

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        for k in range(self.start, self.steps):
            lo = k * self.batch_size
            ids = self.order[lo:lo + self.batch_size].tolist()
            part = rank_slice(len(ids), self.rank, self.world_size)
            yield [(ids[j], self.epoch, lo + j) for j in range(part.start, part.stop)]


class StreamLoader:
    """Training batches streamed from an image folder, with :class:`~resnetlab.data.BatchLoader`'s interface.

    ``batches(epoch, start)`` yields this rank's ``(float32 images [b, 3, crop, crop], int64 labels [b])`` of global
    batches ``start..`` (full batches only: the epoch's last partial batch is dropped, as in the in-memory loader).
    """

    def __init__(self, root: Path, files: FileList, aug: Augment, batch_size: int, seed: int, *, rank: int = 0,
                 world_size: int = 1, workers: int = 8, skip_bad: bool = False, pin_memory: bool = False) -> None:
        if batch_size <= 0 or batch_size % world_size:
            raise DataError(f"batch size {batch_size} must be positive and divisible by the world size {world_size}")
        if len(files) < batch_size:
            raise DataError(f"{len(files)} training images make no full batch of {batch_size}: lower the batch size to "
                            f"at most {len(files)} (--set batch_size=N; with several processes it is split between "
                            "them)")
        self.dataset = _TrainSet(root, files, aug, seed, skip_bad)
        self.n, self.batch_size, self.seed = len(files), batch_size, seed
        self.rank, self.world_size, self.workers, self.pin_memory = rank, world_size, workers, pin_memory
        self.bad = _BadFiles(skip_bad)

    def __len__(self) -> int:
        return self.n // self.batch_size

    @property
    def local_batch_size(self) -> int:
        return self.batch_size // self.world_size

    def order(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(derive_seed("shuffle", self.seed, epoch))
        return torch.randperm(self.n, generator=g)

    def plan(self, epoch: int, start: int = 0) -> _EpochPlan:
        if not 0 <= start <= len(self):
            raise ValueError(f"start must be in [0, {len(self)}], got {start}")
        return _EpochPlan(self.order(epoch), epoch, start, len(self), self.batch_size, self.rank, self.world_size)

    def batches(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        plan = self.plan(epoch, start)  # checked now, not at the first next()
        return self._batches(plan)

    def _batches(self, plan: _EpochPlan) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels, bad in _loader(self.dataset, plan, _collate_train, self.workers, self.pin_memory):
            self.bad.check(bad)
            yield images, labels

    def __repr__(self) -> str:
        return (f"StreamLoader(n={self.n}, batch_size={self.batch_size}, steps={len(self)}, "
                f"rank={self.rank}/{self.world_size}, workers={self.workers})")


# --- test views ---------------------------------------------------------------------------------------------------
class _Chunks(Sampler[list[int]]):
    def __init__(self, indices: range, batch_size: int) -> None:
        self.indices, self.batch_size = indices, batch_size

    def __len__(self) -> int:
        return -(-len(self.indices) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        for s in range(0, len(self.indices), self.batch_size):
            yield list(self.indices[s:s + self.batch_size])


def iterate_views(root: str | Path, files: FileList, protocol: str, spec: ViewSpec, batch_size: int, *,
                  workers: int = 8, skip_bad: bool = False, rank: int = 0, world_size: int = 1,
                  pin_memory: bool = False) -> Iterator[tuple[list[list[torch.Tensor]], torch.Tensor]]:
    """This rank's share of ``files`` in order, ``batch_size`` images at a time: (views of each image, labels).

    Unreadable files raise DataError, or with ``skip_bad`` are left out (and reported once each).
    """
    share = rank_slice(len(files), rank, world_size)
    sampler = _Chunks(range(share.start, share.stop), max(1, batch_size))
    bad = _BadFiles(skip_bad)
    for views, labels, b in _loader(_ViewSet(Path(root), files, protocol, spec), sampler, _collate_views, workers,
                                    pin_memory):
        bad.check(b)
        yield views, labels


# --- normalisation statistics ---------------------------------------------------------------------------------------
def _stats_key(root: Path, files: FileList, sample: np.ndarray, crop: int) -> str:
    h = hashlib.sha256(f"{_STATS_FORMAT} v1\n{root.resolve()}\ncrop={crop}\n".encode())
    for i in sample.tolist():
        rel = files.path(i)
        try:
            st = os.stat(root / rel)
            h.update(f"{rel}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{rel}\t?\n".encode())
    return h.hexdigest()


def image_statistics(root: str | Path, files: FileList, crop: int, n: int = 10_000, seed: int = 0, *,
                     workers: int = 8, skip_bad: bool = False, cache_dir: str | Path | None = None,
                     progress: bool = True) -> dict[str, torch.Tensor]:
    """Mean image ``[3, crop, crop]`` and per-channel mean/std ``[3]`` (0..255 units) of a seeded sample of ``n``
    training images, each resized (shorter side 256/224 x crop) and center-cropped like a test image.

    The paper subtracts "the per-pixel mean" (Sec. 3.4); over all of ImageNet that takes hours to compute, so a
    sample stands for it. Cached in the cache folder, keyed by the sampled files' paths, sizes and times.
    """
    root = Path(root)
    n = min(n, len(files))
    g = torch.Generator().manual_seed(derive_seed("mean-sample", seed))
    sample = np.sort(torch.randperm(len(files), generator=g)[:n].numpy())
    key = _stats_key(root, files, sample, crop)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", root.resolve().name or "root")[:40]
    path = resolve_cache_dir(cache_dir) / f"stream-stats-{slug}-{key[:24]}.pt"
    if path.is_file():
        try:
            cached = torch.load(path, map_location="cpu", weights_only=True)
            if cached.get("format") == _STATS_FORMAT and cached.get("key") == key:
                return {k: cached[k] for k in ("mean_image", "channel_mean", "channel_std")}
        except Exception:  # damaged cache: recompute and overwrite
            pass
    total = torch.zeros(3, crop, crop, dtype=torch.float64)
    sq = torch.zeros(3, dtype=torch.float64)
    count = 0
    views = iterate_views(root, files.subset(sample), "center", ViewSpec.imagenet(crop), 64, workers=workers,
                          skip_bad=skip_bad)
    with tqdm(total=n, desc="mean image", unit="img", disable=not progress, leave=False) as bar:
        for batch, _ in views:
            x = torch.stack([v[0] for v in batch]).to(torch.float64)
            total += x.sum(0)
            sq += x.square().sum((0, 2, 3))
            count += x.shape[0]
            bar.update(len(batch))
    if count == 0:
        raise DataError(f"no readable training images in {root} to compute the mean image from")
    mean_image = total / count
    channel_mean = mean_image.mean((1, 2))
    channel_std = (sq / (count * crop * crop) - channel_mean.square()).clamp(min=0).sqrt()
    out = {"mean_image": mean_image.float(), "channel_mean": channel_mean.float(), "channel_std": channel_std.float()}
    try:
        io.atomic_write(path, lambda f: torch.save({"format": _STATS_FORMAT, "key": key, "count": count, **out}, f))
    except OSError as e:  # a read-only cache costs a recomputation next time, nothing else
        warnings.warn(f"cannot cache the mean image at {path}: {e}", DataWarning, stacklevel=2)
    return out


# --- the whole data set -------------------------------------------------------------------------------------------
@dataclass
class StreamData(DataSource):
    """A streamed image folder: what the trainer needs instead of in-memory tensors.

    Splits: ``train``; ``val`` (a stratified hold-out of train if ``val_size`` > 0, else the folder's val/ or
    test/ tree: ImageNet's protocol); ``test`` (the folder's test/ tree, else its val/ tree).
    """

    root: Path
    classes: list[str]
    splits: dict[str, FileList]
    mean: torch.Tensor  # [3, crop, crop] (per-pixel) or [3, 1, 1] (per-channel), 0..255 units
    std: torch.Tensor | None
    augment: Augment = field(default_factory=Augment)
    workers: int = 8
    skip_bad: bool = False

    # The data-source interface (``source.DataSource``, shared with in-memory data).
    can_reside: ClassVar[bool] = False  # decoded by workers on the host, batch by batch
    # a final pass over every training image (ImageNet: 1.28M) would cost a run about an epoch of forward passes
    scores_training_set: ClassVar[bool] = False

    @property
    def input_size(self) -> int:
        return self.augment.crop

    def check(self) -> None:
        """Nothing to check: the labels are the class folders' indices."""

    @property
    def split_digest(self) -> str:
        """As ``digest``: the split is part of the file lists it hashes."""
        return self.digest

    @property
    def view_spec(self) -> ViewSpec:
        return ViewSpec.imagenet(self.augment.crop)

    def split_size(self, split: str) -> int:
        return len(self.splits[split])

    @property
    def digest(self) -> str:
        """SHA-256 of the class names and every split's relative paths and labels (the images are not read)."""
        h = hashlib.sha256("\n".join(self.classes).encode())
        for name in sorted(self.splits):
            files = self.splits[name]
            h.update(f"\n{name}:{len(files)}\n".encode())
            h.update(b"\n".join(files.paths.tolist()))
            h.update(files.labels.tobytes())
        return h.hexdigest()

    def train_loader(self, batch_size: int, seed: int, *, rank: int = 0, world_size: int = 1,
                     device: torch.device | None = None, pad: int = 4, flip: bool = True,
                     pin_memory: bool = False) -> StreamLoader:
        """Augmented training batches of this rank, decoded by the workers. The augmentation is the folder's own
        (``augment``, set when it was loaded: scale, crop, flip, colour), so ``pad`` and ``flip``, the in-memory
        sets' pad-crop-flip, do not apply; ``device`` must be None (``can_reside`` is False)."""
        if device is not None:
            raise DataError("a streamed folder is decoded on the host; it cannot be kept on the device")
        return StreamLoader(self.root, self.splits["train"], self.augment, batch_size, seed, rank=rank,
                            world_size=world_size, workers=self.workers, skip_bad=self.skip_bad,
                            pin_memory=pin_memory)

    def eval_batches(self, split: str, batch_size: int, *, rank: int = 0, world_size: int = 1,
                     pin_memory: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's share of a split as (uint8 center views, labels) batches, decoded by the workers: the single
        view of Sec. 3.4's validation curves (Fig. 4's bold lines)."""
        for views, labels in self.views(split, "center", batch_size, rank=rank, world_size=world_size,
                                        pin_memory=pin_memory):
            if views:
                yield torch.stack([v[0] for v in views]), labels

    def views(self, split: str, protocol: str, batch_size: int, *, rank: int = 0, world_size: int = 1,
              pin_memory: bool = False) -> Iterator[tuple[list[list[torch.Tensor]], torch.Tensor]]:
        return iterate_views(self.root, self.splits[split], protocol, self.view_spec, batch_size,
                             workers=self.workers, skip_bad=self.skip_bad, rank=rank, world_size=world_size,
                             pin_memory=pin_memory)


def open_stream(root: str | Path, *, crop: int = 224, val_size: int = 0, split_seed: int = 0,
                normalize: Literal["pixel", "channel"] = "pixel", scale_range: Sequence[int] = (256, 480),
                flip: bool = True, lighting: float = 0.1, mean_images: int = 10_000, skip_bad: bool = False,
                workers: int = 8, cache_dir: str | Path | None = None, progress: bool = True,
                mean: torch.Tensor | None = None, std: torch.Tensor | None = None) -> StreamData:
    """Scan ``root`` and compute (or read from the cache) the normalisation statistics; nothing else is decoded.

    ``mean``/``std`` given (e.g. from a checkpoint) skip the statistics.
    """
    if normalize not in ("pixel", "channel"):
        raise DataError(f"normalize must be 'pixel' or 'channel', got {normalize!r}")
    layout = scan_stream_folder(root)
    train = layout.splits["train"]
    held = layout.splits.get("val") or layout.splits["test"]
    test = layout.splits.get("test") or layout.splits["val"]
    if val_size:
        train_idx, val_idx = split_train_val(torch.from_numpy(train.labels), val_size, split_seed)
        train, val = train.subset(train_idx.numpy()), train.subset(val_idx.numpy())
    else:
        val = held
    if mean is None:
        stats = image_statistics(layout.root, train, crop, mean_images, split_seed, workers=workers,
                                 skip_bad=skip_bad, cache_dir=cache_dir, progress=progress)
        if normalize == "pixel":
            mean, std = stats["mean_image"], None
        else:
            mean, std = stats["channel_mean"].view(3, 1, 1), stats["channel_std"].view(3, 1, 1)
    lo, hi = (int(s) for s in scale_range)
    return StreamData(layout.root, layout.classes, {"train": train, "val": val, "test": test}, mean, std,
                      Augment(crop, (lo, hi), flip, lighting), workers, skip_bad)
